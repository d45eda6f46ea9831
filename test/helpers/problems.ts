import assert from 'node:assert/strict';
import type { LightMyRequestResponse } from 'fastify';

/**
 * Asserts an RFC 9457 answer: this status, `application/problem+json`, this `type`, and the
 * status repeated in the body. Returns the problem for checks of its other members.
 */
export function assertProblem(response: LightMyRequestResponse, status: number, type: string) {
  assert.equal(response.statusCode, status, response.body);
  assert.match(String(response.headers['content-type']), /^application\/problem\+json/);
  const problem = response.json();
  assert.equal(problem.type, type, response.body);
  assert.equal(problem.status, status);
  return problem;
}

/**
 * The guard's refusal of a credential: 401 `unauthenticated` with the Bearer challenge, and,
 * when the refused `token` is given, an answer that never echoes it.
 */
export function assertUnauthenticated(response: LightMyRequestResponse, token?: string): void {
  assert.equal(response.statusCode, 401, response.body);
  assert.match(String(response.headers['content-type']), /^application\/problem\+json/);
  assert.equal(response.json().type, 'unauthenticated');
  assert.match(String(response.headers['www-authenticate']), /^Bearer realm="ciphergate"$/);
  if (token) assert.ok(!response.body.includes(token), 'the answer never echoes the token');
}
