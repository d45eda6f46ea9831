import { Type } from '@sinclair/typebox';
import type { FastifyReply } from 'fastify';
import { PASSWORD_MAX_CODE_POINTS } from '../../identity/passwords/passwords.js';
import type { SignedIn, TokenPair } from '../../identity/sign-in/auth-steps.js';
import { ACCESS_TOKEN_TTL_SECONDS } from '../../identity/tokens/access-tokens.js';
import { ACCESS_COOKIE, REFRESH_COOKIE } from '../guard.js';
import { ProblemSchema } from '../schemas/problem.js';

/**
 * What the `/api/v1/auth/*` routes share (auth.ts, auth-factors.ts): the schemas of passwords,
 * opaque tokens and token pairs, and how a token pair is handed over.
 */

// Passwords are bounded in UTF-16 units well above the 128-code-point policy, so the policy
// (not the schema) says what is wrong with a long one, and argon2 never sees megabytes.
export const Password = Type.String({ minLength: 1, maxLength: PASSWORD_MAX_CODE_POINTS * 2 });
export const Email = Type.String({ format: 'email', maxLength: 254 });
export const Opaque = Type.String({ minLength: 1, maxLength: 256 });
export const TokenDelivery = Type.Optional(
  Type.Union([Type.Literal('body'), Type.Literal('cookie')], {
    description: '`cookie` (browser mode) sets httpOnly __Host- cookies instead of returning tokens in the body',
  }),
);

export const TokensSchema = Type.Object({
  accessToken: Type.Optional(Type.String()),
  refreshToken: Type.Optional(Type.String()),
  tokenType: Type.Literal('Bearer'),
  expiresIn: Type.Integer({ description: 'seconds until the access token expires' }),
  deviceToken: Type.Optional(Type.String({ description: 'send on later logins to skip the second factor on this device' })),
  recoveryCodes: Type.Optional(Type.Array(Type.String(), { description: 'shown once' })),
});

export const problems = { 400: ProblemSchema, 401: ProblemSchema, 403: ProblemSchema, 429: ProblemSchema };
export const tags = ['auth'];

/**
 * Tokens in the body (API clients) or in httpOnly cookies (browsers: script never sees
 * them, so an XSS cannot exfiltrate them). The device token stays in the body either way:
 * the client keeps it across sign-ins.
 */
export function deliver(reply: FastifyReply, tokens: TokenPair & Partial<Pick<SignedIn, 'deviceToken' | 'recoveryCodes'>>, mode: 'body' | 'cookie' | undefined) {
  reply.header('cache-control', 'no-store');
  const extras = { ...(tokens.deviceToken ? { deviceToken: tokens.deviceToken } : {}), ...(tokens.recoveryCodes ? { recoveryCodes: tokens.recoveryCodes } : {}) };
  if (mode !== 'cookie') {
    return { accessToken: tokens.accessToken, refreshToken: tokens.refreshToken, tokenType: tokens.tokenType, expiresIn: tokens.expiresIn, ...extras };
  }
  const cookie = { path: '/', secure: true, httpOnly: true, sameSite: 'strict' as const };
  reply.setCookie(ACCESS_COOKIE, tokens.accessToken, { ...cookie, maxAge: ACCESS_TOKEN_TTL_SECONDS });
  reply.setCookie(REFRESH_COOKIE, tokens.refreshToken, cookie);
  return { tokenType: tokens.tokenType, expiresIn: tokens.expiresIn, ...extras };
}

export function clearCookies(reply: FastifyReply): void {
  const cookie = { path: '/', secure: true, httpOnly: true, sameSite: 'strict' as const };
  reply.clearCookie(ACCESS_COOKIE, cookie);
  reply.clearCookie(REFRESH_COOKIE, cookie);
}
