import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { queryRows } from '../../src/store/connection.js';
import { auditMark, auditSince } from '../helpers/audit.js';
import { describeEachBackend, tablesState } from '../helpers/database.js';
import { PASSWORD, openIdentityHarness, type IdentityHarness } from '../helpers/identity.js';
import { secretFromUri, totpCode } from '../helpers/totp-codes.js';
import { useOpenSignupHarness, verificationTokenIn } from '../helpers/open-signup.js';
import { assertProblem } from '../helpers/problems.js';
import { type ReceivedEmail, type SmtpTestServer } from '../helpers/smtp.js';

/**
 * The two ways into an account besides the CLI: an admin-made user redeeming its setup token
 * (single use, 24 h, password policy enforced without spending the token), and, only with
 * CIPHERGATE_SIGNUP=open, self-registration with a single-use verification link sent by email,
 * where the password is chosen, that ends in role `user`, no tenant, no data. (Pre-account
 * hijacking, expiry and invites over a pending signup: test/regressions/.)
 */

const SETUP_PASSWORD = 'a quiet lighthouse keeper 1851';

const state = (h: IdentityHarness) => tablesState(h, ['users', 'user_tokens', 'sessions']);

await describeEachBackend('setup tokens and signup', (backend) => {
  describe('setup tokens (signup closed, the default)', () => {
    let h: IdentityHarness;
    let adminToken: string;

    before(async () => {
      h = await openIdentityHarness(backend);
      adminToken = (await h.signIn(await h.createUser({ role: 'admin' }))).accessToken;
    });
    after(async () => h.close());

    async function pendingUser(): Promise<{ id: string; email: string; setupToken: string }> {
      const email = `setup-${randomUUID()}@example.test`;
      const created = await h.request({ method: 'POST', url: '/api/v1/users', token: adminToken, body: { email, role: 'employee' } });
      assert.equal(created.statusCode, 201, created.body);
      return { id: created.json().user.id, email, setupToken: created.json().setupToken };
    }

    test('a setup token sets the password once; the next sign-in must enroll a second factor', async () => {
      const user = await pendingUser();
      const mark = await auditMark(h);
      const redeemed = await h.request({ method: 'POST', url: '/api/v1/auth/setup', body: { setupToken: user.setupToken, password: SETUP_PASSWORD } });
      assert.equal(redeemed.statusCode, 200, redeemed.body);
      assert.deepEqual(redeemed.json(), { userId: user.id });
      const [row] = await queryRows<{ status: string; password_hash: string }>(h.db, sql`select status, password_hash from users where id = ${user.id}`);
      assert.equal(row!.status, 'active');
      assert.match(row!.password_hash, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
      const [token] = await queryRows<{ used_at: Date | null }>(h.db, sql`select used_at from user_tokens where user_id = ${user.id}`);
      assert.notEqual(token!.used_at, null);
      const set = (await auditSince(h, mark)).find((event) => event.action === 'auth.password.set');
      assert.ok(set, 'auth.password.set audited');
      assert.equal(set.outcome, 'success');
      assert.equal(set.actor_id, user.id);

      // Single use: the second redemption changes nothing, not even to another password.
      const before = await state(h);
      const replayMark = await auditMark(h);
      const replay = await h.request({ method: 'POST', url: '/api/v1/auth/setup', body: { setupToken: user.setupToken, password: 'an entirely different passphrase' } });
      assertProblem(replay, 400, 'invalid-token');
      assert.equal(await state(h), before);
      const denied = (await auditSince(h, replayMark)).find((event) => event.action === 'auth.password.set');
      assert.equal(denied?.outcome, 'denied');

      const login = await h.request({ method: 'POST', url: '/api/v1/auth/login', body: { email: user.email, password: SETUP_PASSWORD } });
      const problem = assertProblem(login, 401, 'second-factor-enrollment-required');
      assert.match(problem.challengeToken, /^cgc_/);
      assert.deepEqual(problem.methods, ['totp']);
      assert.equal(problem.accessToken, undefined, 'no token before a second factor exists');
      assertProblem(await h.request({ method: 'POST', url: '/api/v1/auth/login', body: { email: user.email, password: 'an entirely different passphrase' } }), 401, 'invalid-credentials');
    });

    test('a weak password is refused and the token stays usable', async () => {
      const user = await pendingUser();
      const weak: Array<[string, string]> = [
        ['short pw 1', 'too-short'],
        ['password1234', 'common'],
        ['QWERTY123456', 'common'],
        [`my address is ${user.email}`, 'contains-email'],
        ['x'.repeat(129), 'too-long'],
      ];
      for (const [password, rule] of weak) {
        const before = await state(h);
        const refused = await h.request({ method: 'POST', url: '/api/v1/auth/setup', body: { setupToken: user.setupToken, password } });
        const problem = assertProblem(refused, 400, 'weak-password');
        assert.equal(problem.rule, rule, password);
        assert.ok(!refused.body.includes(password), 'the password is not echoed');
        assert.equal(await state(h), before, `${rule}: nothing changed, the token is unspent`);
      }
      const redeemed = await h.request({ method: 'POST', url: '/api/v1/auth/setup', body: { setupToken: user.setupToken, password: SETUP_PASSWORD } });
      assert.equal(redeemed.statusCode, 200, redeemed.body);
    });

    test('an expired setup token is refused and the user stays pending', async () => {
      const user = await pendingUser();
      await h.db.execute(sql`update user_tokens set expires_at = now() - interval '1 second' where user_id = ${user.id}`);
      const before = await state(h);
      const mark = await auditMark(h);
      assertProblem(await h.request({ method: 'POST', url: '/api/v1/auth/setup', body: { setupToken: user.setupToken, password: SETUP_PASSWORD } }), 400, 'invalid-token');
      assert.equal(await state(h), before);
      const [row] = await queryRows<{ status: string; password_hash: string | null }>(h.db, sql`select status, password_hash from users where id = ${user.id}`);
      assert.deepEqual({ ...row }, { status: 'pending', password_hash: null });
      assert.ok((await auditSince(h, mark)).some((event) => event.action === 'auth.password.set' && event.outcome === 'denied'));
    });

    test('unknown, malformed and foreign tokens are all the same 400 invalid-token', async () => {
      const user = await pendingUser();
      const before = await state(h);
      const strays = [
        `cgs_${randomBytes(32).toString('base64url')}`,
        `cgv_${user.setupToken.slice(4)}`,
        `${user.setupToken}x`,
        user.setupToken.toUpperCase(),
        'nonsense',
        adminToken.slice(0, 256),
      ];
      const details = new Set<string>();
      for (const setupToken of strays) {
        const problem = assertProblem(await h.request({ method: 'POST', url: '/api/v1/auth/setup', body: { setupToken, password: SETUP_PASSWORD } }), 400, 'invalid-token');
        details.add(problem.detail);
      }
      assert.equal(details.size, 1, 'one answer for every kind of bad token');
      assert.equal(await state(h), before);
    });

    test('a pending user disabled before setup cannot redeem its token', async () => {
      const user = await pendingUser();
      const disabled = await h.request({ method: 'PATCH', url: `/api/v1/users/${user.id}`, token: adminToken, body: { status: 'disabled' } });
      assert.equal(disabled.statusCode, 200, disabled.body);
      const before = await state(h);
      assertProblem(await h.request({ method: 'POST', url: '/api/v1/auth/setup', body: { setupToken: user.setupToken, password: SETUP_PASSWORD } }), 400, 'invalid-token');
      assert.equal(await state(h), before);
    });

    test('with signup closed, /auth/signup and /auth/verify-email answer 404', async () => {
      const before = await state(h);
      const signup = await h.request({ method: 'POST', url: '/api/v1/auth/signup', body: { email: `closed-${randomUUID()}@example.test`, password: PASSWORD } });
      assertProblem(signup, 404, 'not-found');
      const verify = await h.request({ method: 'POST', url: '/api/v1/auth/verify-email', body: { token: `cgv_${randomBytes(32).toString('base64url')}`, password: PASSWORD } });
      assertProblem(verify, 404, 'not-found');
      // Absent whatever the body: the schema of a closed route says nothing.
      assertProblem(await h.request({ method: 'POST', url: '/api/v1/auth/verify-email', body: { token: 'x' } }), 404, 'not-found');
      assert.equal(await state(h), before);
    });
  });

  describe('self-registration (CIPHERGATE_SIGNUP=open)', () => {
    let h: IdentityHarness;
    let smtp: SmtpTestServer;
    useOpenSignupHarness(backend, (signups) => ({ h, smtp } = signups));

    function signup(email: string) {
      return h.request({ method: 'POST', url: '/api/v1/auth/signup', body: { email } });
    }

    function verify(token: string, password = PASSWORD) {
      return h.request({ method: 'POST', url: '/api/v1/auth/verify-email', body: { token, password } });
    }

    test('signup → emailed cgv_ link → verify once, choosing the password → enroll → role `user`, no tenant, no data', async () => {
      const email = `self-${randomUUID()}@example.test`;
      const mark = await auditMark(h);
      const accepted = await signup(email);
      assert.equal(accepted.statusCode, 202, accepted.body);
      assert.deepEqual(accepted.json(), { status: 'verification-sent' });

      const message = await smtp.nthMessage(email, 1);
      const verifyToken = verificationToken(message);
      assert.ok(message.text.includes(`https://gate.example.test/verify-email#token=${verifyToken}`), 'the token is in the link fragment');
      assert.match(message.text, /choose its password/);
      assert.match(message.text, /expires 24 hours after/);

      const [user] = await queryRows<{ id: string; role: string; tenant_id: string | null; status: string; password_hash: string | null }>(
        h.db,
        sql`select id, role, tenant_id, status, password_hash from users where id = (select user_id from user_tokens where token_hash = ${sha256(verifyToken)})`,
      );
      assert.ok(user, 'the token is stored as its SHA-256');
      assert.deepEqual(
        { role: user.role, tenant: user.tenant_id, status: user.status, passwordHash: user.password_hash },
        { role: 'user', tenant: null, status: 'unverified', passwordHash: null },
        'a pending signup holds no password',
      );
      assert.ok(!JSON.stringify(await queryRows(h.db, sql`select * from user_tokens`)).includes(verifyToken.slice(4)));
      const created = (await auditSince(h, mark)).find((event) => event.action === 'auth.signup');
      assert.equal(created?.outcome, 'success');
      assert.equal(created?.target_id, user.id);

      // Before verification there is no password that could sign in.
      const earlyMark = await auditMark(h);
      assertProblem(await h.request({ method: 'POST', url: '/api/v1/auth/login', body: { email, password: PASSWORD } }), 401, 'invalid-credentials');
      const early = (await auditSince(h, earlyMark)).find((event) => event.action === 'auth.login');
      assert.equal(early?.outcome, 'failure');
      assert.deepEqual(await queryRows(h.db, sql`select id from sessions where user_id = ${user.id}`), [], 'no session before verification');

      const verifyMark = await auditMark(h);
      const verified = await verify(verifyToken);
      assert.equal(verified.statusCode, 204, verified.body);
      const verifiedEvent = (await auditSince(h, verifyMark)).find((event) => event.action === 'auth.email.verify');
      assert.deepEqual([verifiedEvent?.outcome, verifiedEvent?.actor_id, verifiedEvent?.details], ['success', user.id, { passwordSet: true }]);
      const before = await state(h);
      assertProblem(await verify(verifyToken, 'an entirely different passphrase'), 400, 'invalid-token');
      assert.equal(await state(h), before, 'single use');

      const login = await h.request({ method: 'POST', url: '/api/v1/auth/login', body: { email, password: PASSWORD } });
      const challengeToken = assertProblem(login, 401, 'second-factor-enrollment-required').challengeToken as string;
      const enrolled = await h.request({ method: 'POST', url: '/api/v1/auth/totp/enroll', body: { challengeToken } });
      assert.equal(enrolled.statusCode, 200, enrolled.body);
      const confirmed = await h.request({ method: 'POST', url: '/api/v1/auth/totp/confirm', body: { challengeToken, code: totpCode(secretFromUri(enrolled.json().otpauthUri)) } });
      assert.equal(confirmed.statusCode, 200, confirmed.body);
      const accessToken = confirmed.json().accessToken as string;
      const claims = JSON.parse(Buffer.from(accessToken.split('.')[1]!, 'base64url').toString());
      assert.equal(claims.role, 'user');
      assert.equal(claims.tenant, null);

      assert.equal((await h.request({ method: 'GET', url: '/api/v1/auth/sessions', token: accessToken })).statusCode, 200);
      const deniedMark = await auditMark(h);
      assertProblem(await h.request({ method: 'GET', url: '/api/v1/tenants', token: accessToken }), 403, 'forbidden');
      assert.ok((await auditSince(h, deniedMark)).some((event) => event.action === 'access.denied' && event.actor_id === user.id));
    });

    test('an older client that still sends a password at signup gets the same 202; that password is never stored', async () => {
      const email = `legacy-${randomUUID()}@example.test`;
      const legacy = await h.request({ method: 'POST', url: '/api/v1/auth/signup', body: { email, password: 'the legacy client password 1' } });
      assert.equal(legacy.statusCode, 202, legacy.body);
      assert.deepEqual(legacy.json(), { status: 'verification-sent' });
      const token = verificationToken(await smtp.nthMessage(email, 1));
      const [row] = await queryRows<{ password_hash: string | null }>(h.db, sql`select password_hash from users where id = (select user_id from user_tokens where token_hash = ${sha256(token)})`);
      assert.equal(row!.password_hash, null);
      // Its verification must choose the password now; the old body alone names what is missing.
      const withoutPassword = await h.request({ method: 'POST', url: '/api/v1/auth/verify-email', body: { token } });
      assert.match(assertProblem(withoutPassword, 400, 'validation-failed').detail, /password/);
      assert.equal((await verify(token)).statusCode, 204);
      assertProblem(await h.request({ method: 'POST', url: '/api/v1/auth/login', body: { email, password: 'the legacy client password 1' } }), 401, 'invalid-credentials');
    });

    test('signing up with a verified address answers the same 202, changes nothing and sends no link, only a note', async () => {
      const email = `twice-${randomUUID()}@example.test`;
      const first = await signup(email);
      assert.equal(first.statusCode, 202);
      assert.equal((await verify(verificationToken(await smtp.nthMessage(email, 1)))).statusCode, 204);

      const before = await state(h);
      const mark = await auditMark(h);
      const again = await signup(email.toUpperCase());
      assert.equal(again.statusCode, 202);
      assert.equal(again.body, first.body, 'indistinguishable answer');
      assert.equal(again.headers['content-type'], first.headers['content-type']);
      // The owner gets a note (docs/identity.md), never a second verification link.
      const note = await smtp.nthMessage(email, 2);
      assert.doesNotMatch(note.text, /cgv_/);
      assert.doesNotMatch(note.raw, /cgv_/);
      assert.equal(await state(h), before, 'no second account, no new token, the user untouched');
      const event = (await auditSince(h, mark)).find((candidate) => candidate.action === 'auth.signup');
      assert.equal(event?.outcome, 'denied');
      assert.equal(event?.details.reason, 'email-taken');
    });

    test('a weak password at verification is refused and the link stays usable; bad tokens change nothing', async () => {
      const email = `weak-${randomUUID()}@example.test`;
      assert.equal((await signup(email)).statusCode, 202);
      const token = verificationToken(await smtp.nthMessage(email, 1));
      const before = await state(h);
      const weak: Array<[string, string]> = [
        ['short pw 1', 'too-short'],
        ['password1234', 'common'],
        [`my address is ${email}`, 'contains-email'],
        ['x'.repeat(129), 'too-long'],
      ];
      for (const [password, rule] of weak) {
        const refused = await verify(token, password);
        assert.equal(assertProblem(refused, 400, 'weak-password').rule, rule, password);
        assert.ok(!refused.body.includes(password), 'the password is not echoed');
      }
      for (const stray of [`cgv_${randomBytes(32).toString('base64url')}`, `cgs_${randomBytes(32).toString('base64url')}`, 'nonsense']) {
        assertProblem(await verify(stray), 400, 'invalid-token');
      }
      assert.equal(await state(h), before);
      assert.equal((await verify(token)).statusCode, 204, 'the link was not spent by the refusals');
    });
  });
});

function sha256(value: string): string {
  return createHash('sha256').update(value).digest('hex');
}

function verificationToken(message: ReceivedEmail): string {
  return verificationTokenIn(message.text);
}
