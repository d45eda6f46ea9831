import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { queryRows } from '../../src/store/connection.js';
import { auditMark, auditSince } from '../helpers/audit.js';
import { describeEachBackend } from '../helpers/database.js';
import { PASSWORD, type IdentityHarness, type SignedSession } from '../helpers/identity.js';
import { openSignupHarness, type OpenSignupHarness, verificationTokenIn } from '../helpers/open-signup.js';
import { assertProblem } from '../helpers/problems.js';
import { type SmtpTestServer } from '../helpers/smtp.js';

/**
 * Guards issue #13 item 3, second half. Unverified self-registrations never expired, and one
 * squatting an address made the admin's `POST /users` (and `ciphergate users create`) for it
 * answer 409 for ever. Now a pending signup lives CIPHERGATE_SIGNUP_PENDING_HOURS (24): after
 * that its link is refused, a new signup or an invite replaces it at once, and `serve`'s hourly
 * sweep removes it (`Accounts.removeExpiredSignups`). An invite for a pending address takes it
 * over at any age: the pending account and its link are gone.
 */

const HOUR_MS = 3_600_000;

/**
 * Signs `email` up and returns the pending account's id and the link's token. The body carries a
 * password as older clients send it (and as a squatter would): it is ignored.
 */
async function pendingSignup(h: IdentityHarness, smtp: SmtpTestServer, email: string, nth = 1): Promise<{ userId: string; token: string }> {
  assert.equal((await h.request({ method: 'POST', url: '/api/v1/auth/signup', body: { email, password: 'a squatter chose this 1' } })).statusCode, 202);
  const token = verificationTokenIn((await smtp.nthMessage(email, nth)).text);
  const [row] = await queryRows<{ user_id: string }>(h.db, sql`select user_id from user_tokens where token_hash = ${createHash('sha256').update(token).digest('hex')}`);
  return { userId: row!.user_id, token };
}

/** Moves a pending signup (and its link) `ms` into the past. */
async function age(h: IdentityHarness, userId: string, ms: number): Promise<void> {
  const interval = `${Math.round(ms / 1000)} seconds`;
  await h.db.execute(sql`update users set created_at = created_at - ${interval}::interval, updated_at = updated_at - ${interval}::interval where id = ${userId}`);
  await h.db.execute(sql`update user_tokens set created_at = created_at - ${interval}::interval, expires_at = expires_at - ${interval}::interval where user_id = ${userId}`);
}

const userExists = async (h: IdentityHarness, id: string) => (await queryRows(h.db, sql`select id from users where id = ${id}`)).length === 1;

await describeEachBackend('regression: pending signups expire and admin invites take them over', (backend) => {
  describe('with the default 24 hours', () => {
    let setup: OpenSignupHarness;
    let h: IdentityHarness;
    let admin: SignedSession;
    let adminId: string;

    before(async () => {
      setup = await openSignupHarness(backend);
      h = setup.h;
      const user = await h.createUser({ role: 'admin' });
      adminId = user.id;
      admin = await h.signIn(user);
    });
    after(() => setup?.close());

    const invite = (email: string, role = 'employee') => h.request({ method: 'POST', url: '/api/v1/users', token: admin.accessToken, body: { email, role } });
    const verify = (token: string) => h.request({ method: 'POST', url: '/api/v1/auth/verify-email', body: { token, password: PASSWORD } });

    test('POST /users for an address with a pending signup takes it over: 201, the pending account and its link are gone, audited', async () => {
      const email = `squatted-${randomUUID()}@example.test`;
      const pending = await pendingSignup(h, setup.smtp, email);
      const mark = await auditMark(h);
      const invited = await invite(email.toUpperCase(), 'manager');
      assert.equal(invited.statusCode, 201, invited.body);
      const { user, setupToken } = invited.json() as { user: { id: string; role: string; status: string }; setupToken: string };
      assert.deepEqual([user.role, user.status], ['manager', 'pending']);
      assert.notEqual(user.id, pending.userId);
      assert.equal(await userExists(h, pending.userId), false);
      assertProblem(await verify(pending.token), 400, 'invalid-token');
      const created = (await auditSince(h, mark)).find((event) => event.action === 'user.create');
      assert.deepEqual(
        { outcome: created?.outcome, actor: created?.actor_id, target: created?.target_id, details: created?.details },
        { outcome: 'success', actor: adminId, target: user.id, details: { role: 'manager', via: 'api', replacedSignup: pending.userId } },
      );
      // The invited person sets the password with the setup token, as any invite.
      assert.equal((await h.request({ method: 'POST', url: '/api/v1/auth/setup', body: { setupToken, password: PASSWORD } })).statusCode, 200);
    });

    test('users create (the CLI use case) takes a pending address over too', async () => {
      const email = `cli-${randomUUID()}@example.test`;
      const pending = await pendingSignup(h, setup.smtp, email);
      const created = await h.accounts.createUserWithPassword({ email, role: 'employee', tenantId: null, password: PASSWORD });
      assert.equal(created.status, 'active');
      assert.equal(await userExists(h, pending.userId), false);
      assertProblem(await verify(pending.token), 400, 'invalid-token');
      const [event] = await queryRows<{ details: Record<string, unknown> }>(h.db, sql`select details from audit_events where action = 'user.create' and target_id = ${created.id}`);
      assert.deepEqual(event!.details, { role: 'employee', via: 'cli', replacedSignup: pending.userId });
    });

    test('an invite never takes over a real account: an active or invited address is still 409', async () => {
      const email = `real-${randomUUID()}@example.test`;
      const pending = await pendingSignup(h, setup.smtp, email);
      assert.equal((await verify(pending.token)).statusCode, 204);
      assertProblem(await invite(email), 409, 'email-taken');
      assert.equal(await userExists(h, pending.userId), true);
      const invitedEmail = `invited-${randomUUID()}@example.test`;
      assert.equal((await invite(invitedEmail)).statusCode, 201);
      assertProblem(await invite(invitedEmail), 409, 'email-taken');
    });

    test('after 24 hours the link is refused; a new signup replaces the expired one at once', async () => {
      const email = `late-${randomUUID()}@example.test`;
      const expired = await pendingSignup(h, setup.smtp, email);
      await age(h, expired.userId, 24 * HOUR_MS + 1000);
      assertProblem(await verify(expired.token), 400, 'invalid-token');
      const again = await pendingSignup(h, setup.smtp, email, 2);
      assert.equal(await userExists(h, expired.userId), false);
      assert.equal((await verify(again.token)).statusCode, 204);
    });

    test('the sweep removes expired signups only, with one audit event counting them', async () => {
      const expiredOne = await pendingSignup(h, setup.smtp, `sweep-a-${randomUUID()}@example.test`);
      const expiredTwo = await pendingSignup(h, setup.smtp, `sweep-b-${randomUUID()}@example.test`);
      const fresh = await pendingSignup(h, setup.smtp, `sweep-c-${randomUUID()}@example.test`);
      await age(h, expiredOne.userId, 25 * HOUR_MS);
      await age(h, expiredTwo.userId, 24 * HOUR_MS + 1000);
      await age(h, fresh.userId, 23 * HOUR_MS);
      // Old accounts of every other kind stay, however old.
      const invited = (await invite(`old-invite-${randomUUID()}@example.test`)).json().user.id as string;
      const active = (await h.createUser({ role: 'employee' })).id;
      await age(h, invited, 90 * 24 * HOUR_MS);
      await age(h, active, 90 * 24 * HOUR_MS);

      const mark = await auditMark(h);
      assert.equal(await h.accounts.removeExpiredSignups(), 2);
      assert.deepEqual(
        await Promise.all([expiredOne, expiredTwo, fresh].map((signup) => userExists(h, signup.userId))),
        [false, false, true],
      );
      assert.equal(await userExists(h, invited), true);
      assert.equal(await userExists(h, active), true);
      const events = await auditSince(h, mark);
      assert.deepEqual(
        events.map((event) => [event.action, event.actor_type, event.outcome, event.details]),
        [['auth.signup.expire', 'system', 'success', { count: 2 }]],
      );
      assert.equal(await h.accounts.removeExpiredSignups(), 0);
      assert.equal((await auditSince(h, mark)).length, 1, 'a sweep that removes nothing writes nothing');
      assert.equal((await verify(fresh.token)).statusCode, 204, 'the unexpired one still verifies');
    });
  });

  describe('with CIPHERGATE_SIGNUP_PENDING_HOURS=1', () => {
    let setup: OpenSignupHarness;

    before(async () => {
      setup = await openSignupHarness(backend, { env: { CIPHERGATE_SIGNUP_PENDING_HOURS: '1' } });
    });
    after(() => setup?.close());

    test('the link lives one hour, the email says so, and a signup older than the setting is refused', async () => {
      const { h, smtp } = setup;
      const email = `hour-${randomUUID()}@example.test`;
      const pending = await pendingSignup(h, smtp, email);
      assert.match((await smtp.nthMessage(email, 1)).text, /expires 1 hour after/);
      const [token] = await queryRows<{ lifetime_ms: number }>(
        h.db,
        sql`select (extract(epoch from (expires_at - created_at)) * 1000)::int as lifetime_ms from user_tokens where user_id = ${pending.userId}`,
      );
      assert.equal(token!.lifetime_ms, HOUR_MS);
      // Only the account is moved back: the link's own expiry is not what refuses it.
      await h.db.execute(sql`update users set created_at = created_at - interval '61 minutes' where id = ${pending.userId}`);
      assertProblem(await h.request({ method: 'POST', url: '/api/v1/auth/verify-email', body: { token: pending.token, password: PASSWORD } }), 400, 'invalid-token');
      assert.equal(await h.accounts.removeExpiredSignups(), 1);
    });
  });
});
