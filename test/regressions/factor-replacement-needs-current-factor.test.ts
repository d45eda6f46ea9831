import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { queryRows } from '../../src/store/connection.js';
import { auditMark, auditSince } from '../helpers/audit.js';
import { describeEachBackend } from '../helpers/database.js';
import { openIdentityHarness, type IdentityHarness, type SignedSession, type TestUser } from '../helpers/identity.js';
import { freshAddresses } from '../helpers/addresses.js';
import { secretFromUri, totpCode } from '../helpers/totp-codes.js';
import { assertProblem, assertUnauthenticated } from '../helpers/problems.js';

/**
 * Guards issue #13 item 6, second half: replacing an enrolled authenticator needs the factor
 * being replaced. Before, a signed-in caller who also knew the password (a stolen session plus
 * a phished or reused password) could swap the authenticator for one of their own, which
 * destroyed the user's TOTP and recovery codes and ended the user's other sessions. Now the
 * start of a replacement needs a code of the current authenticator or an unused recovery code
 * as well; a missing, wrong, replayed or spent one changes nothing.
 */

const ENROLL = '/api/v1/auth/totp/enroll';
const CONFIRM = '/api/v1/auth/totp/confirm';

await describeEachBackend('regression: replacing a second factor needs the current one', (backend) => {
  let h: IdentityHarness;
  const freshIp = freshAddresses('10.62');

  before(async () => {
    h = await openIdentityHarness(backend);
  });
  after(() => h?.close());

  const enroll = (session: SignedSession, body: Record<string, unknown>, ip = freshIp()) => h.request({ method: 'POST', url: ENROLL, token: session.accessToken, body, remoteAddress: ip });

  async function factorState(userId: string) {
    const [row] = await queryRows<{ factors: string; recovery: string; live_sessions: number }>(
      h.db,
      sql`select
            (select coalesce(string_agg(id::text || ':' || (confirmed_at is not null)::text, ',' order by id), '') from totp_factors where user_id = ${userId}) as factors,
            (select coalesce(string_agg(code_hash || ':' || (used_at is not null)::text, ',' order by code_hash), '') from recovery_codes where user_id = ${userId}) as recovery,
            (select count(*)::int from sessions where user_id = ${userId} and revoked_at is null) as live_sessions`,
    );
    return row!;
  }

  async function factorConfirmationFailures(): Promise<number> {
    const { values } = await h.identity.metrics.failures.get();
    return values.filter((value) => value.labels.stage === 'factor-confirmation').reduce((sum, value) => sum + value.value, 0);
  }

  /** A user whose recovery codes the test knows (the harness's createUser drops them), signed in on two devices. */
  async function userOnTwoDevices(): Promise<{ user: TestUser; recoveryCodes: string[]; caller: SignedSession; other: SignedSession }> {
    const created = await h.createUser({ role: 'employee', withTotp: false });
    const enrollment = await h.identity.parts.factors.startTotpEnrollment(created.id, created.email);
    const confirmed = await h.identity.parts.factors.confirmTotp(created.id, totpCode(enrollment.secretBase32, -1), h.db);
    assert.ok(confirmed.ok);
    const user = { ...created, totpSecret: enrollment.secretBase32 };
    const caller = await h.signIn(user);
    const other = await h.signInOnDevice(user, caller.deviceToken, { ip: freshIp() });
    return { user, recoveryCodes: confirmed.recoveryCodes, caller, other };
  }

  test('the password alone no longer starts a replacement: 400 naming currentFactor (oversized or mistyped ones 400 too), nothing created', async () => {
    const { user, caller, other } = await userOnTwoDevices();
    const before = await factorState(user.id);
    const answer = await enroll(caller, { currentPassword: user.password });
    const problem = assertProblem(answer, 400, 'validation-failed');
    assert.match(problem.detail, /currentFactor/);
    // Oversized or mistyped proofs are schema errors, and change nothing either.
    for (const currentFactor of [{ method: 'totp', code: '1'.repeat(33) }, { method: 'sms', code: '123456' }, { method: 'totp' }, 'totp:123456']) {
      assertProblem(await enroll(caller, { currentPassword: user.password, currentFactor }), 400, 'validation-failed');
    }
    assert.deepEqual(await factorState(user.id), before, 'no pending authenticator was created');
    assert.equal(before.live_sessions, 2);
    // Without a pending authenticator, confirming has nothing to confirm.
    assertProblem(await h.request({ method: 'POST', url: CONFIRM, token: caller.accessToken, body: { code: totpCode(user.totpSecret!, 1) } }), 400, 'invalid-second-factor');
    assert.equal((await h.request({ method: 'GET', url: '/api/v1/auth/sessions', token: other.accessToken })).statusCode, 200);
  });

  test('a wrong, replayed, malformed or spent code of the current factor → 403 invalid-second-factor; nothing changes; audited and counted', async () => {
    const { user, recoveryCodes, caller } = await userOnTwoDevices();
    const spent = recoveryCodes[0]!;
    assert.equal(await h.identity.parts.factors.redeemRecoveryCode(user.id, spent), true);
    const before = await factorState(user.id);
    const mark = await auditMark(h);
    const countedBefore = await factorConfirmationFailures();
    const right = totpCode(user.totpSecret!, 1);
    const wrong = String((Number(right) + 1) % 1_000_000).padStart(6, '0');
    const attempts = [
      { method: 'totp', code: wrong },
      // The code this sign-in used (step 0): the replay guard refuses it.
      { method: 'totp', code: totpCode(user.totpSecret!, 0) },
      { method: 'totp', code: 'abcdef' },
      { method: 'recovery', code: spent },
      { method: 'recovery', code: 'zzzzz-zzzzz' },
      // A TOTP code is no recovery code.
      { method: 'recovery', code: right },
    ];
    for (const currentFactor of attempts) {
      const answer = await enroll(caller, { currentPassword: user.password, currentFactor });
      assertProblem(answer, 403, 'invalid-second-factor');
      assert.ok(!answer.body.includes(currentFactor.code), 'the code is not echoed');
    }
    assert.deepEqual(await factorState(user.id), before);
    const events = await auditSince(h, mark);
    assert.deepEqual(
      events.map((event) => [event.action, event.outcome, event.details.method, event.details.reason]),
      [
        ['auth.totp.enroll', 'failure', 'totp', 'wrong-code'],
        ['auth.totp.enroll', 'failure', 'totp', 'replayed'],
        ['auth.totp.enroll', 'failure', 'totp', 'malformed'],
        ['auth.totp.enroll', 'failure', 'recovery', 'wrong-or-used-code'],
        ['auth.totp.enroll', 'failure', 'recovery', 'wrong-or-used-code'],
        ['auth.totp.enroll', 'failure', 'recovery', 'wrong-or-used-code'],
      ],
    );
    assert.ok(!JSON.stringify(events).includes(right), 'no code in the audit trail');
    assert.equal((await factorConfirmationFailures()) - countedBefore, attempts.length, 'ciphergate_login_failures_total{stage="factor-confirmation"}');
    // The right code still works afterwards: the failures spent nothing.
    assert.equal((await enroll(caller, { currentPassword: user.password, currentFactor: { method: 'totp', code: right } })).statusCode, 200);
  });

  test('a wrong password is refused before the code is looked at, so the code is not spent', async () => {
    const { user, caller } = await userOnTwoDevices();
    const code = totpCode(user.totpSecret!, 1);
    assertProblem(await enroll(caller, { currentPassword: 'not the password at all', currentFactor: { method: 'totp', code } }), 403, 'invalid-credentials');
    assert.equal((await enroll(caller, { currentPassword: user.password, currentFactor: { method: 'totp', code } })).statusCode, 200, 'the same code is still fresh');
  });

  test('with a code of the current authenticator the replacement works and ends the other sessions', async () => {
    const { user, caller, other } = await userOnTwoDevices();
    const started = await enroll(caller, { currentPassword: user.password, currentFactor: { method: 'totp', code: totpCode(user.totpSecret!, 1) } });
    assert.equal(started.statusCode, 200, started.body);
    const secret = secretFromUri(started.json().otpauthUri);
    const confirmed = await h.request({ method: 'POST', url: CONFIRM, token: caller.accessToken, body: { code: totpCode(secret) } });
    assert.equal(confirmed.statusCode, 200, confirmed.body);
    assertUnauthenticated(await h.request({ method: 'GET', url: '/api/v1/auth/sessions', token: other.accessToken }));
    assert.equal((await h.request({ method: 'GET', url: '/api/v1/auth/sessions', token: caller.accessToken })).statusCode, 200);
    assert.equal((await factorState(user.id)).live_sessions, 1);
  });

  test('someone whose authenticator is lost replaces it with a recovery code, which is then spent', async () => {
    const { user, recoveryCodes, caller } = await userOnTwoDevices();
    const code = recoveryCodes[3]!;
    const started = await enroll(caller, { currentPassword: user.password, currentFactor: { method: 'recovery', code } });
    assert.equal(started.statusCode, 200, started.body);
    assertProblem(await enroll(caller, { currentPassword: user.password, currentFactor: { method: 'recovery', code } }), 403, 'invalid-second-factor');
    // The refused second start left the first one's pending authenticator in place.
    const secret = secretFromUri(started.json().otpauthUri);
    const confirmed = await h.request({ method: 'POST', url: CONFIRM, token: caller.accessToken, body: { code: totpCode(secret) } });
    assert.equal(confirmed.statusCode, 200, confirmed.body);
    assert.equal(confirmed.json().recoveryCodes.length, 10, 'fresh recovery codes replace the old ones');
    assert.ok(!(confirmed.json().recoveryCodes as string[]).includes(code));
  });
});
