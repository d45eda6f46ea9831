import { IDENTITY_ERRORS } from '../identity/error-codes.js';
import type { RelayErrorCode } from '../relay/errors.js';
import type { Problem } from './problem-document.js';

/**
 * The one table of every code the API answers with a problem (RFC 9457): identity's refusals
 * (src/identity/error-codes.ts), the relay's (src/relay/errors.ts) and HTTP's own. Each code maps to its status, its title and
 * the problem `type` clients switch on (docs/http.md), which is the code unless given: several
 * codes share a type where one kind of refusal has different answers (a route that does not
 * exist is `not-found` like a user that does not, with its own title).
 *
 * Handlers throw `IdentityError` or `HttpProblem.of(code, …)`; the error handler answers both
 * through `problemOf`. Nothing else decides a status.
 */
const HTTP_PROBLEMS = {
  /** A correct password on a new device: answered as a problem carrying the challenge token and the offered `methods`. */
  'second-factor-required': { status: 401, title: 'Second factor required' },
  /** A correct password of a user with no factor yet: enroll one with the challenge token first. */
  'second-factor-enrollment-required': { status: 401, title: 'Second factor enrollment required' },
  'validation-failed': { status: 400, title: 'Invalid request' },
  'malformed-body': { status: 400, title: 'Malformed body' },
  /** Another 4xx raised by Fastify or a plugin; answered with that status. */
  'bad-request': { status: 400, title: 'Bad request' },
  'bad-url': { status: 400, title: 'Bad URL' },
  'csrf-token-invalid': { status: 403, title: 'CSRF token missing or invalid' },
  /** No route has this path. */
  'no-route': { status: 404, title: 'Not found', type: 'not-found' },
  'method-not-allowed': { status: 405, title: 'Method not allowed' },
  'provider-not-configured': { status: 409, title: 'Provider not configured' },
  'payload-too-large': { status: 413, title: 'Payload too large' },
  'url-too-long': { status: 414, title: 'URL too long' },
  'unsupported-media-type': { status: 415, title: 'Unsupported media type' },
  'idempotency-key-reused': { status: 422, title: 'Idempotency key reused' },
  /** The API's per-address or per-principal request budget (src/http/rate-limit.ts). */
  'rate-limited': { status: 429, title: 'Too many requests' },
  'internal-error': { status: 500, title: 'Internal error' },
  'service-unavailable': { status: 503, title: 'Service unavailable' },
} as const satisfies Record<string, ProblemSpec>;

/** The relay's error codes (src/relay/errors.ts). */
const RELAY_PROBLEMS = {
  'tenant-not-found': { status: 404, title: 'Not Found', type: 'not-found' },
  'conversation-not-found': { status: 404, title: 'Not Found', type: 'not-found' },
  'provider-not-configured': { status: 409, title: 'Provider not configured' },
  'invalid-phone': { status: 400, title: 'Invalid request', type: 'validation-failed' },
  'invalid-cursor': { status: 400, title: 'Invalid request', type: 'validation-failed' },
  'invalid-range': { status: 400, title: 'Invalid request', type: 'validation-failed' },
  'idempotency-key-reused': { status: 422, title: 'Idempotency key reused' },
} as const satisfies Record<RelayErrorCode, ProblemSpec>;

export const PROBLEM_CODES = { ...IDENTITY_ERRORS, ...RELAY_PROBLEMS, ...HTTP_PROBLEMS } as const satisfies Record<string, ProblemSpec>;

export type ProblemCode = keyof typeof PROBLEM_CODES;

export interface ProblemSpec {
  status: number;
  title: string;
  /** The problem type, when it is not the code. */
  type?: string;
}

/**
 * The `WWW-Authenticate` challenge a 401 of these codes carries (RFC 9110 §11.6.1): a bearer
 * credential for the API, HTTP Basic for the OAuth token endpoint (RFC 6749 §5.2).
 */
const CHALLENGES: Partial<Record<ProblemCode, string>> = {
  unauthenticated: 'Bearer realm="ciphergate"',
  'oauth-invalid-client': 'Basic realm="ciphergate"',
};

/** The problem body of `code`: the extension members first, then type, title, status and detail. */
export function problemOf(code: ProblemCode, detail: string, extensions: Record<string, unknown> = {}): Problem {
  const spec: ProblemSpec = PROBLEM_CODES[code];
  return { ...extensions, type: spec.type ?? code, title: spec.title, status: spec.status, detail };
}

/** The headers an answer of `code` carries: its authentication challenge, and Retry-After when the caller must wait. */
export function problemHeaders(code: ProblemCode, retryAfterSeconds?: number): Record<string, string> {
  const challenge = CHALLENGES[code];
  return { ...(challenge ? { 'www-authenticate': challenge } : {}), ...(retryAfterSeconds !== undefined ? { 'retry-after': String(retryAfterSeconds) } : {}) };
}
