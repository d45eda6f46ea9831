import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sql } from 'drizzle-orm';
import type { TokenPair } from '../../src/identity/sign-in/auth-steps.js';
import { queryRows } from '../../src/store/connection.js';
import { assertProblem } from '../helpers/problems.js';
import { describeSessionsOfOneUser } from '../helpers/sessions-of-one-user.js';

/**
 * Guards RFC 9700 §4.14.2 refresh-token reuse detection: presenting a refresh token that was
 * already exchanged proves a copy exists outside the client, so the whole session ends — the
 * newest refresh token and every access token of that session included, on the very next
 * request — and the event is audited. Ending only the presented token would leave a thief
 * who rotated first holding a live chain.
 */

await describeSessionsOfOneUser('regression: a reused refresh token revokes the whole session', (suite) => {
  const { newSession, refresh, listSessions: get } = suite;

  async function rotate(refreshToken: string): Promise<TokenPair> {
    const response = await refresh(refreshToken);
    assert.equal(response.statusCode, 200, response.body);
    return response.json() as TokenPair;
  }

  const tokenCount = async (sessionId: string) =>
    (await queryRows<{ count: number }>(suite.h.db, sql`select count(*)::int as count from refresh_tokens where session_id = ${sessionId}`))[0]!.count;

  test('reusing an old refresh token → 401 refresh-token-reused; the newest tokens stop working at once; audited', async () => {
    const first = await newSession();
    const sessionId = first.sessionId;
    const second = await rotate(first.refreshToken);
    const newest = await rotate(second.refreshToken);
    // The newest access token is in use, so the liveness cache holds the session as live.
    assert.equal((await get(newest.accessToken)).statusCode, 200);
    const tokensBefore = await tokenCount(sessionId);

    const reuse = await refresh(first.refreshToken);
    assertProblem(reuse, 401, 'refresh-token-reused');
    assert.equal(reuse.json().accessToken, undefined);
    assert.equal(await tokenCount(sessionId), tokensBefore, 'reuse issues nothing');

    for (const accessToken of [newest.accessToken, second.accessToken, first.accessToken]) {
      const refused = await get(accessToken);
      assert.equal(refused.statusCode, 401, refused.body);
      assert.equal(refused.json().type, 'unauthenticated');
    }
    const newestRefresh = await refresh(newest.refreshToken);
    assert.equal(newestRefresh.statusCode, 401, newestRefresh.body);
    assert.equal(newestRefresh.json().type, 'invalid-refresh-token');

    const [row] = await queryRows<{ revoked_reason: string | null }>(suite.h.db, sql`select revoked_reason from sessions where id = ${sessionId}`);
    assert.equal(row!.revoked_reason, 'refresh-reuse');
    const events = await queryRows<{ outcome: string; actor_id: string | null; target_type: string | null; target_id: string | null; details: Record<string, unknown> }>(
      suite.h.db,
      sql`select outcome, actor_id, target_type, target_id, details from audit_events where action = 'auth.refresh-reuse' and target_id = ${sessionId}`,
    );
    assert.equal(events.length, 1);
    assert.deepEqual(events[0], { outcome: 'denied', actor_id: suite.user.id, target_type: 'session', target_id: sessionId, details: { sessionRevoked: true } });
  });

  test('the reuse of the token just rotated (the thief rotated first) ends the session too', async () => {
    const stolen = await newSession();
    const thief = await rotate(stolen.refreshToken);
    const victim = await refresh(stolen.refreshToken);
    assert.equal(victim.statusCode, 401);
    assert.equal(victim.json().type, 'refresh-token-reused');
    assert.equal((await get(thief.accessToken)).statusCode, 401, 'the thief’s access token is refused');
    assert.equal((await refresh(thief.refreshToken)).json().type, 'invalid-refresh-token', 'and the thief’s refresh token');
  });

  test('only that session ends: the user’s other sessions stay live', async () => {
    const bystander = await newSession();
    const reused = await newSession();
    await rotate(reused.refreshToken);
    assert.equal((await refresh(reused.refreshToken)).statusCode, 401);
    assert.equal((await get(bystander.accessToken)).statusCode, 200);
    assert.equal((await rotate(bystander.refreshToken)).accessToken.length > 0, true);
  });
});
