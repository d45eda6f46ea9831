import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { buildApp } from '../../src/http/app.js';
import { fullRouteCatalogue, permissionsReference } from '../../src/http/permissions-reference.js';
import { PERMISSIONS } from '../../src/identity/permissions.js';
import { openIdentityHarness, type IdentityHarness } from '../helpers/identity.js';
import { captureLogs } from '../helpers/log-capture.js';

describe('docs/permissions.md', () => {
  test('is what the matrix and the registered routes generate (run `npm run docs:permissions`)', async () => {
    const expected = permissionsReference(await fullRouteCatalogue());
    assert.equal(readFileSync(new URL('../../docs/permissions.md', import.meta.url), 'utf8'), expected);
  });
});

describe('every route of the full app declares its access (deny by default)', () => {
  let harness: IdentityHarness;
  before(async () => {
    harness = await openIdentityHarness('pglite');
  });
  after(async () => harness.close());

  test('public routes give a reason; the others name a permission of the matrix', () => {
    assert.ok(harness.app.routeCatalogue.length >= 30, 'the identity routes are registered');
    for (const route of harness.app.routeCatalogue) {
      if ('public' in route.access) assert.ok(route.access.reason.length >= 10, `${route.url} explains why it is public`);
      else assert.ok(Object.hasOwn(PERMISSIONS, route.access.permission), `${route.url}: ${route.access.permission}`);
    }
  });

  test('each permission route refuses a request without credentials with 401 problem+json, before its handler or validation runs', async () => {
    const guarded = harness.app.routeCatalogue.filter((route) => 'permission' in route.access && route.method !== 'HEAD');
    assert.ok(guarded.length >= 15);
    for (const route of guarded) {
      const url = route.url.replace(':id', '00000000-0000-4000-8000-000000000000').replace(':slug', 'acme');
      const response = await harness.request({ method: String(route.method), url, ...(route.method === 'GET' || route.method === 'DELETE' ? {} : { body: { anything: 'x' } }) });
      if (route.url.startsWith('/console')) {
        // A console page is read by a person: the refusal is the sign-in page, not a problem document.
        assert.equal(response.statusCode, 303, `${String(route.method)} ${route.url}`);
        assert.equal(response.headers.location, '/console');
        continue;
      }
      assert.equal(response.statusCode, 401, `${String(route.method)} ${route.url}`);
      assert.match(String(response.headers['content-type']), /^application\/problem\+json/);
      assert.equal(response.json().type, 'unauthenticated');
      assert.match(String(response.headers['www-authenticate']), /^Bearer/);
    }
  });

  test('a route naming a permission that is not in the matrix stops start-up', async () => {
    await assert.rejects(
      buildApp({
        config: { publicUrl: 'http://127.0.0.1:8080', trustProxy: [], bodyLimitBytes: 1024 * 1024 },
        logger: captureLogs().logger,
        routes: [(app) => void app.get('/typo', { config: { access: { permission: 'users:raed' } } }, async () => ({}))],
      }),
      /unknown permission "users:raed"/,
    );
  });

  test('without an identity, a permission route is 401 for everyone', async () => {
    const app = await buildApp({
      config: { publicUrl: 'http://127.0.0.1:8080', trustProxy: [], bodyLimitBytes: 1024 * 1024 },
      logger: captureLogs().logger,
      routes: [(app) => void app.get('/guarded', { config: { access: { permission: 'users:read' } } }, async () => ({ leaked: true }))],
    });
    const response = await app.inject({ method: 'GET', url: '/guarded', headers: { authorization: 'Bearer anything' } });
    assert.equal(response.statusCode, 401);
    assert.doesNotMatch(response.body, /leaked/);
    await app.close();
  });
});
