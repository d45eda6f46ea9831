import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { queryRows } from '../../src/store/connection.js';
import { describeEachBackend } from '../helpers/database.js';
import { openIdentityHarness, type IdentityHarness } from '../helpers/identity.js';
import { assertProblem } from '../helpers/problems.js';

// Fastify's Ajv default (`coerceTypes: 'array'`) turned a JSON body's `["a@x"]`, `12345` or
// `true` into the string a schema asked for, and a lone string into the array it asked for: a
// client could send one type and have another stored, and two readers of one body (a proxy's
// rules, a log, us) disagree on what it said. JSON bodies are now validated as sent. The URL
// carries only text, so query parameters keep being read into their declared types, but a
// repeated parameter is refused instead of folded.
await describeEachBackend('regression: JSON body types are not coerced', (backend) => {
  let h: IdentityHarness;
  let admin: string;
  let tenantId: string;
  before(async () => {
    h = await openIdentityHarness(backend);
    admin = (await h.signIn(await h.createUser({ role: 'admin' }))).accessToken;
    tenantId = await h.createTenant();
  });
  after(() => h?.close());

  const count = async (table: 'users' | 'api_keys') => (await queryRows<{ n: number }>(h.db, sql`select count(*)::int as n from ${sql.identifier(table)}`))[0]!.n;
  const post = (url: string, body: unknown) => h.request({ method: 'POST', url, body, token: admin });

  test('a string field refuses an array, a number, a boolean and null; an array field refuses a lone string; nothing is written', async () => {
    const usersBefore = await count('users');
    const keysBefore = await count('api_keys');
    const attempts: Array<{ label: string; url: string; body: Record<string, unknown>; field: string; message: RegExp }> = [
      { label: 'email as a one-element array', url: '/api/v1/users', body: { email: ['coerced@example.test'], role: 'employee' }, field: 'email', message: /must be string/ },
      { label: 'key name as a number', url: '/api/v1/api-keys', body: { name: 12345, tenantId, scopes: ['tenants:read'] }, field: 'name', message: /must be string/ },
      { label: 'key name as a boolean', url: '/api/v1/api-keys', body: { name: true, tenantId, scopes: ['tenants:read'] }, field: 'name', message: /must be string/ },
      { label: 'key name as null', url: '/api/v1/api-keys', body: { name: null, tenantId, scopes: ['tenants:read'] }, field: 'name', message: /must be string/ },
      { label: 'scopes as a lone string', url: '/api/v1/api-keys', body: { name: 'lone', tenantId, scopes: 'tenants:read' }, field: 'scopes', message: /must be array/ },
      { label: 'role as a one-element array', url: '/api/v1/users', body: { email: 'role-array@example.test', role: ['employee'] }, field: 'role', message: /must be/ },
    ];
    for (const attempt of attempts) {
      const problem = assertProblem(await post(attempt.url, attempt.body), 400, 'validation-failed');
      const named = (problem.errors as Array<{ in: string; field: string; message: string }>).find((error) => error.field === attempt.field);
      assert.ok(named, `${attempt.label}: the problem names ${attempt.field}: ${JSON.stringify(problem)}`);
      assert.equal(named.in, 'body');
      assert.match(named.message, attempt.message, attempt.label);
    }
    assert.equal(await count('users'), usersBefore, 'no user was created');
    assert.equal(await count('api_keys'), keysBefore, 'no API key was created');

    // The same requests with the declared types go through: only the types were refused.
    assert.equal((await post('/api/v1/users', { email: 'typed@example.test', role: 'employee' })).statusCode, 201);
    const key = await post('/api/v1/api-keys', { name: '12345', tenantId, scopes: ['tenants:read'] });
    assert.equal(key.statusCode, 201, key.body);
    assert.equal(key.json().apiKey.name, '12345');
  });

  test('query parameters are still read into their declared types; a repeated one or a non-number is refused', async () => {
    const page = await h.request({ method: 'GET', url: '/api/v1/audit?limit=2&after=0', token: admin });
    assert.equal(page.statusCode, 200, page.body);
    assert.equal(page.json().entries.length, 2);
    assert.equal(typeof page.json().next, 'number');

    for (const query of ['limit=1&limit=2', 'limit=two', 'limit=1.5', 'after=-1', 'tenant=a&tenant=b']) {
      const answer = await h.request({ method: 'GET', url: `/api/v1/audit?${query}`, token: admin });
      const problem = assertProblem(answer, 400, 'validation-failed');
      assert.equal(problem.errors[0].in, 'querystring', query);
    }
  });
});
