import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { sql } from 'drizzle-orm';
import { hashRefreshToken } from '../../src/identity/sessions/refresh-tokens.js';
import type { TokenPair } from '../../src/identity/sign-in/auth-steps.js';
import { queryRows } from '../../src/store/connection.js';
import { sessionIdOf } from '../helpers/token-claims.js';
import { assertProblem } from '../helpers/problems.js';
import { describeSessionsOfOneUser } from '../helpers/sessions-of-one-user.js';

/**
 * `POST /auth/refresh` through HTTP: rotation on every use, refusal of unknown tokens, and
 * the race of two refreshes with one token (RFC 9700 §4.14.2: at most one wins, and the
 * session ends because two holders exist). Reuse of an old token has its own regression file,
 * test/regressions/refresh-reuse-revokes-session.test.ts.
 */

await describeSessionsOfOneUser('refresh token rotation', (suite) => {
  const { newSession, refresh } = suite;
  const isLive = async (accessToken: string) => (await suite.listSessions(accessToken)).statusCode === 200;
  const tokenRows = (sessionId: string) =>
    queryRows<{ token_hash: string; used_at: Date | null }>(suite.h.db, sql`select token_hash, used_at from refresh_tokens where session_id = ${sessionId} order by created_at`);
  const sessionRow = async (sessionId: string) =>
    (await queryRows<{ revoked_at: Date | null; revoked_reason: string | null }>(suite.h.db, sql`select revoked_at, revoked_reason from sessions where id = ${sessionId}`))[0]!;

  test('rotation answers a new pair for the same session, and the old refresh token is then used', async () => {
    const session = await newSession();
    const response = await refresh(session.refreshToken);
    assert.equal(response.statusCode, 200, response.body);
    assert.equal(response.headers['cache-control'], 'no-store');
    const next = response.json() as TokenPair;
    assert.deepEqual(Object.keys(next).sort(), ['accessToken', 'expiresIn', 'refreshToken', 'tokenType']);
    assert.equal(next.tokenType, 'Bearer');
    assert.equal(next.expiresIn, 600);
    assert.notEqual(next.refreshToken, session.refreshToken);
    assert.notEqual(next.accessToken, session.accessToken);
    assert.equal(sessionIdOf(next.accessToken), session.sessionId, 'same session');
    assert.ok(await isLive(next.accessToken));

    const rows = await tokenRows(session.sessionId);
    assert.equal(rows.length, 2);
    const old = rows.find((row) => row.token_hash === hashRefreshToken(session.refreshToken))!;
    const successor = rows.find((row) => row.token_hash === hashRefreshToken(next.refreshToken))!;
    assert.notEqual(old.used_at, null, 'the presented token is spent');
    assert.equal(successor.used_at, null);

    // The chain keeps rotating.
    const third = await refresh(next.refreshToken);
    assert.equal(third.statusCode, 200, third.body);
    assert.ok(await isLive(third.json().accessToken));
  });

  test('a garbage or unknown refresh token → 401 invalid-refresh-token, and nothing changes', async () => {
    const session = await newSession();
    const rowsBefore = await tokenRows(session.sessionId);
    const candidates = [
      'garbage',
      `cgr_${randomBytes(32).toString('base64url')}`, // well-formed, never issued
      session.refreshToken.slice(0, -1) + (session.refreshToken.endsWith('A') ? 'B' : 'A'), // one character off
      `cgd_${randomBytes(32).toString('base64url')}`, // another kind of token
      session.refreshToken.toUpperCase(),
    ];
    for (const candidate of candidates) assertProblem(await refresh(candidate), 401, 'invalid-refresh-token');
    assert.deepEqual(await tokenRows(session.sessionId), rowsBefore, 'no token spent or issued');
    assert.equal((await sessionRow(session.sessionId)).revoked_at, null, 'a wrong guess does not end the session');
    assert.ok(await isLive(session.accessToken));
    // The real token still rotates.
    assert.equal((await refresh(session.refreshToken)).statusCode, 200);
  });

  test('a missing refresh token → 400; an oversized one → 400; nothing changes', async () => {
    const session = await newSession();
    const rowsBefore = await tokenRows(session.sessionId);
    assertProblem(await suite.h.request({ method: 'POST', url: '/api/v1/auth/refresh', body: {} }), 400, 'validation-failed');
    assertProblem(await refresh('x'.repeat(10_000)), 400, 'validation-failed');
    assertProblem(await suite.h.request({ method: 'POST', url: '/api/v1/auth/refresh', body: { refreshToken: session.refreshToken, extra: true } }), 400, 'validation-failed');
    assert.deepEqual(await tokenRows(session.sessionId), rowsBefore);
  });

  test('the refresh token of an ended session → 401 invalid-refresh-token, and no new token', async () => {
    const session = await newSession();
    const logout = await suite.h.request({ method: 'POST', url: '/api/v1/auth/logout', token: session.accessToken });
    assert.equal(logout.statusCode, 204);
    const rowsBefore = await tokenRows(session.sessionId);
    assertProblem(await refresh(session.refreshToken), 401, 'invalid-refresh-token');
    assert.deepEqual(await tokenRows(session.sessionId), rowsBefore);
  });

  test('two concurrent refreshes with one token: at most one succeeds, and the session is revoked', async () => {
    // A few rounds, so the requests really interleave at least once on either backend.
    for (let round = 0; round < 3; round += 1) {
      const session = await newSession();
      const answers = await Promise.all([refresh(session.refreshToken), refresh(session.refreshToken)]);
      const winners = answers.filter((answer) => answer.statusCode === 200);
      const losers = answers.filter((answer) => answer.statusCode !== 200);
      assert.ok(winners.length <= 1, `round ${round}: ${winners.length} refreshes succeeded with one token`);
      for (const loser of losers) assertProblem(loser, 401, 'refresh-token-reused');

      const row = await sessionRow(session.sessionId);
      assert.notEqual(row.revoked_at, null, `round ${round}: the session must end`);
      assert.equal(row.revoked_reason, 'refresh-reuse');
      assert.equal(await isLive(session.accessToken), false);
      for (const winner of winners) {
        const pair = winner.json() as TokenPair;
        assert.equal(await isLive(pair.accessToken), false, 'the winner’s new access token dies with the session');
        assertProblem(await refresh(pair.refreshToken), 401, 'invalid-refresh-token');
      }
      const audited = (await suite.h.auditActions()).filter((event) => event.action === 'auth.refresh-reuse' && event.actor_id === suite.user.id);
      assert.ok(audited.length >= round + 1, 'the race is audited as reuse');
    }
  });
});
