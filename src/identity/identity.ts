import { AuditAggregator } from '../audit/aggregator.js';
import type { Config } from '../config/load.js';
import type { Logger } from '../log/logger.js';
import { SYSTEM_SCOPE } from '../seal/binding.js';
import type { SealedFields } from '../seal/sealed-fields.js';
import type { Db } from '../store/connection.js';
import type { RedisConnection } from '../store/redis.js';
import { ApiKeysRepository } from '../store/repositories/api-keys.js';
import { LoginChallengesRepository } from '../store/repositories/login-challenges.js';
import { RecoveryCodesRepository } from '../store/repositories/recovery-codes.js';
import { SessionsRepository } from '../store/repositories/sessions.js';
import { SigningKeysRepository } from '../store/repositories/signing-keys.js';
import { TotpFactorsRepository } from '../store/repositories/totp-factors.js';
import { TrustedDevicesRepository } from '../store/repositories/trusted-devices.js';
import { UsersRepository } from '../store/repositories/users.js';
import { openRevocationBus, type RevocationBus } from '../store/revocation-bus.js';
import { AuthMetrics } from './auth-metrics.js';
import type { MailSender } from './email/mail-sender.js';
import { RecipientLimitedMailer } from './email/recipient-limited-mailer.js';
import { unauthenticated } from './errors.js';
import { RecoveryCodesFactor } from './factors/recovery/recovery-factor.js';
import { SecondFactors } from './factors/second-factors.js';
import { SmsFactor } from './factors/sms/sms-factor.js';
import { NO_SMS_SENDER, type SmsCodeSender } from './factors/sms/sms-sender.js';
import { TotpFactor } from './factors/totp/totp-factor.js';
import { emailRecipientKey } from './limits/recipient-keys.js';
import { EmailSendThrottle, LoginThrottle, SmsSendThrottle } from './limits/throttle.js';
import { ApiKeys } from './machines/api-keys.js';
import type { ApiKeyScope, Role } from './permissions.js';
import type { Principal } from './principal.js';
import { Sessions } from './sessions/sessions.js';
import { LoginChallenges } from './sign-in/challenges.js';
import { TrustedDevices } from './sign-in/trusted-devices.js';
import { ACCESS_TOKEN_TTL_SECONDS, TokenError, issueAccessToken, verifyAccessToken } from './tokens/access-tokens.js';
import { OPAQUE_TOKEN_PREFIXES } from './tokens/opaque-tokens.js';
import { SigningKeys } from './tokens/signing-keys.js';

/**
 * Every part of identity, wired once per process: the repositories it reads and writes
 * through, the session cache with its revocation bus, the second factors, the throttle, the
 * signing keys. The use cases (sign-in/, accounts/, sessions/, machines/, factors/) take the
 * Identity and work with these; routes and CLI commands call the use cases.
 */
export interface IdentityParts {
  db: Db;
  fields: SealedFields;
  logger: Logger;
  users: UsersRepository;
  sessions: Sessions;
  devices: TrustedDevices;
  challenges: LoginChallenges;
  /** The registry of second factors, sign-in dispatches through. */
  factors: SecondFactors;
  /** SMS codes; offered only with a sender (CIPHERGATE_SMS_SENDER_TENANT) and a verified phone. */
  sms: SmsFactor;
  apiKeys: ApiKeys;
  signingKeys: SigningKeys;
  throttle: LoginThrottle;
  bus: RevocationBus;
  mailer?: MailSender;
  settings: IdentitySettings;
}

export interface IdentitySettings {
  issuer: string;
  audience: string;
  publicUrl: string;
  signup: 'closed' | 'open';
  /** How long a self-registration waits for its verification (CIPHERGATE_SIGNUP_PENDING_HOURS). */
  signupPendingMs: number;
}

export interface OpenIdentityOptions {
  config: Pick<Config, 'publicUrl' | 'signup' | 'signupPendingHours' | 'sessions' | 'maxSessionsPerUser'>;
  db: Db;
  fields: SealedFields;
  logger: Logger;
  redis?: RedisConnection;
  /** Where emails leave from (the SMTP transport); without it no email is sent. */
  mailer?: MailSender;
  /** Where SMS codes leave from (src/runtime/tenant-sms-sender.ts); without it SMS codes are not offered. */
  smsSender?: SmsCodeSender;
  /** Isolates Redis keys and channels (tests, several deployments on one Redis). */
  redisKeyPrefix?: string;
}

export async function openIdentity(options: OpenIdentityOptions): Promise<Identity> {
  const { config, db, fields, logger } = options;
  const keyPrefix = options.redisKeyPrefix ?? 'cg';
  const redis = options.redis ? { redis: options.redis } : {};
  const bus = openRevocationBus(options.redis, { keyPrefix, logger });
  const signingKeys = await SigningKeys.open(new SigningKeysRepository(db, fields));
  const sms = new SmsFactor(db, fields, options.smsSender ?? NO_SMS_SENDER, new SmsSendThrottle({ ...redis, keyPrefix }));
  // Registered once: the order is the order sign-in lists the methods in.
  const users = new UsersRepository(db, fields);
  const factors = new SecondFactors(new TotpFactor(new TotpFactorsRepository(db, fields)), new RecoveryCodesFactor(new RecoveryCodesRepository(db), fields), [sms]);
  const rekeyed = await factors.upgradeLegacyRecoveryCodes();
  if (rekeyed > 0) logger.info({ recoveryCodes: rekeyed }, 'recovery codes stored unkeyed by an earlier release were re-keyed');
  return new Identity({
    db,
    fields,
    logger,
    users,
    sessions: new Sessions(db, new SessionsRepository(db), bus, {
      idleMs: config.sessions.idleMinutes * 60_000,
      absoluteMs: config.sessions.absoluteHours * 3_600_000,
      ...(config.maxSessionsPerUser !== undefined ? { maxPerUser: config.maxSessionsPerUser } : {}),
    }),
    devices: new TrustedDevices(new TrustedDevicesRepository(db)),
    challenges: new LoginChallenges(new LoginChallengesRepository(db)),
    factors,
    sms,
    apiKeys: new ApiKeys(new ApiKeysRepository(db)),
    signingKeys,
    throttle: new LoginThrottle({ ...redis, keyPrefix }),
    bus,
    // Every email identity sends is limited per recipient here, whichever flow sends it.
    ...(options.mailer
      ? { mailer: new RecipientLimitedMailer(options.mailer, new EmailSendThrottle({ ...redis, keyPrefix }), (to) => emailRecipientKey(users, to), logger) }
      : {}),
    settings: tokenSettings(config),
  });
}

/** Issuer is the public base URL; the audience is our API, so a token minted for another service of the same issuer is refused. */
export function tokenSettings(config: Pick<Config, 'publicUrl' | 'signup' | 'signupPendingHours'>): IdentitySettings {
  const base = config.publicUrl.replace(/\/+$/, '');
  return { issuer: base, audience: `${base}/api`, publicUrl: base, signup: config.signup, signupPendingMs: config.signupPendingHours * 3_600_000 };
}

export class Identity {
  /** Sign-in failures and lockouts of this instance; `/metrics` serves them. */
  readonly metrics = new AuthMetrics();
  /**
   * Throttled sign-in steps (429s), audited as one `auth.throttled` entry per step, reason and
   * minute instead of one per refusal; written at the latest by `close()`.
   */
  readonly throttleAudit: AuditAggregator;

  constructor(readonly parts: IdentityParts) {
    this.throttleAudit = new AuditAggregator(parts.db, { logger: parts.logger });
  }

  /**
   * The principal behind a bearer credential: an API key (`cgk_…`) or an access JWT whose
   * session is still live. Every failure is the same `unauthenticated` type; its detail says
   * only expired / not valid / session ended, which the token's holder may know, never which
   * check of a forged token failed.
   */
  async authenticate(credential: string, via: 'bearer' | 'cookie'): Promise<Principal> {
    const { apiKeys, signingKeys, sessions, settings } = this.parts;
    if (credential.startsWith(OPAQUE_TOKEN_PREFIXES.apiKey)) {
      if (via === 'cookie') throw unauthenticated();
      const key = await apiKeys.authenticate(credential);
      if (!key) throw unauthenticated('the API key is unknown, expired or revoked');
      return { kind: 'machine', apiKeyId: key.id, sessionId: null, scopes: key.scopes, tenantId: key.tenantId, via: 'api-key' };
    }
    let claims;
    try {
      claims = await verifyAccessToken(signingKeys, credential, { issuer: settings.issuer, audience: settings.audience });
    } catch (error) {
      if (error instanceof TokenError) throw unauthenticated(error.reason === 'expired' ? 'the access token has expired' : 'the access token is not valid');
      throw error;
    }
    const session = await sessions.checkLive(claims.sid);
    if (!session) throw unauthenticated('the session of this access token has ended');
    if (claims.role !== null) {
      if (session.userId !== claims.sub) throw unauthenticated('the access token is not valid');
      return { kind: 'user', userId: claims.sub, sessionId: claims.sid, role: claims.role, tenantId: claims.tenant, via };
    }
    if (session.apiKeyId !== claims.sub || via === 'cookie') throw unauthenticated('the access token is not valid');
    return { kind: 'machine', apiKeyId: claims.sub, sessionId: claims.sid, scopes: claims.scope ?? [], tenantId: claims.tenant, via: 'bearer' };
  }

  /** An access token for a user's session; the role and tenant are read fresh, so a changed role shows on the next refresh. */
  async accessTokenFor(user: { id: string; role: Role; tenantId: string | null }, sessionId: string) {
    const { settings, signingKeys } = this.parts;
    return issueAccessToken(signingKeys, { issuer: settings.issuer, audience: settings.audience, subject: user.id, sessionId, tenantId: user.tenantId, grant: { role: user.role } });
  }

  async machineAccessTokenFor(key: { id: string; tenantId: string | null }, scopes: ApiKeyScope[], sessionId: string) {
    const { settings, signingKeys } = this.parts;
    return issueAccessToken(signingKeys, { issuer: settings.issuer, audience: settings.audience, subject: key.id, sessionId, tenantId: key.tenantId, grant: { scopes, clientId: key.id } });
  }

  /** The public keys that verify our access tokens (current and recently retired), as published at `/.well-known/jwks.json`. */
  jwks() {
    return this.parts.signingKeys.jwks();
  }

  /**
   * A stable, keyed, non-reversible key for throttling by account: the email's blind index
   * under the current key version. Unknown emails get one too, so lockouts do not reveal
   * whether an account exists, and Redis never holds an address.
   */
  accountThrottleKey(email: string): string {
    return emailRecipientKey(this.parts.users, email);
  }

  /**
   * The key that binds CSRF tokens to the session they were issued in (src/http/guard.ts).
   * Every instance must hold the same one, across restarts and rotations of the system key, or a
   * browser's token would work on one server and not the next: so it is derived from the oldest
   * active version of the system key, which stays active for as long as the deployment exists
   * (only a tenant's keys are ever destroyed), under a label used for nothing else.
   */
  csrfKey(): Buffer {
    const perVersion = this.parts.fields.sealer.blindIndexAllVersions(CSRF_KEY_CONTEXT, CSRF_KEY_LABEL, { normaliser: 'exact', lengthBytes: 32 });
    const oldest = perVersion.at(-1);
    if (!oldest) throw new Error('the system key has no active version to derive the CSRF key from');
    return oldest;
  }

  async close(): Promise<void> {
    await this.throttleAudit.stop();
    await this.parts.bus.close();
  }
}

const CSRF_KEY_CONTEXT = { tenantId: SYSTEM_SCOPE, table: 'sessions', column: 'csrf_binding' } as const;
const CSRF_KEY_LABEL = 'ciphergate/v1/csrf-token-key';

export { ACCESS_TOKEN_TTL_SECONDS };
