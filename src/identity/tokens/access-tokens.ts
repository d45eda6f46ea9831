import { randomUUID } from 'node:crypto';
import { SignJWT, decodeProtectedHeader, errors, jwtVerify, type JWTPayload } from 'jose';
import { isRole, type Role } from '../permissions.js';
import type { SigningKeys } from './signing-keys.js';
import { ACCESS_TOKEN_TTL_SECONDS, CLOCK_TOLERANCE_SECONDS } from './token-lifetimes.js';

/**
 * Access tokens: short-lived JWTs (RFC 9068 profile) that say who is calling and in which
 * session, and nothing more. They carry no personal data because they sit in browser memory,
 * proxies and logs, and anyone can base64-decode them.
 */

export { ACCESS_TOKEN_TTL_SECONDS, CLOCK_TOLERANCE_SECONDS };
/** RFC 9068 §2.1: a distinct `typ` so an ID token or another JWT of ours is never taken for an access token. */
export const ACCESS_TOKEN_TYPE = 'at+jwt';
/** The only algorithm accepted. Everything else, `none` and HMAC included, is refused before a key is chosen. */
export const ACCESS_TOKEN_ALGORITHM = 'EdDSA';
/** Far above a real token (~450 chars); bounds the parsing work an anonymous caller can cause. */
const MAX_TOKEN_LENGTH = 4096;

/** RFC 9068 §2.2 `client_id` of tokens issued to people through our own sign-in. */
export const FIRST_PARTY_CLIENT_ID = 'ciphergate';

export interface AccessTokenClaims {
  iss: string;
  aud: string;
  /** User id. */
  sub: string;
  /** Session id: every request checks that this session is still live. */
  sid: string;
  /** A person's role; null in a machine token (client credentials), which carries `scope` instead. */
  role: Role | null;
  /** A machine token's granted scopes (RFC 9068 §2.2.3); null in a person's token. */
  scope: string[] | null;
  /** `ciphergate` for people; the API key id for machines. */
  client_id: string;
  /** Tenant id for client users; null for staff and unassigned users. */
  tenant: string | null;
  jti: string;
  iat: number;
  exp: number;
}

export type TokenFailure =
  | 'malformed'
  | 'bad-signature'
  | 'unknown-key'
  | 'expired'
  | 'wrong-audience'
  | 'wrong-issuer'
  | 'wrong-type'
  | 'algorithm-not-allowed'
  | 'missing-claim';

/** An access token was refused. Callers branch on `reason`; the message never contains the token. */
export class TokenError extends Error {
  override readonly name = 'TokenError';
  constructor(
    readonly reason: TokenFailure,
    message: string = DEFAULT_MESSAGES[reason],
  ) {
    super(message);
  }
}

export interface IssueAccessTokenInput {
  issuer: string;
  audience: string;
  /** User id. */
  subject: string;
  sessionId: string;
  tenantId: string | null;
  now?: Date;
  /** Exactly one of: a person's role, or a machine's scopes with its client id. */
  grant: { role: Role } | { scopes: string[]; clientId: string };
}

export interface IssuedAccessToken {
  token: string;
  jti: string;
  expiresAt: Date;
}

export async function issueAccessToken(keys: SigningKeys, input: IssueAccessTokenInput): Promise<IssuedAccessToken> {
  const signingKey = keys.current();
  const issuedAt = Math.floor((input.now ?? new Date()).getTime() / 1000);
  const expiresAt = issuedAt + ACCESS_TOKEN_TTL_SECONDS;
  const jti = randomUUID();
  const grantClaims =
    'role' in input.grant
      ? { role: input.grant.role, client_id: FIRST_PARTY_CLIENT_ID }
      : { scope: input.grant.scopes.join(' '), client_id: input.grant.clientId };
  const token = await new SignJWT({ sid: input.sessionId, tenant: input.tenantId, ...grantClaims })
    .setProtectedHeader({ alg: ACCESS_TOKEN_ALGORITHM, typ: ACCESS_TOKEN_TYPE, kid: signingKey.kid })
    .setIssuer(input.issuer)
    .setAudience(input.audience)
    .setSubject(input.subject)
    .setJti(jti)
    .setIssuedAt(issuedAt)
    .setExpirationTime(expiresAt)
    .sign(signingKey.privateKey);
  return { token, jti, expiresAt: new Date(expiresAt * 1000) };
}

export interface VerifyAccessTokenOptions {
  issuer: string;
  audience: string;
  now?: Date;
}

/**
 * Checks signature, algorithm, type, issuer, audience and lifetime, and returns the claims;
 * throws `TokenError` otherwise. It does not know about revocation: the caller must still check
 * that `sid` names a live session.
 */
export async function verifyAccessToken(keys: SigningKeys, token: string, options: VerifyAccessTokenOptions): Promise<AccessTokenClaims> {
  if (typeof token !== 'string' || token.length > MAX_TOKEN_LENGTH) throw new TokenError('malformed');
  const segments = token.split('.');
  if (segments.length !== 3) throw new TokenError('malformed');
  if (!segments.every(isCanonicalBase64url)) throw new TokenError('malformed', 'access token is not canonical base64url');
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(token);
  } catch {
    throw new TokenError('malformed');
  }
  // Decided from the header before any key is looked up, so an attacker-chosen algorithm
  // (`none`, or HS256 keyed with our public key) never meets key material. `alg: none` is
  // reported as algorithm-not-allowed, not malformed: it is a well-formed JWS naming an
  // algorithm we refuse, and the audit trail should say so.
  if (header.alg !== ACCESS_TOKEN_ALGORITHM) throw new TokenError('algorithm-not-allowed');
  // Every token we issue names its key; one without is not ours.
  if (typeof header.kid !== 'string' || header.kid === '') throw new TokenError('malformed', 'access token has no kid');

  const at = options.now ?? new Date();
  const key = await keys.verificationKey(header.kid, at);
  if (!key) throw new TokenError('unknown-key');

  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(token, key, {
      algorithms: [ACCESS_TOKEN_ALGORITHM],
      typ: ACCESS_TOKEN_TYPE,
      issuer: options.issuer,
      audience: options.audience,
      clockTolerance: CLOCK_TOLERANCE_SECONDS,
      currentDate: at,
      // Bounds age by iat as well as exp, so a token minted with a long exp (a bug, or a
      // leaked key used carelessly) still dies on our schedule.
      maxTokenAge: ACCESS_TOKEN_TTL_SECONDS,
      requiredClaims: ['sub', 'sid', 'tenant', 'jti', 'iat', 'exp', 'client_id'],
    }));
  } catch (error) {
    // Only jose's own errors describe the token; anything else is our bug and surfaces as such.
    throw toTokenError(error) ?? error;
  }
  return claimsOf(payload, options.audience);
}

/**
 * RFC 7515 §2: base64url without padding, line breaks or other characters; and RFC 4648 §3.5:
 * the unused bits of the last character are zero. jose does not check this: on Node 20 it
 * decodes with `atob`, which drops `=` padding, whitespace and the unused bits, so many strings
 * decode to one signature (`…Xk`, `…Xl`, `…Xk==` alike). A token must be exactly one string, or
 * anything keyed on it (a revocation or replay list, a log search, a cache) can be sidestepped
 * with a second spelling of the same token. Re-encoding the decoded bytes must give the input back.
 */
function isCanonicalBase64url(segment: string): boolean {
  return BASE64URL_ALPHABET.test(segment) && Buffer.from(segment, 'base64url').toString('base64url') === segment;
}
const BASE64URL_ALPHABET = /^[A-Za-z0-9_-]*$/;

const DEFAULT_MESSAGES: Record<TokenFailure, string> = {
  malformed: 'access token is malformed',
  'bad-signature': 'access token signature is invalid',
  'unknown-key': 'access token is signed with an unknown or retired key',
  expired: 'access token has expired',
  'wrong-audience': 'access token is meant for another audience',
  'wrong-issuer': 'access token comes from another issuer',
  'wrong-type': 'token is not an access token',
  'algorithm-not-allowed': 'access token uses an algorithm that is not allowed',
  'missing-claim': 'access token lacks a required claim',
};

function toTokenError(error: unknown): TokenError | undefined {
  if (error instanceof errors.JOSEAlgNotAllowed) return new TokenError('algorithm-not-allowed');
  if (error instanceof errors.JWSSignatureVerificationFailed) return new TokenError('bad-signature');
  if (error instanceof errors.JWTExpired) return new TokenError('expired');
  if (error instanceof errors.JWTClaimValidationFailed) {
    if (error.claim === 'typ') return new TokenError('wrong-type');
    if (error.reason === 'missing') return new TokenError('missing-claim', `access token lacks the "${error.claim}" claim`);
    if (error.claim === 'iss') return new TokenError('wrong-issuer');
    if (error.claim === 'aud') return new TokenError('wrong-audience');
    // A non-numeric iat/exp, an iat in the future, an nbf not yet reached: not a token we minted.
    return new TokenError('malformed', `access token has an invalid "${error.claim}" claim`);
  }
  if (error instanceof errors.JOSEError) return new TokenError('malformed');
  return undefined;
}

function claimsOf(payload: JWTPayload, audience: string): AccessTokenClaims {
  const { iss, sub, sid, role, scope, tenant, jti, iat, exp, client_id: clientId } = payload;
  const isText = (value: unknown): value is string => typeof value === 'string' && value !== '';
  if (!isText(iss) || !isText(sub) || !isText(sid) || !isText(jti) || !isText(clientId)) throw new TokenError('malformed', 'access token has a claim of the wrong type');
  // A person's token names a role, a machine's its scopes; never both, never neither.
  if ((role === undefined) === (scope === undefined)) throw new TokenError('missing-claim', 'access token must carry either "role" or "scope"');
  if (role !== undefined && !isRole(role)) throw new TokenError('malformed', 'access token names an unknown role');
  if (scope !== undefined && typeof scope !== 'string') throw new TokenError('malformed', 'access token has a scope of the wrong type');
  if (tenant !== null && !isText(tenant)) throw new TokenError('malformed', 'access token has a tenant of the wrong type');
  if (typeof iat !== 'number' || typeof exp !== 'number') throw new TokenError('malformed');
  // jose has already checked that `aud` contains the expected audience (it may be an array).
  return {
    iss,
    aud: audience,
    sub,
    sid,
    role: role === undefined ? null : (role as Role),
    scope: typeof scope === 'string' ? scope.split(' ').filter((item) => item !== '') : null,
    client_id: clientId,
    tenant,
    jti,
    iat,
    exp,
  };
}
