import assert from 'node:assert/strict';
import { USER_AGENT } from './identity.js';
import { secretFromUri, totpCode } from './totp-codes.js';

/**
 * Sign-in against a real listening server (a child `ciphergate serve`), the way a console
 * would: over HTTP with fetch, not through `app.inject`.
 */

export interface JsonAnswer {
  status: number;
  // Problem documents and API bodies alike; tests read the members they expect.
  body: Record<string, any>;
}

/** One JSON request; `token` goes in the Authorization header as a bearer token. */
export async function callJson(baseUrl: string, method: string, path: string, body?: unknown, token?: string): Promise<JsonAnswer> {
  const response = await fetch(`${baseUrl}${path}`, {
    method,
    headers: { 'user-agent': USER_AGENT, ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...(token ? { authorization: `Bearer ${token}` } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await response.text();
  return { status: response.status, body: text ? (JSON.parse(text) as Record<string, any>) : {} };
}

/**
 * The first sign-in of a user made by `users create`: password, then TOTP enrollment and
 * confirmation. Returns the session's access token.
 */
export async function signInOverHttp(baseUrl: string, email: string, password: string): Promise<{ accessToken: string; deviceToken: string; recoveryCodes: string[] }> {
  const login = await callJson(baseUrl, 'POST', '/api/v1/auth/login', { email, password });
  assert.equal(login.status, 401, JSON.stringify(login.body));
  assert.equal(login.body.type, 'second-factor-enrollment-required');
  const enroll = await callJson(baseUrl, 'POST', '/api/v1/auth/totp/enroll', { challengeToken: login.body.challengeToken });
  assert.equal(enroll.status, 200, JSON.stringify(enroll.body));
  const secret = secretFromUri(enroll.body.otpauthUri as string);
  const confirm = await callJson(baseUrl, 'POST', '/api/v1/auth/totp/confirm', { challengeToken: login.body.challengeToken, code: totpCode(secret) });
  assert.equal(confirm.status, 200, JSON.stringify(confirm.body));
  return { accessToken: confirm.body.accessToken as string, deviceToken: confirm.body.deviceToken as string, recoveryCodes: confirm.body.recoveryCodes as string[] };
}
