import { timingSafeEqual } from 'node:crypto';
import { appendAuditEvent } from '../../store/audit-trail.js';
import { IdentityError } from '../errors.js';
import type { Identity } from '../identity.js';
import { isApiKeyScope, type ApiKeyScope } from '../permissions.js';
import type { RequestOrigin } from '../request-origin.js';
import { isRefreshTokenFormat } from '../sessions/refresh-tokens.js';
import { ACCESS_TOKEN_TTL_SECONDS, TokenError, verifyAccessToken } from '../tokens/access-tokens.js';
import { OPAQUE_TOKEN_PREFIXES, hashOpaqueToken } from '../tokens/opaque-tokens.js';

/** The RFC 6749 §5.2 error codes this server answers with. */
export type OAuthErrorCode = 'invalid_request' | 'invalid_client' | 'invalid_scope' | 'unsupported_grant_type';

/**
 * OAuth 2.0 for machines, built on API keys: the client-credentials grant (RFC 6749 §4.4;
 * client id = API key id, client secret = the key) and token revocation (RFC 7009).
 */
export class OAuth {
  constructor(private readonly identity: Identity) {}

  private get parts() {
    return this.identity.parts;
  }

  /**
   * Client credentials: the answer is a short-lived access JWT with the requested scopes (all
   * of the key's when none are asked).
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
      throw oauthError('invalid_client', 'client authentication failed');
    }
    await apiKeys.touch(record);
    const requested = input.scope === undefined || input.scope.trim() === '' ? record.scopes : input.scope.trim().split(/\s+/);
    const granted = requested.filter((scope): scope is ApiKeyScope => isApiKeyScope(scope) && record.scopes.includes(scope));
    if (granted.length !== requested.length) throw oauthError('invalid_scope', 'the key does not hold every requested scope');
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
    // Not a type guard here: a string that is no refresh token may still be any other kind.
    const looksLikeRefreshToken: boolean = isRefreshTokenFormat(token);
    if (looksLikeRefreshToken) {
      sessionId = await sessions.sessionOfRefreshToken(token);
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

/**
 * An RFC 6749 §5.2 error: the answer is problem+json that also carries `error` and
 * `error_description`, so OAuth clients find what they expect.
 */
export function oauthError(error: OAuthErrorCode, description: string): IdentityError {
  return new IdentityError(OAUTH_CODES[error], description, { error, error_description: description });
}

const OAUTH_CODES = {
  invalid_request: 'oauth-invalid-request',
  invalid_client: 'oauth-invalid-client',
  invalid_scope: 'oauth-invalid-scope',
  unsupported_grant_type: 'oauth-unsupported-grant-type',
} as const satisfies Record<OAuthErrorCode, string>;
