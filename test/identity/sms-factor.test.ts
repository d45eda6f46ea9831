import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { SmsFactor } from '../../src/identity/factors/sms/sms-factor.js';
import { TenantSmsSender } from '../../src/runtime/tenant-sms-sender.js';
import { SmsSendThrottle } from '../../src/identity/limits/throttle.js';
import { SYSTEM_SCOPE } from '../../src/seal/sealed-fields.js';
import { queryRows } from '../../src/store/connection.js';
import { smsFactorsSealed } from '../../src/store/sealed-tables.js';
import { DEFAULT_TWILIO_ACCOUNT, type TwilioFake } from '../fakes/twilio.js';
import { auditMark, auditSince } from '../helpers/audit.js';
import { describeEachBackend } from '../helpers/database.js';
import { USER_AGENT, type IdentityHarness, type TestUser } from '../helpers/identity.js';
import { freshAddresses } from '../helpers/addresses.js';
import { assertProblem } from '../helpers/problems.js';
import { randomPhone, TENANT_FROM_NUMBER } from '../helpers/relay.js';
import { openSmsHarness, type SmsHarness } from '../helpers/sms-sender.js';

/**
 * SMS as a second factor over HTTP: enrolling and confirming a phone, sign-in codes texted
 * through the sender tenant's Twilio account (the Twilio fake, whose `messages` are the
 * phone's inbox), and the abuse cases: wrong, expired, reused, exhausted and foreign codes,
 * resend limits, a Twilio outage, and where the phone number and codes must never appear.
 */

const LOGIN = '/api/v1/auth/login';
const SECOND_FACTOR = '/api/v1/auth/second-factor';
const SEND_SMS = '/api/v1/auth/second-factor/sms';
const PHONE = '/api/v1/auth/phone';
const VERIFY_PHONE = '/api/v1/auth/phone/verify';
const SIGN_IN_TEXT = /^Your Ciphergate sign-in code is (\d{6})\. It expires in 10 minutes\.$/;
const VERIFY_TEXT = /^Your Ciphergate verification code is (\d{6})\. It expires in 10 minutes\.$/;

await describeEachBackend('identity: SMS second factor', (backend) => {
  let harness: IdentityHarness;
  let twilio: TwilioFake;
  const freshIp = freshAddresses('10.60');
  /** Every phone number and code this suite handled, for the leak checks at the end. */
  const phonesUsed: string[] = [];
  const codesSeen: string[] = [];

  const post = (url: string, body: unknown, options: { ip?: string; token?: string } = {}) =>
    harness.request({ method: 'POST', url, body, remoteAddress: options.ip ?? freshIp(), ...(options.token ? { token: options.token } : {}), headers: { 'user-agent': USER_AGENT } });

  /** The code in the newest text to `phone`, checked against the expected wording. */
  const lastCode = (phone: string, wording: RegExp): string => {
    const texts = twilio.messages.filter((message) => message.to === phone);
    assert.ok(texts.length > 0, 'a text reached the phone');
    const text = texts.at(-1)!;
    assert.equal(text.from, TENANT_FROM_NUMBER);
    assert.equal(text.accountSid, DEFAULT_TWILIO_ACCOUNT.accountSid);
    const match = wording.exec(text.body);
    assert.ok(match, `unexpected text ${JSON.stringify(text.body)}`);
    codesSeen.push(match[1]!);
    return match[1]!;
  };
  const textsTo = (phone: string) => twilio.messages.filter((message) => message.to === phone).length;

  /** A signed-in user (password + TOTP) with an access token for the phone routes. */
  const signedInUser = async () => {
    const user = await harness.createUser({ role: 'employee' });
    const session = await harness.signIn(user);
    return { user, accessToken: session.accessToken };
  };

  /** A user whose phone is verified through the API. */
  const userWithPhone = async (): Promise<{ user: TestUser; phone: string; accessToken: string }> => {
    const { user, accessToken } = await signedInUser();
    const phone = randomPhone();
    phonesUsed.push(phone);
    const started = await post(PHONE, { phone, currentPassword: user.password }, { token: accessToken });
    assert.equal(started.statusCode, 204, started.body);
    const confirmed = await post(VERIFY_PHONE, { code: lastCode(phone, VERIFY_TEXT) }, { token: accessToken });
    assert.equal(confirmed.statusCode, 204, confirmed.body);
    return { user, phone, accessToken };
  };

  const login = async (user: TestUser, ip: string, deviceToken?: string) => post(LOGIN, { email: user.email, password: user.password, ...(deviceToken ? { deviceToken } : {}) }, { ip });
  const challengeFor = async (user: TestUser, ip: string): Promise<{ challengeToken: string; methods: string[] }> => {
    const answer = await login(user, ip);
    assert.equal(answer.json().type, 'second-factor-required', answer.body);
    return { challengeToken: answer.json().challengeToken, methods: answer.json().methods };
  };
  const sendCode = (challengeToken: string, ip: string) => post(SEND_SMS, { challengeToken }, { ip });
  const submit = (challengeToken: string, code: string, ip: string) => post(SECOND_FACTOR, { challengeToken, method: 'sms', code }, { ip });
  const codeRows = (userId: string) =>
    queryRows<{ purpose: string; failed_attempts: number; used_at: Date | null; code_hash: string }>(
      harness.db,
      sql`select purpose, failed_attempts, used_at, code_hash from sms_codes where user_id = ${userId} order by created_at`,
    );
  const phoneVerified = async (userId: string) => {
    const [row] = await queryRows<{ verified: boolean }>(harness.db, sql`select verified_at is not null as verified from sms_factors where user_id = ${userId}`);
    return row?.verified;
  };
  const otherThan = (code: string) => String((Number(code) + 1) % 1_000_000).padStart(6, '0');

  let sms: SmsHarness;
  before(async () => {
    sms = await openSmsHarness(backend);
    ({ harness, twilio } = sms);
  });
  after(() => sms?.close());

  describe('enrolling a phone', () => {
    test('a code goes to the phone; confirming it makes the phone a sign-in method, audited', async () => {
      const { user, accessToken } = await signedInUser();
      const phone = randomPhone();
      phonesUsed.push(phone);
      const mark = await auditMark(harness);
      // A national number is read as US and stored in E.164.
      const national = phone.slice(2).replace(/^(\d{3})(\d{3})(\d{4})$/, '($1) $2-$3');
      const started = await post(PHONE, { phone: national, currentPassword: user.password }, { token: accessToken });
      assert.equal(started.statusCode, 204, started.body);
      const code = lastCode(phone, VERIFY_TEXT);
      assert.equal(await phoneVerified(user.id), false);

      // Unverified: not offered, and asking for a sign-in code is refused.
      const ip = freshIp();
      const pending = await challengeFor(user, ip);
      assert.deepEqual(pending.methods, ['totp', 'recovery']);
      assertProblem(await sendCode(pending.challengeToken, ip), 400, 'method-not-available');

      const confirmed = await post(VERIFY_PHONE, { code }, { token: accessToken });
      assert.equal(confirmed.statusCode, 204, confirmed.body);
      assert.equal(await phoneVerified(user.id), true);
      // The code is spent: the same one again is refused.
      assertProblem(await post(VERIFY_PHONE, { code }, { token: accessToken }), 400, 'invalid-second-factor');

      const { methods } = await challengeFor(user, freshIp());
      assert.deepEqual(methods, ['totp', 'recovery', 'sms']);
      const events = (await auditSince(harness, mark)).filter((event) => event.action.startsWith('auth.sms') || event.action.startsWith('auth.phone'));
      assert.deepEqual(
        events.map((event) => [event.action, event.outcome, event.actor_id, event.details.purpose ?? event.details.reason ?? null]),
        [
          ['auth.sms_code_sent', 'success', user.id, 'verify-phone'],
          ['auth.phone_verified', 'success', user.id, null],
          ['auth.phone_verified', 'failure', user.id, 'used'],
        ],
      );
    });

    test('setting a phone needs the current password and a valid number; nothing is sent otherwise', async () => {
      const { user, accessToken } = await signedInUser();
      const phone = randomPhone();
      phonesUsed.push(phone);
      assertProblem(await post(PHONE, { phone }, { token: accessToken }), 400, 'validation-failed');
      assertProblem(await post(PHONE, { phone, currentPassword: 'not the password at all' }, { token: accessToken }), 403, 'invalid-credentials');
      assertProblem(await post(PHONE, { phone: '+1 555 0100', currentPassword: user.password }, { token: accessToken }), 400, 'validation-failed');
      assertProblem(await post(PHONE, { phone, currentPassword: user.password }), 401, 'unauthenticated');
      assert.equal(textsTo(phone), 0);
      assert.equal(await phoneVerified(user.id), undefined);
      assertProblem(await post(VERIFY_PHONE, { code: '123456' }, { token: accessToken }), 400, 'invalid-second-factor');
    });

    test('a verification code dies after five wrong tries: the sixth is refused even when right', async () => {
      const { user, accessToken } = await signedInUser();
      const phone = randomPhone();
      phonesUsed.push(phone);
      assert.equal((await post(PHONE, { phone, currentPassword: user.password }, { token: accessToken })).statusCode, 204);
      const code = lastCode(phone, VERIFY_TEXT);
      for (let attempt = 1; attempt <= 5; attempt++) {
        assertProblem(await post(VERIFY_PHONE, { code: otherThan(code) }, { token: accessToken }), 400, 'invalid-second-factor');
      }
      assertProblem(await post(VERIFY_PHONE, { code }, { token: accessToken }), 400, 'invalid-second-factor');
      assert.equal(await phoneVerified(user.id), false);
      const [row] = await codeRows(user.id);
      assert.equal(row!.failed_attempts, 5);
      assert.equal(row!.used_at, null);
    });
  });

  describe('signing in with an SMS code', () => {
    test('the texted code finishes the sign-in and the device becomes trusted', async () => {
      const { user, phone } = await userWithPhone();
      const ip = freshIp();
      const { challengeToken, methods } = await challengeFor(user, ip);
      assert.ok(methods.includes('sms'));
      const mark = await auditMark(harness);
      const sent = await sendCode(challengeToken, ip);
      assert.equal(sent.statusCode, 204, sent.body);
      const code = lastCode(phone, SIGN_IN_TEXT);
      const answer = await submit(challengeToken, code, ip);
      assert.equal(answer.statusCode, 200, answer.body);
      const { deviceToken, accessToken } = answer.json();
      assert.match(deviceToken, /^cgd_/);
      assert.equal(typeof accessToken, 'string');

      const again = await login(user, freshIp(), deviceToken);
      assert.equal(again.statusCode, 200, again.body);
      const events = await auditSince(harness, mark);
      assert.deepEqual(
        events.filter((event) => event.action !== 'auth.login').map((event) => [event.action, event.outcome, event.details.method ?? event.details.purpose]),
        [
          ['auth.sms_code_sent', 'success', 'sign-in'],
          ['auth.second-factor', 'success', 'sms'],
        ],
      );
    });

    test('a wrong code is refused and counted; the right one still works afterwards', async () => {
      const { user, phone } = await userWithPhone();
      const ip = freshIp();
      const { challengeToken } = await challengeFor(user, ip);
      assert.equal((await sendCode(challengeToken, ip)).statusCode, 204);
      const code = lastCode(phone, SIGN_IN_TEXT);
      const mark = await auditMark(harness);
      assertProblem(await submit(challengeToken, otherThan(code), ip), 401, 'invalid-second-factor');
      assertProblem(await submit(challengeToken, 'abcdef', ip), 401, 'invalid-second-factor');
      const failures = (await auditSince(harness, mark)).filter((event) => event.action === 'auth.second-factor');
      assert.deepEqual(
        failures.map((event) => [event.outcome, event.details.method, event.details.reason]),
        [
          ['failure', 'sms', 'wrong-code'],
          ['failure', 'sms', 'malformed'],
        ],
      );
      assert.equal((await codeRows(user.id)).at(-1)!.failed_attempts, 1);
      assert.equal((await submit(challengeToken, code, ip)).statusCode, 200);
    });

    test('an expired code is refused', async () => {
      const { user, phone } = await userWithPhone();
      const ip = freshIp();
      const { challengeToken } = await challengeFor(user, ip);
      assert.equal((await sendCode(challengeToken, ip)).statusCode, 204);
      const code = lastCode(phone, SIGN_IN_TEXT);
      await harness.db.execute(sql`update sms_codes set expires_at = now() - interval '1 second' where user_id = ${user.id} and purpose = 'sign-in'`);
      const mark = await auditMark(harness);
      assertProblem(await submit(challengeToken, code, ip), 401, 'invalid-second-factor');
      const [failure] = (await auditSince(harness, mark)).filter((event) => event.action === 'auth.second-factor');
      assert.equal(failure!.details.reason, 'expired');
    });

    test('a used code does not work again, not even for a new challenge', async () => {
      const { user, phone } = await userWithPhone();
      const ip = freshIp();
      const first = await challengeFor(user, ip);
      assert.equal((await sendCode(first.challengeToken, ip)).statusCode, 204);
      const code = lastCode(phone, SIGN_IN_TEXT);
      assert.equal((await submit(first.challengeToken, code, ip)).statusCode, 200);
      const [row] = await codeRows(user.id).then((rows) => rows.filter((candidate) => candidate.purpose === 'sign-in'));
      assert.notEqual(row!.used_at, null);

      const second = await challengeFor(user, ip);
      assertProblem(await submit(second.challengeToken, code, ip), 401, 'invalid-second-factor');
      assertProblem(await submit(first.challengeToken, code, ip), 401, 'invalid-challenge');
    });

    test('after five wrong codes the sixth attempt is refused even with the right code', async () => {
      const { user, phone } = await userWithPhone();
      const ip = freshIp();
      const { challengeToken } = await challengeFor(user, ip);
      assert.equal((await sendCode(challengeToken, ip)).statusCode, 204);
      const code = lastCode(phone, SIGN_IN_TEXT);
      for (let attempt = 1; attempt <= 5; attempt++) assertProblem(await submit(challengeToken, otherThan(code), ip), 401, 'invalid-second-factor');
      const sixth = await submit(challengeToken, code, ip);
      assert.equal(sixth.statusCode, 401);
      assert.equal((await codeRows(user.id)).at(-1)!.used_at, null);
      const [sessions] = await queryRows<{ count: number }>(harness.db, sql`select count(*)::int as count from sessions where user_id = ${user.id}`);
      assert.equal(sessions!.count, 1, 'only the session of the enrolment sign-in');
    });

    test("a code sent for another user's challenge is refused", async () => {
      const alice = await userWithPhone();
      const bob = await userWithPhone();
      const aliceIp = freshIp();
      const bobIp = freshIp();
      const aliceChallenge = await challengeFor(alice.user, aliceIp);
      const bobChallenge = await challengeFor(bob.user, bobIp);
      assert.equal((await sendCode(aliceChallenge.challengeToken, aliceIp)).statusCode, 204);
      assert.equal((await sendCode(bobChallenge.challengeToken, bobIp)).statusCode, 204);
      const aliceCode = lastCode(alice.phone, SIGN_IN_TEXT);
      const bobCode = lastCode(bob.phone, SIGN_IN_TEXT);
      // A one-in-a-million coincidence of equal codes would make this check meaningless, not wrong.
      if (bobCode !== aliceCode) assertProblem(await submit(aliceChallenge.challengeToken, bobCode, aliceIp), 401, 'invalid-second-factor');
      assert.equal((await submit(aliceChallenge.challengeToken, aliceCode, aliceIp)).statusCode, 200);
      assert.equal((await submit(bobChallenge.challengeToken, bobCode, bobIp)).statusCode, 200);
    });

    test('a user without a verified phone is not offered SMS and cannot use it', async () => {
      const user = await harness.createUser({ role: 'employee' });
      const ip = freshIp();
      const { challengeToken, methods } = await challengeFor(user, ip);
      assert.deepEqual(methods, ['totp', 'recovery']);
      assertProblem(await sendCode(challengeToken, ip), 400, 'method-not-available');
      assertProblem(await submit(challengeToken, '123456', ip), 400, 'method-not-available');
      const [challenge] = await queryRows<{ failed_attempts: number; used_at: Date | null }>(harness.db, sql`select failed_attempts, used_at from login_challenges where user_id = ${user.id}`);
      assert.equal(challenge!.failed_attempts, 0);
      assert.equal(challenge!.used_at, null);
    });

    test('without a sender tenant SMS is not offered, even with a verified phone', async () => {
      const { user } = await userWithPhone();
      const unconfigured = (slug: string | undefined) =>
        new SmsFactor(
          harness.db,
          harness.sealing.fields,
          new TenantSmsSender(harness.db, harness.sealing.fields, harness.logs.logger, { slug, publicUrl: 'https://gate.example.test', twilioApiUrl: twilio.url }),
          new SmsSendThrottle(),
        );
      assert.equal(await harness.identity.parts.sms.offered(user.id), true);
      assert.equal(await unconfigured(undefined).offered(user.id), false);
      assert.equal(await unconfigured('no-such-tenant').offered(user.id), false);
      const outcome = await unconfigured(undefined).startPhoneVerification(user.id, randomPhone());
      assert.deepEqual(outcome, { sent: false, reason: 'not-configured' });
    });
  });

  describe('sending limits and outages', () => {
    test('a second code within 30 seconds is refused with Retry-After, and nothing is sent', async () => {
      const { user, phone } = await userWithPhone();
      const ip = freshIp();
      const { challengeToken } = await challengeFor(user, ip);
      assert.equal((await sendCode(challengeToken, ip)).statusCode, 204);
      const code = lastCode(phone, SIGN_IN_TEXT);
      const texts = textsTo(phone);
      await harness.identity.throttleAudit.flush({ all: true }); // earlier tests' throttled entries
      const mark = await auditMark(harness);
      const again = await sendCode(challengeToken, ip);
      const problem = assertProblem(again, 429, 'sms-throttled');
      assert.ok(Number(again.headers['retry-after']) >= 1 && Number(again.headers['retry-after']) <= 30);
      assert.equal(problem.retryAfter, Number(again.headers['retry-after']));
      assert.equal(textsTo(phone), texts);
      // A new challenge does not reset the limit.
      const other = await challengeFor(user, ip);
      assertProblem(await sendCode(other.challengeToken, ip), 429, 'sms-throttled');
      assert.deepEqual((await auditSince(harness, mark)).filter((event) => event.action === 'auth.sms_code_sent'), [], 'a refused send is no row of its own');
      await harness.identity.throttleAudit.flush({ all: true });
      const throttled = (await auditSince(harness, mark)).filter((event) => event.action === 'auth.throttled');
      assert.deepEqual(
        throttled.map((event) => [event.outcome, event.details.attempt, event.details.reason, event.details.count]),
        [['denied', 'auth.sms_code_sent', 'throttled', 2]],
      );
      // The code already sent still works.
      assert.equal((await submit(challengeToken, code, ip)).statusCode, 200);
    });

    test('at most five codes per user per hour, whatever their purpose', async () => {
      const throttle = new SmsSendThrottle({ minIntervalSeconds: 0 });
      // A new phone each time, so only the per-user limit can say no.
      for (let sent = 1; sent <= 5; sent++) assert.deepEqual(await throttle.consume('u:someone', sent % 2 === 0 ? 'sign-in' : 'verify-phone', `tel:${sent}`), { allowed: true });
      const sixth = await throttle.consume('u:someone', 'sign-in', 'tel:6');
      assert.equal(sixth.allowed, false);
      assert.ok(!sixth.allowed && sixth.retryAfterSeconds > 30 && sixth.retryAfterSeconds <= 3600);
      assert.deepEqual(await throttle.consume('u:someone-else', 'sign-in', 'tel:7'), { allowed: true });
    });

    for (const fault of [
      { name: 'HTTP 500', fault: { kind: 'status', status: 500 } as const },
      { name: 'a dropped connection after Twilio took the message', fault: { kind: 'drop', afterHandling: true } as const },
    ]) {
      test(`Twilio down (${fault.name}) → 503 sms-unavailable, and no code is usable`, async () => {
        const { user, phone } = await userWithPhone();
        const ip = freshIp();
        const { challengeToken } = await challengeFor(user, ip);
        const texts = textsTo(phone);
        const mark = await auditMark(harness);
        twilio.failNext(fault.fault);
        assertProblem(await sendCode(challengeToken, ip), 503, 'sms-unavailable');
        assert.equal((await codeRows(user.id)).filter((row) => row.purpose === 'sign-in').length, 0, 'no code stored');
        // When Twilio did take the message, the code in it opens nothing.
        assert.equal(textsTo(phone), fault.fault.kind === 'drop' ? texts + 1 : texts);
        const delivered = textsTo(phone) > texts ? lastCode(phone, SIGN_IN_TEXT) : '123456';
        assertProblem(await submit(challengeToken, delivered, ip), 401, 'invalid-second-factor');
        const events = (await auditSince(harness, mark)).filter((event) => event.action === 'auth.sms_code_sent');
        assert.deepEqual(
          events.map((event) => [event.outcome, event.details.reason]),
          [['failure', 'provider-unavailable']],
        );
      });
    }
  });

  describe('where the phone number and codes live', () => {
    test('the phone is sealed in sms_factors, codes are kept only as MACs, and neither reaches logs, audit or Twilio spec violations', async () => {
      const { user, phone } = await userWithPhone();
      const [factor] = await queryRows<{ id: string; phone: Uint8Array }>(harness.db, sql`select id, phone from sms_factors where user_id = ${user.id}`);
      const stored = Buffer.from(factor!.phone);
      assert.ok(!stored.includes(Buffer.from(phone)), 'the stored phone is not plaintext');
      assert.ok(!stored.includes(Buffer.from(phone.slice(2))), 'nor its national digits');
      assert.equal(harness.sealing.fields.openRow(smsFactorsSealed, { scope: SYSTEM_SCOPE, id: factor!.id }, { phone: stored }).phone, phone, 'it opens under the system key');
      const hashes = (await queryRows<{ code_hash: string }>(harness.db, sql`select code_hash from sms_codes`)).map((row) => row.code_hash);
      assert.ok(hashes.length > 0);
      for (const hash of hashes) {
        assert.match(hash, /^[0-9a-f]{64}$/);
        for (const code of codesSeen) assert.ok(!hash.includes(code), 'a code never appears in its stored form');
      }

      const logs = harness.logs.text();
      const audit = JSON.stringify(await harness.auditActions());
      assert.ok(phonesUsed.length > 5 && codesSeen.length > 5);
      for (const used of phonesUsed) {
        for (const form of [used, used.slice(1), used.slice(2)]) {
          assert.ok(!logs.includes(form), 'no phone number in the logs');
          assert.ok(!audit.includes(form), 'no phone number in the audit trail');
        }
      }
      for (const code of codesSeen) {
        assert.ok(!logs.includes(`code is ${code}`) && !logs.includes(`"${code}"`), 'no code in the logs');
        assert.ok(!audit.includes(`"${code}"`), 'no code in the audit trail');
      }
      assert.ok(logs.includes('identity SMS code not sent'), 'the outage was logged (without the number)');
      assert.deepEqual(twilio.violations, []);
    });
  });
});
