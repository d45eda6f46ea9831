import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { queryRows } from '../../src/store/connection.js';
import { auditMark, auditSince } from '../helpers/audit.js';
import { describeEachBackend } from '../helpers/database.js';
import { USER_AGENT, openIdentityHarness, type IdentityHarness, type TestUser } from '../helpers/identity.js';
import { freshAddresses } from '../helpers/addresses.js';
import { secretFromUri, totpCode } from '../helpers/totp-codes.js';
import { assertProblem } from '../helpers/problems.js';

/**
 * Guards issue #13 item 6. Someone who knows a new user's password signs in before the user
 * does and keeps the `second-factor-enrollment-required` challenge. The user then signs in and
 * enrolls TOTP. Within the challenge's five minutes, the old challenge used to enroll a second
 * authenticator over the user's: their TOTP and recovery codes were replaced by the attacker's
 * and the attacker got a session, while the user's own session lived on, unaware.
 *
 * Enrolling a factor now ends every open challenge of the user, and an enrollment challenge is
 * good only while the user has no factor; the stale one is refused at both steps and changes
 * nothing.
 */

const LOGIN = '/api/v1/auth/login';
const ENROLL = '/api/v1/auth/totp/enroll';
const CONFIRM = '/api/v1/auth/totp/confirm';
const ATTACKER_AGENT = 'curl/8.5.0';

await describeEachBackend('regression: a stale enrollment challenge cannot replace an enrolled factor', (backend) => {
  let h: IdentityHarness;
  const freshIp = freshAddresses('10.61');

  before(async () => {
    h = await openIdentityHarness(backend);
  });
  after(() => h?.close());

  const post = (url: string, body: Record<string, unknown>, from: { ip: string; userAgent: string }) =>
    h.request({ method: 'POST', url, body, remoteAddress: from.ip, headers: { 'user-agent': from.userAgent } });

  async function enrollmentChallenge(user: TestUser, from: { ip: string; userAgent: string }): Promise<string> {
    const login = await post(LOGIN, { email: user.email, password: user.password }, from);
    return assertProblem(login, 401, 'second-factor-enrollment-required').challengeToken as string;
  }

  /** Everything the attack used to replace or add, read straight from the tables. */
  async function factorState(userId: string) {
    const [row] = await queryRows<{ factors: string; recovery: string; live_sessions: number; open_challenges: number }>(
      h.db,
      sql`select
            (select coalesce(string_agg(id::text || ':' || encode(secret, 'hex') || ':' || (confirmed_at is not null)::text, ',' order by id), '') from totp_factors where user_id = ${userId}) as factors,
            (select coalesce(string_agg(code_hash || ':' || (used_at is not null)::text, ',' order by code_hash), '') from recovery_codes where user_id = ${userId}) as recovery,
            (select count(*)::int from sessions where user_id = ${userId} and revoked_at is null) as live_sessions,
            (select count(*)::int from login_challenges where user_id = ${userId} and used_at is null) as open_challenges`,
    );
    return row!;
  }

  test('after the user enrolls, the challenge kept from before can neither start nor confirm an enrollment; factor, codes and session stay', async () => {
    const user = await h.createUser({ role: 'employee', withTotp: false });
    const attacker = { ip: freshIp(), userAgent: ATTACKER_AGENT };
    const victim = { ip: freshIp(), userAgent: USER_AGENT };

    // The attacker signs in first with the known password and keeps the challenge; a second
    // one, from another device, is never even used before the user enrolls.
    const stale = await enrollmentChallenge(user, attacker);
    const unused = await enrollmentChallenge(user, { ip: freshIp(), userAgent: 'Wget/1.21.4' });

    // The real user signs in and enrolls.
    const own = await enrollmentChallenge(user, victim);
    const started = await post(ENROLL, { challengeToken: own }, victim);
    assert.equal(started.statusCode, 200, started.body);
    const userSecret = secretFromUri(started.json().otpauthUri);
    const confirmed = await post(CONFIRM, { challengeToken: own, code: totpCode(userSecret) }, victim);
    assert.equal(confirmed.statusCode, 200, confirmed.body);
    const userSession = confirmed.json() as { accessToken: string; recoveryCodes: string[] };
    assert.equal(userSession.recoveryCodes.length, 10);

    const before = await factorState(user.id);
    assert.equal(before.live_sessions, 1);
    assert.equal(before.open_challenges, 0, 'enrolling ended every open challenge of the user');
    const mark = await auditMark(h);

    // The stale challenge, within its five minutes, from the device it was issued to.
    assertProblem(await post(ENROLL, { challengeToken: stale }, attacker), 401, 'invalid-challenge');
    const attackerSecret = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';
    assertProblem(await post(CONFIRM, { challengeToken: stale, code: totpCode(attackerSecret) }, attacker), 401, 'invalid-challenge');
    // The one never used is dead too, and so is the user's own, spent one.
    assertProblem(await post(ENROLL, { challengeToken: unused }, { ip: freshIp(), userAgent: 'Wget/1.21.4' }), 401, 'invalid-challenge');
    assertProblem(await post(ENROLL, { challengeToken: own }, victim), 401, 'invalid-challenge');

    assert.deepEqual(await factorState(user.id), before, 'no factor, recovery code, session or challenge changed');
    assert.deepEqual(
      (await auditSince(h, mark)).map((event) => [event.action, event.outcome, event.details.reason]),
      [
        ['auth.totp.enroll', 'denied', 'invalid-challenge'],
        ['auth.totp.enroll', 'denied', 'invalid-challenge'],
        ['auth.totp.enroll', 'denied', 'invalid-challenge'],
        ['auth.totp.enroll', 'denied', 'invalid-challenge'],
      ],
    );

    // The user's session and authenticator still work.
    assert.equal((await h.request({ method: 'GET', url: '/api/v1/auth/sessions', token: userSession.accessToken })).statusCode, 200);
    const again = await post(LOGIN, { email: user.email, password: user.password }, victim);
    const challengeToken = assertProblem(again, 401, 'second-factor-required').challengeToken as string;
    const second = await post('/api/v1/auth/second-factor', { challengeToken, method: 'totp', code: totpCode(userSecret, 1) }, victim);
    assert.equal(second.statusCode, 200, second.body);
  });

  test('an enrollment the attacker started before the user enrolled cannot be confirmed afterwards', async () => {
    const user = await h.createUser({ role: 'employee', withTotp: false });
    const attacker = { ip: freshIp(), userAgent: ATTACKER_AGENT };
    const victim = { ip: freshIp(), userAgent: USER_AGENT };

    const stale = await enrollmentChallenge(user, attacker);
    const attackerStart = await post(ENROLL, { challengeToken: stale }, attacker);
    assert.equal(attackerStart.statusCode, 200, 'before any factor exists the challenge is good');
    const attackerSecret = secretFromUri(attackerStart.json().otpauthUri);

    const own = await enrollmentChallenge(user, victim);
    const started = await post(ENROLL, { challengeToken: own }, victim);
    const userSecret = secretFromUri(started.json().otpauthUri);
    assert.equal((await post(CONFIRM, { challengeToken: own, code: totpCode(userSecret) }, victim)).statusCode, 200);
    const before = await factorState(user.id);

    assertProblem(await post(CONFIRM, { challengeToken: stale, code: totpCode(attackerSecret) }, attacker), 401, 'invalid-challenge');
    assertProblem(await post(ENROLL, { challengeToken: stale }, attacker), 401, 'invalid-challenge');
    assert.deepEqual(await factorState(user.id), before);
  });

  test('a signed-in replacement of the factor ends the open challenges too', async () => {
    const user = await h.createUser({ role: 'employee' });
    const signed = await h.signIn(user);
    // A second-factor challenge opened with the password before the replacement.
    const pending = await post(LOGIN, { email: user.email, password: user.password }, { ip: freshIp(), userAgent: ATTACKER_AGENT });
    const oldChallenge = assertProblem(pending, 401, 'second-factor-required').challengeToken as string;

    const enroll = await h.request({
      method: 'POST',
      url: ENROLL,
      token: signed.accessToken,
      body: { currentPassword: user.password, currentFactor: { method: 'totp', code: totpCode(user.totpSecret!, 1) } },
    });
    assert.equal(enroll.statusCode, 200, enroll.body);
    const newSecret = secretFromUri(enroll.json().otpauthUri);
    const confirm = await h.request({ method: 'POST', url: CONFIRM, token: signed.accessToken, body: { code: totpCode(newSecret) } });
    assert.equal(confirm.statusCode, 200, confirm.body);

    // Even with a code of the new authenticator, the challenge from before the change is dead.
    const late = await post('/api/v1/auth/second-factor', { challengeToken: oldChallenge, method: 'totp', code: totpCode(newSecret, 1) }, { ip: freshIp(), userAgent: ATTACKER_AGENT });
    assertProblem(late, 401, 'invalid-challenge');
  });
});
