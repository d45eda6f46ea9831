import type { FastifyReply, FastifyRequest } from 'fastify';
import type { SignedIn, TokenPair } from '../identity/sign-in/auth-steps.js';
import { CHALLENGE_TTL_MS } from '../identity/sign-in/challenges.js';
import { REFRESH_COOKIE } from '../http/guard.js';
import { clearCookies, deliver } from '../http/routes/auth-tokens.js';

/**
 * The console's cookies. The session itself is the API's browser mode (`__Host-cg_access` and
 * `__Host-cg_refresh`, set by the same `deliver` as `tokenDelivery: "cookie"`), so a console
 * session is one of identity's sessions: it is listed by GET /api/v1/auth/sessions, and revoking
 * it there ends it at the next request on every instance (the guard checks revocation).
 *
 * Every cookie is `__Host-`: Secure, Path=/, no Domain. `Secure` is set always, as `__Host-`
 * requires; browsers accept it over https and on loopback http, so "behind TLS" needs no
 * detection: over plain http on another host the browser refuses the cookie and nobody can sign
 * in, which is the safe failure (docs/console.md, "TLS").
 */

/** The second-factor step's challenge token, between the password page and the code page. */
export const CHALLENGE_COOKIE = '__Host-cg_challenge';
/** The trusted-device token a completed second factor hands out; sent on the next sign-in. */
export const DEVICE_COOKIE = '__Host-cg_device';

// Chromium caps cookie lifetimes at 400 days; a device a user has not signed in from for that
// long asks for the second factor again, which is what a forgotten device should do.
const DEVICE_COOKIE_SECONDS = 400 * 24 * 60 * 60;
const COOKIE = { path: '/', secure: true, httpOnly: true, sameSite: 'strict' as const };

export function startSession(reply: FastifyReply, signedIn: TokenPair & Partial<Pick<SignedIn, 'deviceToken'>>): void {
  deliver(reply, signedIn, 'cookie');
  if (signedIn.deviceToken) reply.setCookie(DEVICE_COOKIE, signedIn.deviceToken, { ...COOKIE, maxAge: DEVICE_COOKIE_SECONDS });
  reply.clearCookie(CHALLENGE_COOKIE, COOKIE);
}

export function endSession(reply: FastifyReply): void {
  clearCookies(reply);
  reply.clearCookie(CHALLENGE_COOKIE, COOKIE);
}

export function holdChallenge(reply: FastifyReply, challengeToken: string): void {
  reply.setCookie(CHALLENGE_COOKIE, challengeToken, { ...COOKIE, maxAge: Math.floor(CHALLENGE_TTL_MS / 1000) });
}

export function challengeOf(request: FastifyRequest): string | undefined {
  return request.cookies[CHALLENGE_COOKIE] || undefined;
}

export function deviceTokenOf(request: FastifyRequest): string | undefined {
  return request.cookies[DEVICE_COOKIE] || undefined;
}

export function refreshTokenOf(request: FastifyRequest): string | undefined {
  return request.cookies[REFRESH_COOKIE] || undefined;
}
