import { isUuid } from '../../domain/ids.js';
import { normaliseStatus } from '../../domain/message-status.js';
import { inboundSenderOf } from '../../domain/normalise.js';
import { parseFormBody, verifyTwilioRequest } from '../../providers/twilio/webhook-signature.js';
import type { TenantContext } from '../tenant-directory.js';
import type { InboundRelay } from './context.js';
import { DECOY_SECRET, type Accepted, type Delivery, type InboundGate, type Rejection } from './gate.js';

/**
 * Twilio's SMS webhooks (`/webhooks/twilio/:tenant/sms`) and status callbacks (`…/status`).
 * Signed with the account's auth token over the URL and the form parameters (or, for JSON bodies,
 * the URL carrying `bodySHA256`), see src/providers/twilio/webhook-signature.ts.
 */

export interface VerifiedTwilio {
  ok: true;
  tenant: TenantContext;
  /** The form (or flat JSON) parameters; a repeated key holds all its values. */
  params: Record<string, string | string[]>;
  signedUrl: string;
}

/** A Message SID: SM (SMS) or MM (MMS) and 32 hex digits (https://www.twilio.com/docs/glossary/what-is-a-sid). */
const TWILIO_MESSAGE_SID = /^(SM|MM)[0-9a-f]{32}$/i;

/**
 * Checks, in this order: the tenant and its allowlist, the body parses, the signature (against
 * the decoy when the tenant is unknown), the tenant has Twilio settings, the signature is there
 * and right, and the AccountSid, when sent, is the tenant's.
 */
export async function verify(gate: InboundGate, delivery: Delivery): Promise<VerifiedTwilio | Rejection> {
  const admitted = await gate.admit('twilio', delivery);
  if (!admitted.ok) return admitted;
  const { tenant } = admitted;
  const { rawBody } = delivery;
  const contentType = delivery.header('content-type');
  const signature = delivery.header('x-twilio-signature');
  const isJson = (contentType ?? '').toLowerCase().startsWith('application/json');
  let params: Record<string, string | string[]>;
  try {
    params = isJson ? jsonParams(rawBody) : parseFormBody(rawBody);
  } catch {
    return tenant ? { ok: false, reason: 'malformed-payload', tenant } : { ok: false, reason: 'unknown-tenant' };
  }
  const valid = verifyTwilioRequest({
    authToken: tenant?.secrets.twilioAuthToken ?? DECOY_SECRET,
    url: delivery.signedUrl,
    signature,
    contentType,
    rawBody,
    ...(isJson ? {} : { formParams: params }),
  });
  if (!tenant) return { ok: false, reason: 'unknown-tenant' };
  if (!tenant.settings.twilio || !tenant.secrets.twilioAuthToken) return { ok: false, reason: 'provider-not-configured', tenant };
  if (!signature) return { ok: false, reason: 'missing-signature', tenant };
  if (!valid) return { ok: false, reason: 'bad-signature', tenant };
  const accountSid = first(params.AccountSid);
  if (accountSid !== undefined && accountSid !== tenant.settings.twilio.accountSid) return { ok: false, reason: 'account-mismatch', tenant };
  return { ok: true, tenant, params, signedUrl: delivery.signedUrl };
}

/**
 * An inbound SMS (`sms`): stored with its follow-up jobs, committed before this resolves. A
 * sender that is no valid phone number (a short code, an alphanumeric sender, a 555 number) is
 * genuine and stored too, flagged (src/domain/normalise.ts, `inboundSenderOf`); a `From` that
 * names no sender at all is malformed and refused with 400, which Twilio's debugger shows.
 *
 * A status callback (`status`): applied when it moves the message forward. Our status callback
 * URLs name our message (`?m=`, covered by the signature): the callback can arrive before the
 * send job has recorded Twilio's sid.
 */
export async function accept(relay: InboundRelay, verified: VerifiedTwilio, kind: 'sms' | 'status'): Promise<Accepted> {
  const { tenant, params } = verified;
  const messageSid = first(params.MessageSid) ?? first(params.SmsSid);
  if (kind === 'sms') {
    const from = first(params.From);
    const body = first(params.Body) ?? '';
    const sender = inboundSenderOf(from);
    if (!isMessageSid(messageSid) || !sender) return { ok: false, reason: 'malformed-payload', tenant };
    const stored = await relay.receive(tenant, { channel: 'sms', dedupeKey: `twilio:${messageSid}`, providerMessageId: messageSid, sender, body });
    return relay.gate.accepted('twilio', stored.duplicate ? 'duplicate' : 'stored', stored.duplicate ? undefined : { tenant, sender });
  }
  const status = normaliseStatus(first(params.MessageStatus) ?? first(params.SmsStatus));
  const errorCode = first(params.ErrorCode);
  if (!isMessageSid(messageSid) || status === 'unknown') return { ok: false, reason: 'malformed-payload', tenant };
  const ours = new URL(verified.signedUrl).searchParams.get('m');
  const which = ours && isUuid(ours) ? { messageId: ours } : { providerMessageId: messageSid };
  await relay.updateStatus(tenant, which, status, errorCode && /^\d{1,10}$/.test(errorCode) ? errorCode : null);
  return relay.gate.accepted('twilio', 'status');
}

/** The sid is looked up as text: one that is no sid (a NUL byte in it failed the query) is malformed. */
function isMessageSid(value: string | undefined): value is string {
  return value !== undefined && TWILIO_MESSAGE_SID.test(value);
}

function first(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** Twilio's JSON webhooks (signed with bodySHA256) carry flat string members. */
function jsonParams(rawBody: Buffer): Record<string, string> {
  const parsed = JSON.parse(rawBody.toString('utf8')) as unknown;
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new SyntaxError('not an object');
  return Object.fromEntries(Object.entries(parsed).filter((entry): entry is [string, string] => typeof entry[1] === 'string'));
}
