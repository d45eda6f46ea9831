import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { firstDuplicateKey } from '../../src/http/json-body.js';
import { queryRows } from '../../src/store/connection.js';
import { describeEachBackend } from '../helpers/database.js';
import { openIdentityHarness, type IdentityHarness } from '../helpers/identity.js';
import { assertProblem } from '../helpers/problems.js';

// `{"role":"employee","role":"admin"}` was read as admin (JSON.parse keeps the last key) while
// a proxy's rule, a log reader or another parser may keep the first: one body, two meanings.
// A body that names a key twice in one object is now refused with 400, naming the key, and
// changes nothing. The prototype-poisoning refusal (`__proto__`, `constructor.prototype`) stays.
await describeEachBackend('regression: duplicate JSON keys are refused', (backend) => {
  let h: IdentityHarness;
  let admin: string;
  before(async () => {
    h = await openIdentityHarness(backend);
    admin = (await h.signIn(await h.createUser({ role: 'admin' }))).accessToken;
  });
  after(() => h?.close());

  const usersWithRole = async (role: string) => (await queryRows<{ n: number }>(h.db, sql`select count(*)::int as n from users where role = ${role}`))[0]!.n;
  const raw = (payload: string) =>
    h.app.inject({ method: 'POST', url: '/api/v1/users', payload, headers: { 'content-type': 'application/json', authorization: `Bearer ${admin}` } });

  test('a repeated key, spelled the same or escaped, with equal or different values → 400 naming it; no user is created', async () => {
    const adminsBefore = await usersWithRole('admin');
    const employeesBefore = await usersWithRole('employee');
    const bodies = [
      { payload: '{"email":"dup1@example.test","role":"employee","role":"admin"}', key: 'role' },
      { payload: '{"email":"dup2@example.test","role":"admin","\\u0072ole":"employee"}', key: 'role' },
      { payload: '{"email":"dup3@example.test","role":"employee","role":"employee"}', key: 'role' },
      { payload: '{"email":"dup4@example.test","email":"other@example.test","role":"employee"}', key: 'email' },
    ];
    for (const { payload, key } of bodies) {
      const problem = assertProblem(await raw(payload), 400, 'malformed-body');
      assert.match(problem.detail, new RegExp(`"${key}"`), payload);
      assert.deepEqual(problem.errors, [{ in: 'body', field: key, message: 'duplicate key' }], payload);
    }
    assert.equal(await usersWithRole('admin'), adminsBefore, 'no admin was created');
    assert.equal(await usersWithRole('employee'), employeesBefore, 'no employee was created');
  });

  test('prototype poisoning is still refused, and a clean body still creates the user', async () => {
    const adminsBefore = await usersWithRole('admin');
    for (const payload of [
      '{"email":"proto@example.test","role":"employee","__proto__":{"role":"admin"}}',
      '{"email":"ctor@example.test","role":"employee","constructor":{"prototype":{"role":"admin"}}}',
    ]) {
      const answer = await raw(payload);
      assert.equal(answer.statusCode, 400, answer.body);
      assert.match(String(answer.headers['content-type']), /^application\/problem\+json/);
    }
    assert.equal(await usersWithRole('admin'), adminsBefore, 'no admin was created');
    assert.equal((await raw('{"email":"clean@example.test","role":"employee"}')).statusCode, 201);
  });

  test('an oversized key is cut in the answer, not echoed whole', async () => {
    const long = 'k'.repeat(5000);
    const problem = assertProblem(await raw(`{"${long}":1,"${long}":2}`), 400, 'malformed-body');
    assert.ok(JSON.stringify(problem).length < 1000, 'the answer stays small');
  });
});

describe('firstDuplicateKey', () => {
  test('finds a duplicate at any depth and says where; keys of different objects do not clash', () => {
    assert.equal(firstDuplicateKey('{"a":1,"b":{"a":2},"c":[{"a":3},{"a":4}]}'), undefined);
    assert.deepEqual(firstDuplicateKey('{"a":{"b":[1,{"c":1,"d":2,"c":3}]}}'), { key: 'c', path: ['a', 'b', 1] });
    assert.deepEqual(firstDuplicateKey('[{"x":1},{"y":1,"y":2}]'), { key: 'y', path: [1] });
    assert.deepEqual(firstDuplicateKey('{"a":{"z":1},"a":{"z":1}}'), { key: 'a', path: [] });
    assert.equal(firstDuplicateKey('"just a string"'), undefined);
  });
});
