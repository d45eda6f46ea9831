/**
 * Every action the audit trail records, in one place. `appendAuditEvent` takes only these, so
 * writing a new action means adding it here, and `GET /api/v1/audit?action=` accepts exactly
 * this list (test/regressions/audit-filter-accepts-every-written-action.test.ts checks both,
 * and that docs/audit.md or docs/identity.md describes each one).
 *
 * Append only: entries already in a trail keep their action for good, so a name stays here
 * (and filterable) after the code stops writing it.
 */
export const AUDIT_ACTIONS = {
  // Sign-in and the caller's own account (docs/identity.md, "Audit events").
  'auth.login': 'a password attempt: success, failure, or refused (locked, unverified, address limit)',
  'auth.lockout': 'a run of failures locked an account from an address',
  'auth.throttled': 'sign-in steps refused by a limit, one entry per step, reason and minute with a count',
  'auth.second-factor': 'a second-factor attempt with its method',
  'auth.sms_code_sent': 'an SMS code sent, refused or failed',
  'auth.phone_verified': 'a phone confirmed with its code, or a wrong code',
  'auth.totp.enroll': 'an authenticator enrollment started, confirmed or failed',
  'auth.totp.confirm': 'an enrollment confirmation refused by the per-address limit',
  'auth.refresh-reuse': 'a used refresh token came back; its session was revoked',
  'auth.session.revoke': 'sessions ended: logout, logout-all, by an admin, the session limit, oauth/revoke',
  'auth.password.set': 'a setup token redeemed (or refused)',
  'auth.password.change': 'a password changed, or a wrong current password',
  'auth.signup': 'a self-registration',
  'auth.email.verify': 'a self-registered address verified (or a refused token)',
  'auth.signup.expire': 'the hourly sweep removed expired self-registrations',
  // People and machines managed by others.
  'user.create': 'a user created (API or CLI), or a refused attempt',
  'user.update': 'a refused change of a user',
  'user.role.change': "a user's role or tenant changed",
  'user.disable': 'a user disabled',
  'user.enable': 'a user re-enabled',
  'user.delete': 'a user deleted, or a refused attempt',
  'user.factors.reset': "an admin reset of a user's second factors, or a refused one",
  'user.lock': 'a user locked by an admin or the operator (sessions and trusted devices ended), or a refused attempt',
  'user.unlock': 'a user unlocked, failed-attempt locks cleared with it, or a refused attempt',
  'api-key.create': 'an API key created',
  'api-key.revoke': 'an API key revoked',
  'oauth.token': 'a client-credentials token issued, or a refused client',
  'access.denied': "a signed-in caller lacked a route's permission or another tenant's data",
  // Reads of sealed data and what goes out.
  'conversation.lookup': "a contact's conversations looked up by phone",
  'conversation.list': "a page of a tenant's conversations listed (masked numbers, no bodies)",
  'audit.read': 'a person read a page of the audit trail (the emails it names are opened)',
  'conversation.read': "a conversation's messages opened",
  'message.send': 'a message accepted for sending through the API',
  'webhook.rejected': 'provider webhooks that could not be verified, one entry per provider, tenant, reason and minute with a count',
  'webhook.sender-not-e164': 'messages stored from a sender that is no valid phone number (short code, alphanumeric id, 555 number), one entry per provider, tenant, sender kind and minute with a count',
  // Keys, tenants and the running system.
  'keys.rotate': "a new data-key version of a tenant or the system",
  'keys.rewrap': 'data keys re-wrapped under the current KEK',
  'keys.reencrypt': 'a re-encryption run',
  'keys.encrypt-existing': 'an encrypt-existing run over plaintext columns',
  'keys.init-hsm': 'the KEK created in the HSM',
  'keys.rotate-signing': 'a new token-signing key',
  'keys.destroy': "a tenant's data keys destroyed (crypto-shredding)",
  'tenant.create': 'a tenant created',
  'tenant.update': "a tenant's settings changed",
  'tenant.shredded': "a shredded tenant's rows removed",
  'tenant.setup-test': 'signed test deliveries sent to a tenant\'s public webhook URLs (`tenants test`), with the result',
  'import.jsonl': 'a JSON-lines import, finished or failed',
  'import.airtable': 'an Airtable import, finished or failed',
  'job.retry': 'a dead-lettered job put back in the queue',
  'system.start': 'the server started',
  'system.stop': 'the server stopped',
} as const satisfies Record<string, string>;

export type AuditAction = keyof typeof AUDIT_ACTIONS;

export const AUDIT_ACTION_NAMES = Object.keys(AUDIT_ACTIONS) as AuditAction[];

export function isAuditAction(value: unknown): value is AuditAction {
  return typeof value === 'string' && Object.hasOwn(AUDIT_ACTIONS, value);
}
