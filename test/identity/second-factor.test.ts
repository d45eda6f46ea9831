import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { queryRows } from '../../src/store/connection.js';
import { auditMark, auditSince } from '../helpers/audit.js';
import { describeEachBackend } from '../helpers/database.js';
import { openIdentityHarness, USER_AGENT, type IdentityHarness, type TestUser } from '../helpers/identity.js';
import { freshAddresses } from '../helpers/addresses.js';
import { totpCode } from '../helpers/totp-codes.js';
import { assertProblem } from '../helpers/problems.js';

/**
 * `POST /auth/second-factor` over HTTP: the challenge token (five minutes, single use, bound
 * to the device that entered the password, burnt by five wrong codes), TOTP codes (±1 step,
 * each accepted once, also under concurrent submission), recovery codes (each once, in any
 * formatting), and the throttles on this endpoint.
 */

const LOGIN = '/api/v1/auth/login';
const SECOND_FACTOR = '/api/v1/auth/second-factor';
const CURL = 'curl/8.5.0';

await describeEachBackend('sign-in: second factor', (backend) => {
  let harness: IdentityHarness;
  // Each test uses addresses of its own, so the per-address budget and the account+address
  // lock of one test never reach another.
  const freshIp = freshAddresses('10.30');
  const challengeFor = async (user: TestUser, ip: string, userAgent = USER_AGENT): Promise<string> => {
    const answer = await harness.request({ method: 'POST', url: LOGIN, body: { email: user.email, password: user.password }, remoteAddress: ip, headers: { 'user-agent': userAgent } });
    assert.equal(answer.json().type, 'second-factor-required', answer.body);
    return answer.json().challengeToken;
  };
  const submit = (body: Record<string, unknown>, ip: string, userAgent = USER_AGENT) =>
    harness.request({ method: 'POST', url: SECOND_FACTOR, body, remoteAddress: ip, headers: { 'user-agent': userAgent } });
  const state = async (userId: string) => {
    const [row] = await queryRows<{ sessions: number; devices: number; step: number | null; unused_recovery: number }>(
      harness.db,
      sql`select
            (select count(*)::int from sessions where user_id = ${userId}) as sessions,
            (select count(*)::int from trusted_devices where user_id = ${userId}) as devices,
            (select last_used_step from totp_factors where user_id = ${userId} and confirmed_at is not null) as step,
            (select count(*)::int from recovery_codes where user_id = ${userId} and used_at is null) as unused_recovery`,
    );
    return { ...row!, step: row!.step === null ? null : Number(row!.step) };
  };
  /** A user whose recovery codes the test knows (the harness's createUser drops them). */
  const userWithRecoveryCodes = async (): Promise<TestUser & { recoveryCodes: string[] }> => {
    const user = await harness.createUser({ role: 'employee', withTotp: false });
    const enrollment = await harness.identity.parts.factors.startTotpEnrollment(user.id, user.email);
    const confirmed = await harness.identity.parts.factors.confirmTotp(user.id, totpCode(enrollment.secretBase32, -1), harness.db);
    assert.ok(confirmed.ok);
    return { ...user, totpSecret: enrollment.secretBase32, recoveryCodes: confirmed.recoveryCodes };
  };

  before(async () => {
    harness = await openIdentityHarness(backend);
  });
  after(async () => {
    await harness.close();
  });

  describe('challenge tokens', () => {
    test('the right code finishes the sign-in: tokens, a device token, a session, audited', async () => {
      const user = await harness.createUser({ role: 'employee' });
      const ip = freshIp();
      const challengeToken = await challengeFor(user, ip);
      const mark = await auditMark(harness);
      const answer = await submit({ challengeToken, method: 'totp', code: totpCode(user.totpSecret!) }, ip);
      assert.equal(answer.statusCode, 200, answer.body);
      assert.equal(answer.headers['cache-control'], 'no-store');
      const tokens = answer.json();
      assert.equal(typeof tokens.accessToken, 'string');
      assert.match(tokens.refreshToken, /^cgr_/);
      assert.match(tokens.deviceToken, /^cgd_/);
      assert.equal(tokens.tokenType, 'Bearer');
      const after = await state(user.id);
      assert.equal(after.sessions, 1);
      assert.equal(after.devices, 1);
      const events = await auditSince(harness, mark);
      assert.deepEqual(
        events.map((event) => [event.action, event.outcome, event.actor_id, event.details.method]),
        [['auth.second-factor', 'success', user.id, 'totp']],
      );
    });

    test('an expired challenge → 401 invalid-challenge even with the right code; the code is not spent', async () => {
      const user = await harness.createUser({ role: 'employee' });
      const ip = freshIp();
      const challengeToken = await challengeFor(user, ip);
      await harness.db.execute(sql`update login_challenges set expires_at = now() - interval '1 second' where user_id = ${user.id}`);
      const before = await state(user.id);
      const mark = await auditMark(harness);
      const answer = await submit({ challengeToken, method: 'totp', code: totpCode(user.totpSecret!) }, ip);
      assertProblem(answer, 401, 'invalid-challenge');
      assert.deepEqual(await state(user.id), before);
      assert.deepEqual(
        (await auditSince(harness, mark)).map((event) => [event.action, event.outcome, event.details.reason]),
        [['auth.second-factor', 'denied', 'invalid-challenge']],
      );
    });

    test('a challenge replayed after its success → 401 invalid-challenge, no second session', async () => {
      const user = await harness.createUser({ role: 'employee' });
      const ip = freshIp();
      const challengeToken = await challengeFor(user, ip);
      assert.equal((await submit({ challengeToken, method: 'totp', code: totpCode(user.totpSecret!, 0) }, ip)).statusCode, 200);
      const before = await state(user.id);
      const mark = await auditMark(harness);
      // A fresh, valid code: only the spent challenge stands in the way.
      const replay = await submit({ challengeToken, method: 'totp', code: totpCode(user.totpSecret!, 1) }, ip);
      assert.equal(replay.statusCode, 401);
      assert.equal(replay.json().type, 'invalid-challenge');
      assert.deepEqual(await state(user.id), before);
      assert.deepEqual(
        (await auditSince(harness, mark)).map((event) => [event.action, event.outcome, event.details.reason]),
        [['auth.second-factor', 'denied', 'invalid-challenge']],
      );
    });

    test('a challenge used from another device (User-Agent) → 401 invalid-challenge; the device that asked can still finish', async () => {
      const user = await harness.createUser({ role: 'employee' });
      const ip = freshIp();
      const challengeToken = await challengeFor(user, ip, USER_AGENT);
      const before = await state(user.id);
      const mark = await auditMark(harness);
      const foreign = await submit({ challengeToken, method: 'totp', code: totpCode(user.totpSecret!) }, freshIp(), CURL);
      assert.equal(foreign.statusCode, 401);
      assert.equal(foreign.json().type, 'invalid-challenge');
      const noAgent = await harness.request({ method: 'POST', url: SECOND_FACTOR, body: { challengeToken, method: 'totp', code: totpCode(user.totpSecret!) }, remoteAddress: ip, headers: { 'user-agent': '' } });
      assert.equal(noAgent.statusCode, 401);
      assert.equal(noAgent.json().type, 'invalid-challenge');
      assert.deepEqual(await state(user.id), before, 'no session, and the code was not spent');
      assert.deepEqual(
        (await auditSince(harness, mark)).map((event) => [event.action, event.outcome, event.details.reason]),
        [
          ['auth.second-factor', 'denied', 'invalid-challenge'],
          ['auth.second-factor', 'denied', 'invalid-challenge'],
        ],
      );
      assert.equal((await submit({ challengeToken, method: 'totp', code: totpCode(user.totpSecret!) }, ip, USER_AGENT)).statusCode, 200);
    });

    test('five wrong codes burn the challenge: the right code then gets 401 invalid-challenge', async () => {
      const user = await harness.createUser({ role: 'employee' });
      const ip = freshIp();
      const challengeToken = await challengeFor(user, ip);
      const before = await state(user.id);
      const mark = await auditMark(harness);
      const wrong = wrongCodes(user.totpSecret!, 5);
      for (const code of wrong) {
        const answer = await submit({ challengeToken, method: 'totp', code }, ip);
        assert.equal(answer.statusCode, 401);
        assert.equal(answer.json().type, 'invalid-second-factor');
      }
      const [challenge] = await queryRows<{ failed_attempts: number; used_at: Date | null }>(harness.db, sql`select failed_attempts, used_at from login_challenges where user_id = ${user.id}`);
      assert.equal(challenge!.failed_attempts, 5);
      const burnt = await submit({ challengeToken, method: 'totp', code: totpCode(user.totpSecret!) }, ip);
      assert.equal(burnt.statusCode, 401);
      assert.equal(burnt.json().type, 'invalid-challenge');
      assert.deepEqual(await state(user.id), before);
      const events = await auditSince(harness, mark);
      assert.deepEqual(
        events.map((event) => [event.action, event.outcome, event.details.reason ?? null]),
        [...wrong.map(() => ['auth.second-factor', 'failure', 'wrong-code']), ['auth.second-factor', 'denied', 'invalid-challenge']],
      );
      assert.ok(events.slice(0, 5).every((event) => event.actor_id === user.id));
    });

    test('garbage, oversized and mistyped challenge tokens get a 400/401 problem, never a 500, and change nothing', async () => {
      const user = await harness.createUser({ role: 'employee' });
      const ip = freshIp();
      const before = await state(user.id);
      const code = totpCode(user.totpSecret!);
      const cases: Array<[string, unknown, number, string]> = [
        ['no prefix', 'garbage', 401, 'invalid-challenge'],
        ['right shape, never issued', `cgc_${randomBytes(32).toString('base64url')}`, 401, 'invalid-challenge'],
        ['device-token prefix', `cgd_${randomBytes(32).toString('base64url')}`, 401, 'invalid-challenge'],
        ['SQL', "cgc_' or '1'='1' --", 401, 'invalid-challenge'],
        ['non-ASCII', `cgc_${'ü'.repeat(43)}`, 401, 'invalid-challenge'],
        ['NUL bytes', `cgc_${'\u0000'.repeat(43)}`, 400, 'validation-failed'], // no text field takes U+0000 (issue 13 item 8),
        ['oversized', `cgc_${'A'.repeat(300)}`, 400, 'validation-failed'],
        ['huge', 'A'.repeat(200_000), 400, 'validation-failed'],
        ['empty', '', 400, 'validation-failed'],
        // JSON bodies are validated as sent: a number is not a string (src/http/request-validation.ts).
        ['number', 12345, 400, 'validation-failed'],
        ['boolean', true, 400, 'validation-failed'],
        ['one-element array', ['garbage'], 400, 'validation-failed'],
        ['null', null, 400, 'validation-failed'],
        ['object', { $ne: null }, 400, 'validation-failed'],
      ];
      for (const [name, challengeToken, status, type] of cases) {
        const answer = await submit({ challengeToken, method: 'totp', code }, ip);
        assert.equal(answer.statusCode, status, `${name}: ${answer.body.slice(0, 200)}`);
        assert.match(String(answer.headers['content-type']), /^application\/problem\+json/, name);
        assert.equal(answer.json().type, type, name);
      }
      const missing = await submit({ method: 'totp', code }, ip);
      assert.equal(missing.statusCode, 400);
      assert.equal(missing.json().type, 'validation-failed');
      const malformed = await harness.request({ method: 'POST', url: SECOND_FACTOR, headers: { 'content-type': 'application/json' }, remoteAddress: ip });
      assert.ok([400, 415].includes(malformed.statusCode), malformed.body);
      assert.deepEqual(await state(user.id), before);
    });

    test('an unknown method or an oversized code is a 400 problem and spends nothing', async () => {
      const user = await harness.createUser({ role: 'employee' });
      const ip = freshIp();
      const challengeToken = await challengeFor(user, ip);
      const before = await state(user.id);
      for (const body of [
        { challengeToken, method: 'email', code: totpCode(user.totpSecret!) },
        { challengeToken, method: 'totp', code: '1'.repeat(33) },
        { challengeToken, method: 'totp', code: totpCode(user.totpSecret!), extra: true },
      ]) {
        const answer = await submit(body, ip);
        assert.equal(answer.statusCode, 400, JSON.stringify(body));
        assert.equal(answer.json().type, 'validation-failed');
      }
      const sms = await submit({ challengeToken, method: 'sms', code: '123456' }, ip);
      assert.equal(sms.statusCode, 400);
      assert.equal(sms.json().type, 'method-not-available');
      assert.deepEqual(await state(user.id), before);
      const [challenge] = await queryRows<{ failed_attempts: number }>(harness.db, sql`select failed_attempts from login_challenges where user_id = ${user.id}`);
      assert.equal(challenge!.failed_attempts, 0);
      assert.equal((await submit({ challengeToken, method: 'totp', code: totpCode(user.totpSecret!) }, ip)).statusCode, 200);
    });
  });

  describe('TOTP codes', () => {
    test('a code from three steps ago (or ahead) is refused; the window is ±1 step', async () => {
      const user = await harness.createUser({ role: 'employee' });
      const ip = freshIp();
      const challengeToken = await challengeFor(user, ip);
      const before = await state(user.id);
      const mark = await auditMark(harness);
      for (const offset of [-3, 3]) {
        const answer = await submit({ challengeToken, method: 'totp', code: totpCode(user.totpSecret!, offset) }, ip);
        assert.equal(answer.statusCode, 401, `offset ${offset}`);
        assert.equal(answer.json().type, 'invalid-second-factor');
      }
      assert.deepEqual(await state(user.id), before);
      assert.deepEqual(
        (await auditSince(harness, mark)).map((event) => [event.action, event.outcome, event.details.reason]),
        [
          ['auth.second-factor', 'failure', 'wrong-code'],
          ['auth.second-factor', 'failure', 'wrong-code'],
        ],
      );
      assert.equal((await submit({ challengeToken, method: 'totp', code: totpCode(user.totpSecret!, 1) }, ip)).statusCode, 200, 'a code inside the window passes');
    });

    test('one code submitted twice at once on one challenge: exactly one sign-in', async () => {
      const user = await harness.createUser({ role: 'employee' });
      const ip = freshIp();
      const challengeToken = await challengeFor(user, ip);
      const code = totpCode(user.totpSecret!);
      const answers = await Promise.all([submit({ challengeToken, method: 'totp', code }, ip), submit({ challengeToken, method: 'totp', code }, ip)]);
      const statuses = answers.map((answer) => answer.statusCode).sort();
      assert.deepEqual(statuses, [200, 401], answers.map((answer) => answer.body).join('\n'));
      const loser = answers.find((answer) => answer.statusCode === 401)!;
      assert.ok(['invalid-second-factor', 'invalid-challenge'].includes(loser.json().type), loser.body);
      const after = await state(user.id);
      assert.equal(after.sessions, 1);
      assert.equal(after.devices, 1);
    });

    test('one code submitted at once on two challenges (a phished code raced): exactly one sign-in', async () => {
      const user = await harness.createUser({ role: 'employee' });
      const ip = freshIp();
      const first = await challengeFor(user, ip);
      const second = await challengeFor(user, ip);
      const code = totpCode(user.totpSecret!);
      const mark = await auditMark(harness);
      const answers = await Promise.all([submit({ challengeToken: first, method: 'totp', code }, ip), submit({ challengeToken: second, method: 'totp', code }, ip)]);
      assert.deepEqual(answers.map((answer) => answer.statusCode).sort(), [200, 401], answers.map((answer) => answer.body).join('\n'));
      assert.equal(answers.find((answer) => answer.statusCode === 401)!.json().type, 'invalid-second-factor');
      assert.equal((await state(user.id)).sessions, 1);
      const events = await auditSince(harness, mark);
      assert.deepEqual(events.map((event) => `${event.outcome}:${event.details.reason ?? ''}`).sort(), ['failure:replayed', 'success:']);
    });
  });

  describe('recovery codes', () => {
    test('login offers recovery; a recovery code works once, then is refused on a fresh challenge', async () => {
      const user = await userWithRecoveryCodes();
      const ip = freshIp();
      const first = await harness.request({ method: 'POST', url: LOGIN, body: { email: user.email, password: user.password }, remoteAddress: ip });
      assert.deepEqual(first.json().methods, ['totp', 'recovery']);
      const [code] = user.recoveryCodes;
      const used = await submit({ challengeToken: first.json().challengeToken, method: 'recovery', code }, ip);
      assert.equal(used.statusCode, 200, used.body);
      assert.match(used.json().deviceToken, /^cgd_/);
      assert.equal((await state(user.id)).unused_recovery, 9);

      const before = await state(user.id);
      const mark = await auditMark(harness);
      const again = await submit({ challengeToken: await challengeFor(user, ip), method: 'recovery', code }, ip);
      assert.equal(again.statusCode, 401);
      assert.equal(again.json().type, 'invalid-second-factor');
      assert.deepEqual(await state(user.id), before);
      const events = (await auditSince(harness, mark)).filter((event) => event.action === 'auth.second-factor');
      assert.deepEqual(
        events.map((event) => [event.outcome, event.details.method, event.details.reason]),
        [['failure', 'recovery', 'wrong-or-used-code']],
      );
    });

    test('recovery codes survive formatting: upper case, no dash, spaces', async () => {
      const user = await userWithRecoveryCodes();
      const ip = freshIp();
      const variants = [user.recoveryCodes[1]!.toUpperCase(), user.recoveryCodes[2]!.replace('-', ''), ` ${user.recoveryCodes[3]!.toUpperCase().replace('-', ' ')} `];
      for (const [index, code] of variants.entries()) {
        const answer = await submit({ challengeToken: await challengeFor(user, ip), method: 'recovery', code }, ip);
        assert.equal(answer.statusCode, 200, `${JSON.stringify(code)}: ${answer.body}`);
        assert.equal((await state(user.id)).unused_recovery, 10 - index - 1);
      }
    });

    test('a TOTP code is no recovery code, and a recovery code no TOTP code', async () => {
      const user = await userWithRecoveryCodes();
      const ip = freshIp();
      const challengeToken = await challengeFor(user, ip);
      const before = await state(user.id);
      const asRecovery = await submit({ challengeToken, method: 'recovery', code: totpCode(user.totpSecret!) }, ip);
      assert.equal(asRecovery.statusCode, 401);
      assert.equal(asRecovery.json().type, 'invalid-second-factor');
      const asTotp = await submit({ challengeToken, method: 'totp', code: user.recoveryCodes[0] }, ip);
      assert.equal(asTotp.statusCode, 401);
      assert.equal(asTotp.json().type, 'invalid-second-factor');
      assert.deepEqual(await state(user.id), before);
    });
  });

  describe('throttling', () => {
    test('ten wrong codes lock the account from that address: 429 account-locked with Retry-After, even with the right code', async () => {
      const user = await harness.createUser({ role: 'employee' });
      const ip = freshIp();
      await harness.identity.throttleAudit.flush({ all: true }); // earlier tests' throttled entries
      const mark = await auditMark(harness);
      const wrong = wrongCodes(user.totpSecret!, 10);
      // Two challenges, since each burns after five wrong codes.
      for (const batch of [wrong.slice(0, 5), wrong.slice(5)]) {
        const challengeToken = await challengeFor(user, ip);
        for (const code of batch) assert.equal((await submit({ challengeToken, method: 'totp', code }, ip)).statusCode, 401);
      }
      const challengeToken = await challengeFor(user, ip);
      const before = await state(user.id);
      const locked = await submit({ challengeToken, method: 'totp', code: totpCode(user.totpSecret!) }, ip);
      assert.equal(locked.statusCode, 429);
      assert.equal(locked.json().type, 'account-locked');
      assert.ok(Number(locked.headers['retry-after']) > 0);
      assert.deepEqual(await state(user.id), before, 'no session, and the code was not spent');
      const events = await auditSince(harness, mark);
      assert.equal(events.filter((event) => event.action === 'auth.lockout').length, 1);
      await harness.identity.throttleAudit.flush({ all: true });
      const throttled = (await auditSince(harness, mark)).filter((event) => event.action === 'auth.throttled');
      assert.deepEqual(
        throttled.map((event) => [event.outcome, event.details.attempt, event.details.reason, event.details.count]),
        [['denied', 'auth.second-factor', 'account-locked', 1]],
      );
    });

    test('the 31st attempt within a minute from one address → 429 rate-limited with Retry-After', async () => {
      const user = await harness.createUser({ role: 'employee' });
      const ip = freshIp();
      const challengeToken = await challengeFor(user, ip);
      // The login above spent one attempt of the address's budget of 30.
      for (let attempt = 2; attempt <= 30; attempt++) {
        const answer = await submit({ challengeToken: `cgc_${randomBytes(32).toString('base64url')}`, method: 'totp', code: '000000' }, ip);
        assert.equal(answer.statusCode, 401, `attempt ${attempt}`);
      }
      await harness.identity.throttleAudit.flush({ all: true }); // earlier tests' throttled entries
      const mark = await auditMark(harness);
      const limited = await submit({ challengeToken, method: 'totp', code: totpCode(user.totpSecret!) }, ip);
      assert.equal(limited.statusCode, 429);
      assert.equal(limited.json().type, 'rate-limited');
      const retryAfter = Number(limited.headers['retry-after']);
      assert.ok(retryAfter > 0 && retryAfter <= 60, `Retry-After ${limited.headers['retry-after']}`);
      assert.equal((await state(user.id)).sessions, 0);
      await harness.identity.throttleAudit.flush({ all: true });
      assert.deepEqual(
        (await auditSince(harness, mark)).map((event) => [event.action, event.outcome, event.details.attempt, event.details.reason, event.details.count]),
        [['auth.throttled', 'denied', 'auth.second-factor', 'ip-limit', 1]],
      );
      assert.equal((await submit({ challengeToken, method: 'totp', code: totpCode(user.totpSecret!) }, freshIp())).statusCode, 200, 'another address is not limited');
    });
  });
});

/** `count` distinct six-digit codes, none valid for `secret` at any step of the accepted window. */
function wrongCodes(secret: string, count: number): string[] {
  const valid = new Set([-1, 0, 1, 2].map((offset) => totpCode(secret, offset)));
  const codes: string[] = [];
  for (let candidate = 100_000; codes.length < count; candidate += 1) {
    const code = String(candidate);
    if (!valid.has(code)) codes.push(code);
  }
  return codes;
}
