import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { queryRows } from '../../src/store/connection.js';
import { auditMark, auditSince } from '../helpers/audit.js';
import { describeEachBackend } from '../helpers/database.js';
import { openIdentityHarness, type IdentityHarness } from '../helpers/identity.js';
import { freshAddresses } from '../helpers/addresses.js';
import { secretFromUri, totpCode } from '../helpers/totp-codes.js';
import { assertProblem } from '../helpers/problems.js';

/**
 * The password step of `POST /auth/login` over HTTP: what a correct password earns on a new
 * device, the one answer every failing account gets, first-time TOTP enrollment, the
 * account+address lockout and the per-address budget, and what the audit trail and the log
 * keep (and never keep).
 */

const LOGIN = '/api/v1/auth/login';
const SECOND_FACTOR = '/api/v1/auth/second-factor';
const ENROLL = '/api/v1/auth/totp/enroll';
const CONFIRM = '/api/v1/auth/totp/confirm';

await describeEachBackend('sign-in: password step', (backend) => {
  let harness: IdentityHarness;
  // Every test signs in from addresses of its own: the per-address budget (30 attempts a
  // minute across login and second factor) and the account+address lock are shared by the
  // whole suite's harness otherwise.
  const freshIp = freshAddresses('10.20');
  const login = (body: Record<string, unknown>, ip: string, headers: Record<string, string> = {}) => harness.request({ method: 'POST', url: LOGIN, body, remoteAddress: ip, headers });
  const userState = async (userId: string) => {
    const db = harness.db;
    const [row] = await queryRows<{ sessions: number; challenges: number; devices: number; factors: number; recovery: number }>(
      db,
      sql`select
            (select count(*)::int from sessions where user_id = ${userId}) as sessions,
            (select count(*)::int from login_challenges where user_id = ${userId}) as challenges,
            (select count(*)::int from trusted_devices where user_id = ${userId}) as devices,
            (select count(*)::int from totp_factors where user_id = ${userId}) as factors,
            (select count(*)::int from recovery_codes where user_id = ${userId}) as recovery`,
    );
    return row!;
  };

  before(async () => {
    harness = await openIdentityHarness(backend);
  });
  after(async () => {
    await harness.close();
  });

  describe('a correct password', () => {
    test('on a new device answers 401 second-factor-required with a challenge and the methods, and starts no session', async () => {
      const user = await harness.createUser({ role: 'employee' });
      const before = await userState(user.id);
      const mark = await auditMark(harness);
      const answer = await login({ email: user.email, password: user.password }, freshIp());
      const problem = assertProblem(answer, 401, 'second-factor-required');
      assert.match(problem.challengeToken, /^cgc_[A-Za-z0-9_-]{43}$/);
      assert.deepEqual(problem.methods, ['totp', 'recovery']);
      assert.equal(problem.accessToken, undefined);
      assert.equal(problem.refreshToken, undefined);
      const afterState = await userState(user.id);
      assert.deepEqual(afterState, { ...before, challenges: before.challenges + 1 });
      const events = await auditSince(harness, mark);
      assert.deepEqual(
        events.map((event) => [event.action, event.outcome, event.actor_id, event.details.next]),
        [['auth.login', 'success', user.id, 'second-factor']],
      );
    });

    test('the email is matched in any case', async () => {
      const user = await harness.createUser({ role: 'employee' });
      const answer = await login({ email: user.email.toUpperCase(), password: user.password }, freshIp());
      assert.equal(answer.statusCode, 401);
      assert.equal(answer.json().type, 'second-factor-required');
    });
  });

  describe('first sign-in without a factor enrolls TOTP before any token', () => {
    test('login answers second-factor-enrollment-required; enroll → otpauth URI → confirm gives tokens, a device token and ten recovery codes', async () => {
      const user = await harness.createUser({ role: 'employee', withTotp: false });
      const ip = freshIp();
      const mark = await auditMark(harness);
      const answer = await login({ email: user.email, password: user.password }, ip);
      assert.equal(answer.statusCode, 401);
      const problem = answer.json();
      assert.equal(problem.type, 'second-factor-enrollment-required');
      assert.match(problem.challengeToken, /^cgc_/);
      assert.deepEqual(problem.methods, ['totp']);
      assert.deepEqual(await userState(user.id), { sessions: 0, challenges: 1, devices: 0, factors: 0, recovery: 0 });

      // The enrollment challenge is no second factor: it cannot finish a sign-in by itself.
      const misuse = await harness.request({ method: 'POST', url: SECOND_FACTOR, body: { challengeToken: problem.challengeToken, method: 'totp', code: '123456' }, remoteAddress: ip });
      assert.equal(misuse.statusCode, 401);
      assert.equal(misuse.json().type, 'invalid-challenge');
      assert.equal((await userState(user.id)).sessions, 0);

      const enrolled = await harness.request({ method: 'POST', url: ENROLL, body: { challengeToken: problem.challengeToken }, remoteAddress: ip });
      assert.equal(enrolled.statusCode, 200, enrolled.body);
      assert.equal(enrolled.headers['cache-control'], 'no-store');
      const { otpauthUri, secret } = enrolled.json();
      const uri = new URL(otpauthUri);
      assert.equal(uri.protocol, 'otpauth:');
      assert.equal(uri.host, 'totp');
      assert.equal(uri.searchParams.get('issuer'), 'Ciphergate');
      assert.equal(secretFromUri(otpauthUri), secret);
      assert.equal((await userState(user.id)).factors, 1, 'a pending factor');

      // A wrong code confirms nothing and issues nothing.
      const wrong = await harness.request({ method: 'POST', url: CONFIRM, body: { challengeToken: problem.challengeToken, code: wrongCode(secret) }, remoteAddress: ip });
      assert.equal(wrong.statusCode, 400);
      assert.equal(wrong.json().type, 'invalid-second-factor');
      assert.deepEqual(await userState(user.id), { sessions: 0, challenges: 1, devices: 0, factors: 1, recovery: 0 });

      const confirmed = await harness.request({ method: 'POST', url: CONFIRM, body: { challengeToken: problem.challengeToken, code: totpCode(secretFromUri(otpauthUri)) }, remoteAddress: ip });
      assert.equal(confirmed.statusCode, 200, confirmed.body);
      const tokens = confirmed.json();
      assert.equal(typeof tokens.accessToken, 'string');
      assert.match(tokens.refreshToken, /^cgr_/);
      assert.match(tokens.deviceToken, /^cgd_/);
      assert.equal(tokens.recoveryCodes.length, 10);
      assert.equal(new Set(tokens.recoveryCodes).size, 10);
      for (const code of tokens.recoveryCodes) assert.match(code, /^[0-9a-z]{5}-[0-9a-z]{5}$/);
      assert.deepEqual(await userState(user.id), { sessions: 1, challenges: 1, devices: 1, factors: 1, recovery: 10 });

      const sessions = await harness.request({ method: 'GET', url: '/api/v1/auth/sessions', token: tokens.accessToken, remoteAddress: ip });
      assert.equal(sessions.statusCode, 200);
      assert.equal(sessions.json().sessions.length, 1);

      // The spent enrollment challenge cannot enroll again.
      const again = await harness.request({ method: 'POST', url: ENROLL, body: { challengeToken: problem.challengeToken }, remoteAddress: ip });
      assert.equal(again.statusCode, 401);
      assert.equal(again.json().type, 'invalid-challenge');

      const events = await auditSince(harness, mark);
      const summary = events.map((event) => `${event.action}:${event.outcome}`);
      assert.deepEqual(summary, [
        'auth.login:success',
        'auth.second-factor:denied',
        'auth.totp.enroll:success',
        'auth.totp.enroll:failure',
        'auth.totp.enroll:success',
        'auth.totp.enroll:denied',
      ]);
      assert.equal(events[0]!.details.next, 'enrollment');
      assert.equal(events[2]!.details.stage, 'started');
      assert.equal(events[4]!.details.stage, 'confirmed');
      assert.ok(events.slice(0, 5).every((event) => event.actor_id === user.id || event.outcome === 'denied'));
    });

    test('a second-factor challenge cannot start or confirm an enrollment', async () => {
      const user = await harness.createUser({ role: 'employee' });
      const ip = freshIp();
      const challengeToken = (await login({ email: user.email, password: user.password }, ip)).json().challengeToken as string;
      const before = await userState(user.id);
      const mark = await auditMark(harness);
      const enroll = await harness.request({ method: 'POST', url: ENROLL, body: { challengeToken }, remoteAddress: ip });
      assert.equal(enroll.statusCode, 401);
      assert.equal(enroll.json().type, 'invalid-challenge');
      const confirm = await harness.request({ method: 'POST', url: CONFIRM, body: { challengeToken, code: totpCode(user.totpSecret!) }, remoteAddress: ip });
      assert.equal(confirm.statusCode, 401);
      assert.equal(confirm.json().type, 'invalid-challenge');
      assert.deepEqual(await userState(user.id), before, 'no pending factor, no session');
      assert.deepEqual(
        (await auditSince(harness, mark)).map((event) => [event.action, event.outcome, event.details.reason]),
        [
          ['auth.totp.enroll', 'denied', 'invalid-challenge'],
          ['auth.totp.enroll', 'denied', 'invalid-challenge'],
        ],
      );
      // Still good for what it was issued for.
      const finished = await harness.request({ method: 'POST', url: SECOND_FACTOR, body: { challengeToken, method: 'totp', code: totpCode(user.totpSecret!) }, remoteAddress: ip });
      assert.equal(finished.statusCode, 200, finished.body);
    });
  });

  describe('every failing account gets the same answer', () => {
    test('wrong password → 401 invalid-credentials, nothing issued, audited as a failure', async () => {
      const user = await harness.createUser({ role: 'employee' });
      const before = await userState(user.id);
      const mark = await auditMark(harness);
      const answer = await login({ email: user.email, password: 'not the password at all' }, freshIp());
      assert.equal(answer.statusCode, 401);
      assert.equal(answer.json().type, 'invalid-credentials');
      assert.equal(answer.json().challengeToken, undefined);
      assert.deepEqual(await userState(user.id), before);
      assert.deepEqual(
        (await auditSince(harness, mark)).map((event) => [event.action, event.outcome, event.actor_id]),
        [['auth.login', 'failure', user.id]],
      );
    });

    test('unknown email, pending user and disabled user answer exactly as a wrong password does', async () => {
      const user = await harness.createUser({ role: 'employee' });
      const reference = await login({ email: user.email, password: 'not the password at all' }, freshIp());

      const pendingEmail = `pending-${randomUUID()}@example.test`;
      const pending = await harness.identity.parts.users.create({ email: pendingEmail, role: 'employee', tenantId: null, status: 'pending' });
      const disabled = await harness.createUser({ role: 'employee' });
      await harness.identity.parts.users.update(disabled.id, { status: 'disabled' });

      const cases: Array<[string, { email: string; password: string }, string | null]> = [
        ['unknown email', { email: `nobody-${randomUUID()}@example.test`, password: user.password }, null],
        ['pending user (no password yet)', { email: pendingEmail, password: user.password }, pending.id],
        ['disabled user with the right password', { email: disabled.email, password: disabled.password }, disabled.id],
      ];
      for (const [name, body, userId] of cases) {
        const state = userId ? await userState(userId) : undefined;
        const mark = await auditMark(harness);
        const answer = await login(body, freshIp());
        assert.equal(answer.statusCode, reference.statusCode, name);
        assert.equal(answer.headers['content-type'], reference.headers['content-type'], name);
        assert.deepEqual(answer.json(), reference.json(), name);
        if (userId) assert.deepEqual(await userState(userId), state, `${name}: nothing changed`);
        const events = await auditSince(harness, mark);
        assert.deepEqual(
          events.map((event) => [event.action, event.outcome]),
          [['auth.login', 'failure']],
          name,
        );
      }
    });

    test('a user with a factor and wrong password, signing in with a device token, still gets invalid-credentials', async () => {
      const user = await harness.createUser({ role: 'employee' });
      const answer = await login({ email: user.email, password: 'not the password at all', deviceToken: `cgd_${'A'.repeat(43)}` }, freshIp());
      assert.equal(answer.statusCode, 401);
      assert.equal(answer.json().type, 'invalid-credentials');
    });
  });

  describe('throttling', () => {
    test('10 failures lock the account from that address: 429 account-locked with Retry-After even with the right password; another address is not locked', async () => {
      const user = await harness.createUser({ role: 'employee' });
      const attacker = freshIp();
      await harness.identity.throttleAudit.flush({ all: true }); // earlier tests' throttled entries
      const mark = await auditMark(harness);
      for (let attempt = 1; attempt <= 10; attempt++) {
        const answer = await login({ email: user.email, password: `wrong guess number ${attempt}` }, attacker);
        assert.equal(answer.statusCode, 401, `attempt ${attempt}`);
        assert.equal(answer.json().type, 'invalid-credentials', `attempt ${attempt}`);
      }
      const before = await userState(user.id);
      const locked = await login({ email: user.email, password: user.password }, attacker);
      assertProblem(locked, 429, 'account-locked');
      const retryAfter = Number(locked.headers['retry-after']);
      assert.ok(Number.isInteger(retryAfter) && retryAfter > 0 && retryAfter <= 15 * 60, `Retry-After ${locked.headers['retry-after']}`);
      assert.equal(locked.json().challengeToken, undefined);
      assert.deepEqual(await userState(user.id), before, 'a locked login issues no challenge');

      const events = await auditSince(harness, mark);
      const lockouts = events.filter((event) => event.action === 'auth.lockout');
      assert.equal(lockouts.length, 1, 'the lockout is audited once');
      assert.equal(lockouts[0]!.actor_id, user.id);
      assert.equal(events.filter((event) => event.action === 'auth.login' && event.outcome === 'failure').length, 10);
      // The refused attempt is not a row of its own: it is counted in the minute's `auth.throttled` entry.
      assert.equal(events.filter((event) => event.action === 'auth.login' && event.outcome === 'denied').length, 0);
      await harness.identity.throttleAudit.flush({ all: true });
      const throttled = (await auditSince(harness, mark)).filter((event) => event.action === 'auth.throttled');
      assert.deepEqual(
        throttled.map((event) => [event.outcome, event.details.attempt, event.details.reason, event.details.count]),
        [['denied', 'auth.login', 'account-locked', 1]],
      );

      // The lock is per account and address: the owner elsewhere is not locked out by an attacker.
      const elsewhere = await login({ email: user.email, password: user.password }, freshIp());
      assert.equal(elsewhere.statusCode, 401);
      assert.equal(elsewhere.json().type, 'second-factor-required');
    });

    test('an unknown email locks the same way, so a lockout does not tell who exists', async () => {
      const email = `nobody-${randomUUID()}@example.test`;
      const attacker = freshIp();
      for (let attempt = 1; attempt <= 10; attempt++) {
        assert.equal((await login({ email, password: `wrong guess number ${attempt}` }, attacker)).statusCode, 401);
      }
      const locked = await login({ email, password: 'wrong guess number 11' }, attacker);
      assert.equal(locked.statusCode, 429);
      assert.equal(locked.json().type, 'account-locked');
      assert.ok(Number(locked.headers['retry-after']) > 0);
    });

    test('31st login attempt within a minute from one address → 429 rate-limited with Retry-After, before any password check', async () => {
      const user = await harness.createUser({ role: 'employee' });
      const sprayer = freshIp();
      // Many accounts, one address: the pair lock never sees it, the address budget does.
      for (let attempt = 1; attempt <= 30; attempt++) {
        const answer = await login({ email: `sprayed-${attempt}-${randomUUID()}@example.test`, password: 'Spring2024!spray' }, sprayer);
        assert.equal(answer.statusCode, 401, `attempt ${attempt}`);
      }
      const before = await userState(user.id);
      await harness.identity.throttleAudit.flush({ all: true }); // earlier tests' throttled entries
      const mark = await auditMark(harness);
      const limited = await login({ email: user.email, password: user.password }, sprayer);
      assertProblem(limited, 429, 'rate-limited');
      const retryAfter = Number(limited.headers['retry-after']);
      assert.ok(Number.isInteger(retryAfter) && retryAfter > 0 && retryAfter <= 60, `Retry-After ${limited.headers['retry-after']}`);
      assert.deepEqual(await userState(user.id), before);
      await harness.identity.throttleAudit.flush({ all: true });
      assert.deepEqual(
        (await auditSince(harness, mark)).map((event) => [event.action, event.outcome, event.details.attempt, event.details.reason, event.details.count]),
        [['auth.throttled', 'denied', 'auth.login', 'ip-limit', 1]],
      );
      // Another address has its own budget.
      assert.equal((await login({ email: user.email, password: user.password }, freshIp())).json().type, 'second-factor-required');
    });
  });

  describe('audit trail and log', () => {
    test('sign-in events are audited, and no audit row or log line holds an email, a password, a code or a token', async () => {
      const enrolling = await harness.createUser({ role: 'employee', withTotp: false });
      const user = await harness.createUser({ role: 'employee' });
      const ip = freshIp();
      const wrongPassword = 'a wrong but plausible password 9';
      const unknownEmail = `ghost-${randomUUID()}@example.test`;
      const secrets: Record<string, string> = {};
      const mark = await auditMark(harness);
      const logMark = harness.logs.text().length;

      await login({ email: unknownEmail, password: wrongPassword }, ip);
      await login({ email: user.email, password: wrongPassword }, ip);

      // Enrollment from a first sign-in.
      const enrollChallenge = (await login({ email: enrolling.email, password: enrolling.password }, ip)).json().challengeToken as string;
      const { otpauthUri } = (await harness.request({ method: 'POST', url: ENROLL, body: { challengeToken: enrollChallenge }, remoteAddress: ip })).json();
      const enrollSecret = secretFromUri(otpauthUri);
      const enrollCode = totpCode(enrollSecret);
      const enrolled = (await harness.request({ method: 'POST', url: CONFIRM, body: { challengeToken: enrollChallenge, code: enrollCode }, remoteAddress: ip })).json();

      // A failed, then a passed second factor; then a trusted-device login.
      const challengeToken = (await login({ email: user.email, password: user.password }, ip)).json().challengeToken as string;
      const badCode = wrongCode(user.totpSecret!);
      const failed = await harness.request({ method: 'POST', url: SECOND_FACTOR, body: { challengeToken, method: 'totp', code: badCode }, remoteAddress: ip });
      assert.equal(failed.statusCode, 401);
      const goodCode = totpCode(user.totpSecret!);
      const passed = (await harness.request({ method: 'POST', url: SECOND_FACTOR, body: { challengeToken, method: 'totp', code: goodCode }, remoteAddress: ip })).json();
      const trusted = (await login({ email: user.email, password: user.password, deviceToken: passed.deviceToken }, ip)).json();
      assert.equal(typeof trusted.accessToken, 'string');

      const summary = (await auditSince(harness, mark)).map((event) => `${event.action}:${event.outcome}`);
      for (const expected of ['auth.login:failure', 'auth.login:success', 'auth.totp.enroll:success', 'auth.second-factor:failure', 'auth.second-factor:success']) {
        assert.ok(summary.includes(expected), `${expected} in ${summary.join(', ')}`);
      }
      assert.equal(summary.filter((entry) => entry === 'auth.login:failure').length, 2);

      Object.assign(secrets, {
        'unknown email': unknownEmail,
        email: user.email,
        'enrolling email': enrolling.email,
        password: user.password,
        'wrong password': wrongPassword,
        'enrollment challenge': enrollChallenge,
        'TOTP secret': enrollSecret,
        'second-factor challenge': challengeToken,
        'access token': passed.accessToken,
        'access token signature': passed.accessToken.split('.')[2],
        'refresh token': passed.refreshToken,
        'device token': passed.deviceToken,
        'enrollment access token': enrolled.accessToken,
        'enrollment refresh token': enrolled.refreshToken,
        'enrollment device token': enrolled.deviceToken,
        'trusted-login refresh token': trusted.refreshToken,
        ...Object.fromEntries((enrolled.recoveryCodes as string[]).flatMap((code, index) => [[`recovery code ${index}`, code], [`recovery code ${index} bare`, code.replace('-', '')]])),
      });
      const codes = { 'enrollment code': enrollCode, 'wrong code': badCode, 'passed code': goodCode };

      // The hash columns are hex digests; a six-digit code could occur in one by chance, and they
      // are derived from the other columns anyway.
      const auditRows = await queryRows<Record<string, unknown>>(
        harness.db,
        sql`select actor_type, actor_id, action, target_type, target_id, tenant_id, source_ip, outcome, details from audit_events`,
      );
      const auditText = JSON.stringify(auditRows);
      const logText = harness.logs.text().slice(logMark);
      assert.ok(logText.includes('request completed'), 'the requests were logged');
      for (const [where, text] of [['audit trail', auditText], ['log', logText]] as const) {
        for (const [name, secret] of Object.entries(secrets)) {
          assert.ok(!text.toLowerCase().includes(secret.toLowerCase()), `${where} holds the ${name}`);
        }
        for (const [name, code] of Object.entries(codes)) {
          assert.doesNotMatch(text, new RegExp(`(?<![0-9.])${code}(?![0-9])`), `${where} holds the ${name}`);
        }
      }
    });
  });
});

/** A six-digit code that is not valid for `secret` at any step of the accepted window. */
function wrongCode(secret: string): string {
  const valid = new Set([-1, 0, 1].map((offset) => totpCode(secret, offset)));
  for (let candidate = 0; ; candidate++) {
    const code = String(candidate).padStart(6, '0');
    if (!valid.has(code)) return code;
  }
}
