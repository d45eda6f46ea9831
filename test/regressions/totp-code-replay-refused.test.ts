import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { queryRows } from '../../src/store/connection.js';
import { auditMark, auditSince } from '../helpers/audit.js';
import { describeEachBackend } from '../helpers/database.js';
import { openIdentityHarness, type IdentityHarness } from '../helpers/identity.js';
import { totpCode } from '../helpers/totp-codes.js';
import { assertProblem } from '../helpers/problems.js';

// better-auth and Ory Kratos accept one TOTP code as often as it is presented within its 30 s
// window, so a code read over a shoulder or phished in real time signs a second client in.
// Ours accepts each step once per user: a code that finished one sign-in is refused on the
// next, even on a fresh challenge after a correct password.
await describeEachBackend('regression: a TOTP code is accepted once', (backend) => {
  let harness: IdentityHarness;

  before(async () => {
    harness = await openIdentityHarness(backend);
  });
  after(async () => {
    await harness.close();
  });

  test('the same code on a fresh challenge → 401 invalid-second-factor, no session, audited as replayed', async () => {
    const user = await harness.createUser({ role: 'employee' });
    const ip = '10.60.0.1';
    const challenge = async () => {
      const answer = await harness.request({ method: 'POST', url: '/api/v1/auth/login', body: { email: user.email, password: user.password }, remoteAddress: ip });
      assert.equal(answer.json().type, 'second-factor-required', answer.body);
      return answer.json().challengeToken as string;
    };
    const submit = (challengeToken: string, code: string) =>
      harness.request({ method: 'POST', url: '/api/v1/auth/second-factor', body: { challengeToken, method: 'totp', code }, remoteAddress: ip });
    const sessions = async () => (await queryRows<{ n: number }>(harness.db, sql`select count(*)::int as n from sessions where user_id = ${user.id}`))[0]!.n;

    const code = totpCode(user.totpSecret!, 0);
    assert.equal((await submit(await challenge(), code)).statusCode, 200);
    assert.equal(await sessions(), 1);

    const fresh = await challenge();
    const mark = await auditMark(harness);
    const replay = await submit(fresh, code);
    assertProblem(replay, 401, 'invalid-second-factor');
    assert.equal(await sessions(), 1);
    const events = await auditSince(harness, mark);
    assert.deepEqual(
      events.map((event) => [event.action, event.outcome, event.actor_id, event.details.reason]),
      [['auth.second-factor', 'failure', user.id, 'replayed']],
    );

    // The challenge itself is fine: the next step's code finishes the sign-in.
    assert.equal((await submit(fresh, totpCode(user.totpSecret!, 1))).statusCode, 200);
    assert.equal(await sessions(), 2);
  });
});
