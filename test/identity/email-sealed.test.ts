import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { SYSTEM_SCOPE } from '../../src/seal/binding.js';
import { queryRows } from '../../src/store/connection.js';
import { usersSealed } from '../../src/store/sealed-tables.js';
import { describeEachBackend, tablesState } from '../helpers/database.js';
import { openIdentityHarness, type IdentityHarness } from '../helpers/identity.js';
import { assertProblem } from '../helpers/problems.js';

/**
 * Emails are sealed in the users table and found again by their blind index only: the raw
 * bytes hold no address, a lookup (any case) never opens a row, and one address is one user.
 */

const state = (h: IdentityHarness) => tablesState(h, ['users', 'user_tokens']);

await describeEachBackend('sealed user emails', (backend) => {
  let h: IdentityHarness;
  let adminToken: string;

  before(async () => {
    h = await openIdentityHarness(backend);
    adminToken = (await h.signIn(await h.createUser({ role: 'admin' }))).accessToken;
  });
  after(async () => h.close());

  /** A distinctive address, as typed (mixed case) and as stored (normalised). */
  function address(): { typed: string; normalised: string; local: string } {
    const local = `Ada.Lovelace.${randomBytes(4).toString('hex')}`;
    const typed = `${local}@Analytical-Engine.Example`;
    return { typed, normalised: typed.toLowerCase(), local: local.toLowerCase() };
  }

  test('the users table holds no plaintext address, only an envelope and a keyed blind index', async () => {
    const email = address();
    const created = await h.request({ method: 'POST', url: '/api/v1/users', token: adminToken, body: { email: email.typed, role: 'employee' } });
    assert.equal(created.statusCode, 201, created.body);
    const id = created.json().user.id as string;
    assert.equal(created.json().user.email, email.normalised, 'the API shows the address opened');

    const [row] = await queryRows<{ email: Uint8Array; email_index: Uint8Array }>(h.db, sql`select email, email_index from users where id = ${id}`);
    const sealed = Buffer.from(row!.email);
    const index = Buffer.from(row!.email_index);
    const needles = [email.typed, email.normalised, email.local, 'analytical-engine.example'];
    for (const needle of needles) {
      for (const encoding of ['utf8', 'utf16le', 'latin1'] as const) {
        assert.ok(!sealed.includes(Buffer.from(needle, encoding)), `sealed email contains ${needle} (${encoding})`);
        assert.ok(!sealed.includes(Buffer.from(needle.toUpperCase(), encoding)));
      }
      assert.ok(!sealed.toString('base64').includes(Buffer.from(needle).toString('base64').slice(0, 12)));
      assert.ok(!sealed.toString('hex').includes(Buffer.from(needle).toString('hex')));
    }
    assert.ok(sealed.length > email.normalised.length, 'an envelope, not the value');

    // The index is the keyed index of the normalised address, not a plain digest anyone could compute.
    const [expected] = h.identity.parts.fields.lookupIndexes(usersSealed, 'email', SYSTEM_SCOPE, email.typed);
    assert.deepEqual(index, Buffer.from(expected!));
    for (const algorithm of ['sha256', 'sha1', 'md5']) {
      const plain = createHash(algorithm).update(email.normalised).digest();
      assert.ok(!plain.subarray(0, index.length).equals(index), `not a bare ${algorithm}`);
    }

    // Nowhere else in clear either: the row as text, its setup token, the audit trail.
    for (const table of ['users', 'user_tokens', 'audit_events']) {
      const text = JSON.stringify(await queryRows(h.db, sql.raw(`select * from ${table}`)));
      const bytesAsText = Buffer.from(text).toString('utf8').toLowerCase();
      assert.ok(!bytesAsText.includes(email.normalised), `${table} holds the address`);
      assert.ok(!bytesAsText.includes(email.local), `${table} holds the local part`);
    }
    const dump = await queryRows<{ text: string }>(h.db, sql`select encode(email, 'escape') as text from users`);
    assert.ok(dump.every((entry) => !entry.text.toLowerCase().includes(email.local)));
  });

  test('a lookup goes by blind index, in any case, and never opens an email', async () => {
    const user = await h.createUser({ role: 'employee', email: address().typed });
    const sealer = h.identity.parts.fields.sealer;
    const opened: string[] = [];
    const original = sealer.open.bind(sealer);
    sealer.open = (ctx, value) => {
      opened.push(`${ctx.table}.${ctx.column}`);
      return original(ctx, value);
    };
    try {
      for (const variant of [user.email, user.email.toUpperCase(), `  ${user.email}  `]) {
        assert.equal((await h.identity.parts.users.findByEmail(variant))?.id, user.id, variant);
      }
      // Sign-in finds the account the same way, in any case, opening nothing.
      const wrong = await h.request({ method: 'POST', url: '/api/v1/auth/login', body: { email: user.email.toUpperCase(), password: 'not the password at all' } });
      assertProblem(wrong, 401, 'invalid-credentials');
      const right = await h.request({ method: 'POST', url: '/api/v1/auth/login', body: { email: user.email.toUpperCase(), password: user.password } });
      assertProblem(right, 401, 'second-factor-required');
      assert.deepEqual(opened.filter((where) => where.startsWith('users.')), [], 'no user email was opened');
      // The spy does see an opening when one happens: listing users shows their addresses.
      assert.equal((await h.request({ method: 'GET', url: '/api/v1/users', token: adminToken })).statusCode, 200);
      assert.ok(opened.includes('users.email'), 'control: the listing opened emails');
    } finally {
      sealer.open = original;
    }

    // The lookup reads only the index: with the sealed column unreadable, the user is still found.
    const [row] = await queryRows<{ email: Uint8Array }>(h.db, sql`select email from users where id = ${user.id}`);
    const saved = Buffer.from(row!.email);
    await h.db.execute(sql`update users set email = ${Buffer.from('garbage')} where id = ${user.id}`);
    try {
      assert.equal((await h.identity.parts.users.findByEmail(user.email.toUpperCase()))?.id, user.id);
    } finally {
      await h.db.execute(sql`update users set email = ${saved} where id = ${user.id}`);
    }
    const listed = (await h.request({ method: 'GET', url: '/api/v1/users', token: adminToken })).json().users as Array<{ id: string; email: string }>;
    assert.equal(listed.find((entry) => entry.id === user.id)?.email, user.email.toLowerCase());
  });

  test('a duplicate address, in any case, is 409 email-taken and creates nothing', async () => {
    const email = address();
    const first = await h.request({ method: 'POST', url: '/api/v1/users', token: adminToken, body: { email: email.typed, role: 'employee' } });
    assert.equal(first.statusCode, 201, first.body);
    for (const variant of [email.typed, email.normalised, email.typed.toUpperCase(), email.local + '@ANALYTICAL-ENGINE.example']) {
      const before = await state(h);
      const refused = await h.request({ method: 'POST', url: '/api/v1/users', token: adminToken, body: { email: variant, role: 'manager' } });
      assertProblem(refused, 409, 'email-taken');
      assert.ok(!refused.body.toLowerCase().includes(email.local), 'the answer does not echo the address');
      assert.equal(await state(h), before, variant);
    }
    // The same rule holds on the command-line path.
    await assert.rejects(h.accounts.createUserWithPassword({ email: email.typed.toUpperCase(), role: 'admin', tenantId: null, password: 'a long and unusual passphrase 42' }), { type: 'email-taken' });
  });
});
