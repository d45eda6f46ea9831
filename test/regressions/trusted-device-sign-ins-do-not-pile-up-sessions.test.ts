import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { SESSIONS_PER_DEVICE } from '../../src/identity/sessions/sessions.js';
import { queryRows } from '../../src/store/connection.js';
import { auditMark, auditSince } from '../helpers/audit.js';
import { describeEachBackend } from '../helpers/database.js';
import { openIdentityHarness, type IdentityHarness, type SignedSession } from '../helpers/identity.js';
import { assertUnauthenticated } from '../helpers/problems.js';

// Issue 15: every sign-in added a session. A script signing in with its device token on every
// run (and never signing out) piled up live sessions for as long as the device stayed trusted.
// A trusted device now keeps its SESSIONS_PER_DEVICE newest sessions; signing in through it
// again ends the oldest (audited), and the sessions of the user's other devices are untouched.
await describeEachBackend('regression: trusted-device sign-ins keep a bounded number of sessions', (backend) => {
  let h: IdentityHarness;
  before(async () => {
    h = await openIdentityHarness(backend);
  });
  after(() => h?.close());

  const isLive = async (session: SignedSession) => (await h.request({ method: 'GET', url: '/api/v1/auth/sessions', token: session.accessToken })).statusCode === 200;

  test('sign-ins through one device beyond the bound end its oldest sessions; another device keeps its own', async () => {
    const user = await h.createUser({ role: 'employee' });
    const laptop = await h.signIn(user, { remoteAddress: '10.65.0.1' });
    const phone = await h.signIn(user, { remoteAddress: '10.65.0.2' });
    const mark = await auditMark(h);

    const onLaptop: SignedSession[] = [laptop];
    for (let run = 0; run < SESSIONS_PER_DEVICE + 3; run += 1) onLaptop.push(await h.signInOnDevice(user, laptop.deviceToken, { ip: `10.65.1.${run + 1}` }));

    const kept = onLaptop.slice(-SESSIONS_PER_DEVICE);
    const ended = onLaptop.slice(0, -SESSIONS_PER_DEVICE);
    for (const session of kept) assert.ok(await isLive(session), 'the newest sessions of the device stay');
    for (const session of ended) assertUnauthenticated(await h.request({ method: 'GET', url: '/api/v1/auth/sessions', token: session.accessToken }));
    for (const session of ended) {
      const refresh = await h.request({ method: 'POST', url: '/api/v1/auth/refresh', body: { refreshToken: session.refreshToken } });
      assert.equal(refresh.statusCode, 401, refresh.body);
    }
    assert.ok(await isLive(phone), "the other device's session survives");

    const live = await queryRows<{ id: string; revoked_reason: string | null }>(
      h.db,
      sql`select id, revoked_reason from sessions where user_id = ${user.id} order by created_at`,
    );
    assert.equal(live.filter((row) => row.revoked_reason === null).length, SESSIONS_PER_DEVICE + 1, 'the bound plus the other device');
    assert.deepEqual(
      live.filter((row) => row.revoked_reason !== null).map((row) => row.revoked_reason),
      ended.map(() => 'device-session-limit'),
    );

    const revokes = (await auditSince(h, mark)).filter((event) => event.action === 'auth.session.revoke');
    assert.equal(revokes.length, ended.length, 'one audit event per sign-in that ended a session');
    for (const event of revokes) {
      assert.deepEqual({ outcome: event.outcome, actor: event.actor_id, details: event.details }, { outcome: 'success', actor: user.id, details: { reason: 'device-session-limit', count: 1 } });
    }
  });
});
