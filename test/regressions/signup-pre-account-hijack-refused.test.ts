import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { sql } from 'drizzle-orm';
import { queryRows } from '../../src/store/connection.js';
import { auditMark, auditSince } from '../helpers/audit.js';
import { describeEachBackend, tablesState } from '../helpers/database.js';
import { type IdentityHarness } from '../helpers/identity.js';
import { freshAddresses } from '../helpers/addresses.js';
import { useOpenSignupHarness, verificationTokenIn } from '../helpers/open-signup.js';
import { assertProblem } from '../helpers/problems.js';
import { type SmtpTestServer } from '../helpers/smtp.js';

/**
 * Guards issue #13 item 3 (pre-account hijacking, Sudhodanan & Paverd, USENIX Security 2022).
 * With CIPHERGATE_SIGNUP=open an attacker signed up with the victim's address and a password of
 * their own; the verification link went to the victim, who followed it, and from then on the
 * attacker's password signed in to the victim's account.
 *
 * Now a pending signup holds no password at all: it is chosen at verification, by whoever
 * holds the inbox, so the password of whoever asked for the signup never signs in. A new signup
 * for a pending address replaces it (the older link dies), and a signup for a verified address
 * answers exactly like a fresh one and changes nothing.
 */

const ATTACKER_PASSWORD = 'attacker chosen passphrase 1337';
const VICTIM_PASSWORD = 'the victim picks this one 2026';

await describeEachBackend('regression: open signup cannot pre-hijack an account', (backend) => {
  let h: IdentityHarness;
  let smtp: SmtpTestServer;
  useOpenSignupHarness(backend, (signups) => ({ h, smtp } = signups));

  const freshIp = freshAddresses('10.64');
  const login = (email: string, password: string) => h.request({ method: 'POST', url: '/api/v1/auth/login', body: { email, password }, remoteAddress: freshIp() });
  const linkTo = async (email: string, nth = 1) => verificationTokenIn((await smtp.nthMessage(email, nth)).text);
  const verify = (body: Record<string, unknown>) => h.request({ method: 'POST', url: '/api/v1/auth/verify-email', body });
  const state = () => tablesState(h, ['users', 'user_tokens', 'sessions']);

  test("the attacker's signup password never signs in, before or after the victim verifies; the victim's choice does", async () => {
    const victim = `victim-${randomUUID()}@example.test`;
    // The attacker's client sends a password, as signup bodies used to.
    const squat = await h.request({ method: 'POST', url: '/api/v1/auth/signup', body: { email: victim, password: ATTACKER_PASSWORD } });
    assert.equal(squat.statusCode, 202, squat.body);
    const link = await linkTo(victim);

    const [pending] = await queryRows<{ status: string; password_hash: string | null }>(h.db, sql`select status, password_hash from users where id = (select user_id from user_tokens where token_hash = ${sha256(link)})`);
    assert.deepEqual({ ...pending }, { status: 'unverified', password_hash: null }, 'the pending signup holds no password');
    assertProblem(await login(victim, ATTACKER_PASSWORD), 401, 'invalid-credentials');

    // The victim follows the link in their inbox and chooses their own password there.
    const verified = await verify({ token: link, password: VICTIM_PASSWORD });
    assert.equal(verified.statusCode, 204, verified.body);

    assertProblem(await login(victim, ATTACKER_PASSWORD), 401, 'invalid-credentials');
    assertProblem(await login(victim, VICTIM_PASSWORD), 401, 'second-factor-enrollment-required');

    // Neither the logs (request logs at info) nor the audit trail hold the address, the link or a password.
    const recorded = h.logs.text() + JSON.stringify(await queryRows(h.db, sql`select * from audit_events`));
    for (const secret of [victim, link, link.slice(4), ATTACKER_PASSWORD, VICTIM_PASSWORD]) assert.ok(!recorded.includes(secret), 'nothing personal or secret is recorded');
  });

  test('verification without a password (or an oversized one) is refused (400) and spends nothing; a forged, tampered or replayed link is invalid-token', async () => {
    const email = `nopass-${randomUUID()}@example.test`;
    assert.equal((await h.request({ method: 'POST', url: '/api/v1/auth/signup', body: { email, password: ATTACKER_PASSWORD } })).statusCode, 202);
    const link = await linkTo(email);
    const before = await state();
    const missing = await verify({ token: link });
    assert.match(assertProblem(missing, 400, 'validation-failed').detail, /password/);
    assertProblem(await verify({ token: link, password: 'x'.repeat(10_000) }), 400, 'validation-failed');
    assertProblem(await verify({ token: link, password: ['an', 'array'] }), 400, 'validation-failed');
    const forged = `cgv_${randomBytes(32).toString('base64url')}`;
    const tampered = `${link.slice(0, -1)}${link.endsWith('A') ? 'B' : 'A'}`;
    for (const token of [forged, tampered, link.toUpperCase(), `cgs_${link.slice(4)}`]) assertProblem(await verify({ token, password: VICTIM_PASSWORD }), 400, 'invalid-token');
    assert.equal(await state(), before, 'nothing changed');
    assert.equal((await verify({ token: link, password: VICTIM_PASSWORD })).statusCode, 204);
    const replay = await verify({ token: link, password: ATTACKER_PASSWORD });
    assertProblem(replay, 400, 'invalid-token');
    assertProblem(await login(email, ATTACKER_PASSWORD), 401, 'invalid-credentials');
  });

  test('a second signup for a pending address replaces it: the first link and account die, the newest works', async () => {
    const email = `again-${randomUUID()}@example.test`;
    assert.equal((await h.request({ method: 'POST', url: '/api/v1/auth/signup', body: { email, password: ATTACKER_PASSWORD } })).statusCode, 202);
    const first = await linkTo(email);
    const [firstUser] = await queryRows<{ id: string }>(h.db, sql`select user_id as id from user_tokens where token_hash = ${sha256(first)}`);
    const mark = await auditMark(h);
    assert.equal((await h.request({ method: 'POST', url: '/api/v1/auth/signup', body: { email: email.toUpperCase(), password: VICTIM_PASSWORD } })).statusCode, 202);
    const second = await linkTo(email, 2);
    assert.notEqual(second, first);

    assertProblem(await verify({ token: first, password: ATTACKER_PASSWORD }), 400, 'invalid-token');
    assert.deepEqual(await queryRows(h.db, sql`select id from users where id = ${firstUser!.id}`), [], 'the first pending account is gone');
    assert.equal((await verify({ token: second, password: VICTIM_PASSWORD })).statusCode, 204);
    const replaced = (await auditSince(h, mark)).find((event) => event.action === 'auth.signup');
    assert.deepEqual([replaced?.outcome, replaced?.details.replacedPending], ['success', firstUser!.id], 'the audit names the replaced signup by id');
  });

  test('a signup for a verified address answers like a fresh one and leaves that user exactly as it was', async () => {
    const owner = await h.createUser({ role: 'employee' });
    const freshEmail = `fresh-${randomUUID()}@example.test`;
    const fresh = await h.request({ method: 'POST', url: '/api/v1/auth/signup', body: { email: freshEmail } });
    // Its work (after the answer) is done once its email is out; the marks below then see only the taken one.
    await linkTo(freshEmail);
    const before = await queryRows(h.db, sql`select * from users where id = ${owner.id}`);
    const tokensBefore = await queryRows(h.db, sql`select * from user_tokens where user_id = ${owner.id}`);
    const mark = await auditMark(h);
    const taken = await h.request({ method: 'POST', url: '/api/v1/auth/signup', body: { email: owner.email, password: ATTACKER_PASSWORD } });
    assert.equal(taken.statusCode, fresh.statusCode);
    assert.equal(taken.body, fresh.body);
    assert.equal(taken.headers['content-type'], fresh.headers['content-type']);
    const note = await smtp.nthMessage(owner.email, 1);
    assert.doesNotMatch(note.raw, /cgv_/, 'no verification link for a taken address');
    assert.deepEqual(await queryRows(h.db, sql`select * from users where id = ${owner.id}`), before, 'the user row is untouched');
    assert.deepEqual(await queryRows(h.db, sql`select * from user_tokens where user_id = ${owner.id}`), tokensBefore);
    assertProblem(await login(owner.email, ATTACKER_PASSWORD), 401, 'invalid-credentials');
    const event = (await auditSince(h, mark)).find((candidate) => candidate.action === 'auth.signup' && candidate.target_id === owner.id);
    assert.deepEqual([event?.outcome, event?.details], ['denied', { reason: 'email-taken' }]);
    assert.ok(!JSON.stringify(await auditSince(h, mark)).includes(owner.email), 'no address in the audit trail');
  });
});

function sha256(value: string): string {
  return createHash('sha256').update(value).digest('hex');
}
