import { timingSafeEqual } from 'node:crypto';
import { appendAuditEvent, type AuditEventInput } from '../../store/audit-trail.js';
import { hashRefreshToken, isRefreshTokenFormat } from '../sessions/refresh-tokens.js';
import { eq } from 'drizzle-orm';
import type { Db } from '../../store/connection.js';
import { refreshTokens } from '../../store/schema.js';
import type { ApiKeyRecord } from './api-keys.js';
import { AuthError, forbidden } from '../errors.js';
import type { Identity } from '../identity.js';
import { OPAQUE_TOKEN_PREFIXES, hashOpaqueToken } from '../tokens/opaque-tokens.js';
import { API_KEY_SCOPES, isApiKeyScope, keyScopesBeyondRole, roleHasPermission, type ApiKeyScope, type Role } from '../permissions.js';
import { auditActorOf, confinedTenant, type Principal } from '../principal.js';
import type { RequestOrigin } from '../sign-in/sign-in.js';
import { ACCESS_TOKEN_TTL_SECONDS, TokenError, verifyAccessToken } from '../tokens/access-tokens.js';
import { isUuid } from '../../domain/ids.js';

/**
 * Why a user's keys are being re-checked: their role changed (to `role`), or they were
 * disabled or deleted. Written to the audit trail as the `reason` of each revocation.
 */
export type CreatorChange = { reason: 'creator-role-changed'; role: Role } | { reason: 'creator-disabled' | 'creator-deleted' };

/**
 * Machines: API keys (created, listed, revoked) and the OAuth 2.0 endpoints built on them,
 * the client-credentials grant (RFC 6749 §4.4) and token revocation (RFC 7009).
 */
export class MachineAuth {
  constructor(private readonly identity: Identity) {}

  private get parts() {
    return this.identity.parts;
  }

  /**
   * Creates a key. `actor` null means the CLI (the operator at the console of the machine):
   * such a key has no creator and outlives every user. A user may give a key only scopes
   * their own role holds (a 403 names the others), and owns the key from then on: it dies
   * when they lose the permission that allowed it (`revokeKeysOfCreator`). Machines make no
   * keys. A confined principal (a client user) could only make keys for its own tenant, but
   * no such principal holds `api-keys:write` in the matrix today; the check stays as a guard.
   */
  async createKey(actor: Principal | null, input: { name: string; tenantId: string | null; scopes: string[]; expiresAt?: Date | null }, origin?: RequestOrigin): Promise<{ record: ApiKeyRecord; key: string }> {
    const scopes = validScopes(input.scopes);
    if (actor) await this.assertMayGiveScopes(actor, scopes, input.tenantId, origin);
    if (scopes.some((scope) => scope !== 'metrics:read') && !input.tenantId) {
      throw new AuthError(400, 'validation-failed', 'Validation failed', 'an API key with data scopes must be bound to a tenant');
    }
    if (input.expiresAt && input.expiresAt.getTime() <= Date.now()) throw new AuthError(400, 'validation-failed', 'Validation failed', 'expiresAt must be in the future');
    if (actor) {
      const confined = confinedTenant(actor);
      if (confined !== null && confined !== input.tenantId) throw forbidden('keys can only be made for your own tenant');
    }
    const { db, apiKeys, users } = this.parts;
    const creatorId = actor?.kind === 'user' ? actor.userId : null;
    return db.transaction(async (tx) => {
      if (creatorId !== null) {
        // The role in the caller's token was checked before this transaction. Read it again
        // under the user's row lock: a demotion that committed meanwhile is seen here, and one
        // still running waits for this key to commit and then revokes it with the others.
        const creator = await users.getForUpdate(creatorId, tx);
        if (!creator || creator.status !== 'active' || keyScopesBeyondRole(creator.role, scopes).length > 0) throw forbidden('your role no longer allows this key');
      }
      const created = await apiKeys.create({ ...input, scopes, createdBy: creatorId }, tx);
      await appendAuditEvent(tx, {
        actor: actor ? auditActorOf(actor) : { type: 'system' },
        action: 'api-key.create',
        target: { type: 'api_key', id: created.record.id },
        tenantId: input.tenantId,
        sourceIp: origin?.ip ?? null,
        outcome: 'success',
        details: { scopes: scopes.join(' '), expires: input.expiresAt ? input.expiresAt.toISOString() : null },
      });
      return created;
    });
  }

  /**
   * Revokes the keys `creatorId` made that they could no longer make after a change (all of
   * them once disabled or deleted; after a role change, those with a scope the new role
   * lacks), with every client-credentials token issued from them: the sessions are announced
   * on the revocation bus, so every instance refuses them at once. One `api-key.revoke` event
   * per key, by the actor of the change. Runs inside the transaction of the change, after it
   * took the user's row lock (see `createKey`). Returns how many keys it revoked.
   */
  async revokeKeysOfCreator(actor: Principal, creatorId: string, change: CreatorChange, tx: Db, origin: RequestOrigin): Promise<number> {
    const keep = change.reason === 'creator-role-changed' ? (key: Pick<ApiKeyRecord, 'scopes'>) => keyScopesBeyondRole(change.role, key.scopes).length === 0 : undefined;
    const revoked = await this.parts.apiKeys.revokeCreatedBy(creatorId, tx, keep);
    for (const key of revoked) await this.endRevokedKey(key, { reason: change.reason, creator: creatorId }, auditActorOf(actor), origin.ip, tx);
    return revoked.length;
  }

  /**
   * Revokes every live key its creator could not make today, the way a change of that creator
   * would have (`revokeKeysOfCreator`). Keys made before keys followed their creator's role
   * outlived demotions, and managers could give `metrics:read`; `serve` runs this at start so
   * an upgrade ends them. Idempotent, safe on several instances at once (each key is revoked,
   * and audited, by one of them); actor `system`. Returns how many keys it revoked.
   */
  async revokeKeysBeyondTheirCreators(): Promise<number> {
    const { db, apiKeys } = this.parts;
    let revoked = 0;
    for (const key of await apiKeys.liveWithCreators()) {
      const reason = !key.creator ? 'creator-deleted' : key.creator.status !== 'active' ? 'creator-disabled' : keyScopesBeyondRole(key.creator.role, key.scopes).length > 0 ? 'creator-role-changed' : undefined;
      if (reason === undefined) continue;
      await db.transaction(async (tx) => {
        if (!(await apiKeys.revoke(key.id, tx))) return;
        await this.endRevokedKey(key, { reason, creator: key.createdBy, via: 'start-up-check' }, { type: 'system' }, null, tx);
        revoked += 1;
      });
    }
    return revoked;
  }

  /** Ends the tokens of a key just revoked (announced on the revocation bus) and audits the revocation. */
  private async endRevokedKey(key: Pick<ApiKeyRecord, 'id' | 'tenantId'>, details: { reason: CreatorChange['reason']; creator: string; via?: string }, actor: AuditEventInput['actor'], sourceIp: string | null, tx: Db): Promise<void> {
    const ended = await this.parts.sessions.revokeForApiKeys([key.id], 'api-key-revoked', tx);
    await appendAuditEvent(tx, { actor, action: 'api-key.revoke', target: { type: 'api_key', id: key.id }, tenantId: key.tenantId, sourceIp, outcome: 'success', details: { ...details, endedSessions: ended.length } });
  }

  /** Revokes a key and every token issued from it, at once. */
  async revokeKey(actor: Principal, id: string, origin: RequestOrigin): Promise<void> {
    const { apiKeys, sessions, db } = this.parts;
    const record = isUuid(id) ? await apiKeys.get(id) : undefined;
    const confined = confinedTenant(actor);
    if (!record || (confined !== null && confined !== record.tenantId)) throw new AuthError(404, 'not-found', 'Not Found', 'no such API key');
    await db.transaction(async (tx) => {
      if (!(await apiKeys.revoke(id, tx))) throw new AuthError(404, 'not-found', 'Not Found', 'no such API key (or revoked already)');
      await sessions.revokeForApiKeys([id], 'api-key-revoked', tx);
      await appendAuditEvent(tx, { actor: auditActorOf(actor), action: 'api-key.revoke', target: { type: 'api_key', id }, tenantId: record.tenantId, sourceIp: origin.ip, outcome: 'success', details: {} });
    });
  }

  /**
   * Nobody gives a key a scope they lack themselves: a manager cannot mint `metrics:read`.
   * The refusal names the scopes and is audited (an attempt to climb, like giving a role one
   * may not give); nothing else is written.
   */
  private async assertMayGiveScopes(actor: Principal, scopes: ApiKeyScope[], tenantId: string | null, origin: RequestOrigin | undefined): Promise<void> {
    if (actor.kind === 'machine') throw forbidden('machines do not make API keys');
    const beyond = keyScopesBeyondRole(actor.role, scopes);
    if (beyond.length === 0) return;
    await appendAuditEvent(this.parts.db, {
      actor: auditActorOf(actor),
      action: 'api-key.create',
      tenantId,
      sourceIp: origin?.ip ?? null,
      outcome: 'denied',
      details: { reason: 'scope-not-held', scopes: beyond.join(' ') },
    });
    const detail = roleHasPermission(actor.role, 'api-keys:write')
      ? `a ${actor.role} may not give an API key ${beyond.length === 1 ? 'the scope' : 'the scopes'} ${beyond.map((scope) => `"${scope}"`).join(', ')}: a key holds only what its creator holds`
      : `a ${actor.role} may not make API keys`;
    throw new AuthError(403, 'forbidden', 'Forbidden', detail, { scopes: beyond });
  }

  /**
   * Client credentials: the API key id is the client id, the key is the secret. The answer is
   * a short-lived access JWT with the requested scopes (all of the key's when none are asked).
   */
  async clientCredentials(input: { clientId: string; clientSecret: string; scope?: string | undefined }, origin: RequestOrigin) {
    const { apiKeys, sessions, db } = this.parts;
    // Not recorded as a use until the client id is known to match: a secret sent with another
    // key's id is a failed attempt, not a use of this key.
    const record = await apiKeys.authenticate(input.clientSecret, { touch: false });
    // Compared as hashes of equal length, so the check does not leak how much of the id matched.
    const idMatches = record !== undefined && timingSafeEqual(Buffer.from(hashOpaqueToken(record.id), 'hex'), Buffer.from(hashOpaqueToken(input.clientId), 'hex'));
    if (!record || !idMatches) {
      await appendAuditEvent(db, { actor: { type: 'anonymous' }, action: 'oauth.token', sourceIp: origin.ip, outcome: 'failure', details: { reason: 'invalid-client' } });
      throw oauthError(401, 'invalid_client', 'client authentication failed');
    }
    await apiKeys.touch(record);
    const requested = input.scope === undefined || input.scope.trim() === '' ? record.scopes : input.scope.trim().split(/\s+/);
    const granted = requested.filter((scope): scope is ApiKeyScope => isApiKeyScope(scope) && record.scopes.includes(scope));
    if (granted.length !== requested.length) throw oauthError(400, 'invalid_scope', 'the key does not hold every requested scope');
    // A session per token, so `/oauth/revoke` and key revocation end it like a user session.
    const started = await sessions.start({ apiKeyId: record.id, deviceLabel: 'client credentials', ip: origin.ip, absoluteMs: ACCESS_TOKEN_TTL_SECONDS * 1000 });
    const access = await this.identity.machineAccessTokenFor(record, granted, started.sessionId);
    await appendAuditEvent(db, { actor: { type: 'api_key', id: record.id }, action: 'oauth.token', target: { type: 'session', id: started.sessionId }, tenantId: record.tenantId, sourceIp: origin.ip, outcome: 'success', details: { scopes: granted.join(' ') } });
    return { access_token: access.token, token_type: 'Bearer' as const, expires_in: ACCESS_TOKEN_TTL_SECONDS, scope: granted.join(' ') };
  }

  /**
   * RFC 7009. Possession of a token is the authority to revoke it: a refresh token or an
   * access token ends its session, an API key is revoked. Unknown and invalid tokens get the
   * same 200 (§2.2), so the endpoint cannot be used to test whether a token exists.
   */
  async revokeToken(token: string, origin: RequestOrigin): Promise<void> {
    const { sessions, apiKeys, db, signingKeys, settings } = this.parts;
    let sessionId: string | undefined;
    let apiKeyId: string | undefined;
    const looksLikeRefreshToken: boolean = isRefreshTokenFormat(token);
    if (looksLikeRefreshToken) {
      const [row] = await db.select({ sessionId: refreshTokens.sessionId }).from(refreshTokens).where(eq(refreshTokens.tokenHash, hashRefreshToken(token))).limit(1);
      sessionId = row?.sessionId;
    } else if (token.startsWith(OPAQUE_TOKEN_PREFIXES.apiKey)) {
      apiKeyId = (await apiKeys.authenticate(token))?.id;
    } else {
      try {
        // Signature, issuer and audience must hold: anyone can write a JWT naming a sid. An
        // expired token is refused here too, and needs no revoking.
        const claims = await verifyAccessToken(signingKeys, token, { issuer: settings.issuer, audience: settings.audience });
        sessionId = claims.sid;
      } catch (error) {
        if (!(error instanceof TokenError)) throw error;
      }
    }
    if (sessionId) {
      const revoked = await sessions.revoke([sessionId], 'token-revoked');
      if (revoked.length > 0) await appendAuditEvent(db, { actor: { type: 'anonymous' }, action: 'auth.session.revoke', target: { type: 'session', id: sessionId }, sourceIp: origin.ip, outcome: 'success', details: { reason: 'oauth-revoke', count: 1 } });
    }
    if (apiKeyId && (await apiKeys.revoke(apiKeyId))) {
      await sessions.revokeForApiKeys([apiKeyId], 'api-key-revoked');
      await appendAuditEvent(db, { actor: { type: 'api_key', id: apiKeyId }, action: 'api-key.revoke', target: { type: 'api_key', id: apiKeyId }, sourceIp: origin.ip, outcome: 'success', details: { via: 'oauth-revoke' } });
    }
  }
}

function validScopes(scopes: string[]): ApiKeyScope[] {
  if (scopes.length === 0) throw new AuthError(400, 'validation-failed', 'Validation failed', 'an API key needs at least one scope');
  const unknown = scopes.filter((scope) => !isApiKeyScope(scope));
  if (unknown.length > 0) throw new AuthError(400, 'validation-failed', 'Validation failed', `unknown scope "${unknown[0]}"; allowed: ${API_KEY_SCOPES.join(', ')}`);
  return scopes as ApiKeyScope[];
}

/** RFC 6749 §5.2 errors are JSON with `error`; we send them as problem+json carrying `error` too. */
export function oauthError(status: 400 | 401, error: string, description: string): AuthError {
  return new AuthError(status, error.replace(/_/g, '-'), 'OAuth error', description, { error, error_description: description }, status === 401 ? { 'www-authenticate': 'Basic realm="ciphergate"' } : {});
}
