import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import SwaggerParser from '@apidevtools/swagger-parser';
import { API_KEY_SCOPES } from '../../src/identity/permissions.js';
import { DocumentedStatuses } from '../helpers/documented-statuses.js';
import { describeEachBackend } from '../helpers/database.js';
import { openRelayHarness, type RelayHarness } from '../helpers/relay.js';

interface Operation {
  responses: Record<string, { description: string; content?: Record<string, { schema?: { $ref?: string } }> }>;
  security?: Array<Record<string, string[]>>;
  requestBody?: { content: Record<string, unknown> };
}

/**
 * The OpenAPI document drives a client: it validates as OpenAPI 3.1, lists every route of the
 * route table with its statuses, problem responses and credentials, describes the webhooks as
 * they answer, and Swagger UI serves it from our origin under a `'self'`-only policy.
 */
await describeEachBackend('the OpenAPI document', (backend) => {
  let harness: RelayHarness;
  let document: { paths: Record<string, Record<string, Operation>>; components: { schemas: Record<string, unknown>; securitySchemes: Record<string, unknown> } };
  before(async () => {
    harness = await openRelayHarness(backend);
    const response = await harness.request({ method: 'GET', url: '/docs/json' });
    assert.equal(response.statusCode, 200);
    document = response.json();
  });
  after(async () => harness?.close());

  /** The console's pages answer HTML to people and are left out of the document on purpose (docs/console.md lists them). */
  const isConsolePage = (url: string) => url === '/console' || url.startsWith('/console/');

  const operations = () =>
    Object.entries(document.paths).flatMap(([path, methods]) => Object.entries(methods).map(([method, operation]) => ({ path, method: method.toUpperCase(), operation })));

  test('validates as OpenAPI 3.1 (@apidevtools/swagger-parser)', async () => {
    // The parser dereferences in place: it gets a copy.
    await SwaggerParser.validate(structuredClone(document) as never);
  });

  test('every route of the route table is documented, with a description for every response and no "Default Response"', () => {
    const documented = new Set(operations().map(({ path, method }) => `${method} ${path}`));
    for (const route of harness.app.routeCatalogue) {
      if ('public' in route.access && route.url.startsWith('/docs')) continue;
      if (isConsolePage(route.url)) {
        const path = route.url.replace(/:([A-Za-z]+)/g, '{$1}');
        for (const method of [route.method].flat()) assert.ok(!documented.has(`${method} ${path}`), `${method} ${path} (a console page) is left out`);
        continue;
      }
      for (const method of [route.method].flat()) {
        if (method === 'HEAD') continue;
        const path = route.url.replace(/:([A-Za-z]+)/g, '{$1}');
        assert.ok(documented.has(`${method} ${path}`), `${method} ${path} is in the document`);
      }
    }
    for (const { path, method, operation } of operations()) {
      assert.ok(!('default' in operation.responses), `${method} ${path} has no catch-all response`);
      for (const [status, response] of Object.entries(operation.responses)) {
        assert.notEqual(response.description, 'Default Response', `${method} ${path} ${status} says what it is`);
      }
    }
  });

  test('every error status is problem+json with the shared Problem schema and names its problem types', () => {
    assert.ok(document.components.schemas.Problem, 'components.schemas.Problem');
    for (const { path, method, operation } of operations()) {
      for (const status of ['500', '503']) assert.ok(operation.responses[status], `${method} ${path} documents ${status}`);
      for (const [status, response] of Object.entries(operation.responses)) {
        if (Number(status) < 400) continue;
        assert.equal(response.content?.['application/problem+json']?.schema?.$ref, '#/components/schemas/Problem', `${method} ${path} ${status}`);
        assert.match(response.description, /of type `[a-z-]+`/, `${method} ${path} ${status} names its problem types`);
      }
    }
  });

  test('routes that take credentials name their security schemes; API-key scopes add the apiKey scheme', () => {
    assert.deepEqual(Object.keys(document.components.securitySchemes).sort(), ['accessToken', 'apiKey', 'sessionCookie']);
    for (const route of harness.app.routeCatalogue) {
      if (!('permission' in route.access) || isConsolePage(route.url)) continue;
      const path = route.url.replace(/:([A-Za-z]+)/g, '{$1}');
      for (const method of [route.method].flat().filter((method) => method !== 'HEAD')) {
        const operation = document.paths[path]![method.toLowerCase()]!;
        const schemes = (operation.security ?? []).flatMap((requirement) => Object.keys(requirement)).sort();
        const expected: string[] = (API_KEY_SCOPES as readonly string[]).includes(route.access.permission) ? ['accessToken', 'apiKey', 'sessionCookie'] : ['accessToken', 'sessionCookie'];
        assert.deepEqual(schemes, expected, `${method} ${path}`);
        for (const status of ['401', '403']) assert.ok(operation.responses[status], `${method} ${path} documents ${status}`);
      }
    }
    assert.equal(document.paths['/healthz']!.get!.security, undefined, 'a public route takes no credential');
  });

  test('webhooks are described as they answer: TwiML, 204, 403, 413, 429, and their signed bodies', () => {
    const sms = document.paths['/webhooks/twilio/{tenant}/sms']!.post!;
    assert.ok(sms.responses['200']!.content!['text/xml']);
    assert.ok(sms.requestBody!.content['application/x-www-form-urlencoded']);
    for (const path of ['/webhooks/twilio/{tenant}/status', '/webhooks/podium/{tenant}', '/webhooks/airtable/{tenant}']) {
      const operation = document.paths[path]!.post!;
      assert.ok(operation.responses['204'], `${path} 204`);
      assert.equal(operation.responses['200'], undefined, `${path} never answers 200`);
    }
    for (const path of ['/webhooks/twilio/{tenant}/sms', '/webhooks/twilio/{tenant}/status', '/webhooks/podium/{tenant}', '/webhooks/airtable/{tenant}']) {
      const operation = document.paths[path]!.post!;
      for (const status of ['403', '413', '429']) assert.ok(operation.responses[status], `${path} ${status}`);
      assert.match(operation.responses['403']!.description, /`webhook-rejected`/);
    }
    assert.ok(document.paths['/webhooks/podium/{tenant}']!.post!.requestBody!.content['application/json']);
  });

  test('Swagger UI at /docs from our origin only, under a policy with no inline script and no third-party origin', async () => {
    const page = await harness.request({ method: 'GET', url: '/docs' });
    assert.equal(page.statusCode, 200);
    assert.match(String(page.headers['content-type']), /^text\/html/);
    const policy = String(page.headers['content-security-policy']);
    assert.match(policy, /script-src 'self'(;|$)/);
    assert.doesNotMatch(policy, /unsafe-inline|unsafe-eval|https?:|\*/);
    assert.match(policy, /frame-ancestors 'none'/);
    // Every script and stylesheet the page names is ours and is served.
    const assets = [...page.body.matchAll(/(?:src|href)="([^"]+)"/g)].map((match) => match[1]!);
    assert.ok(assets.length >= 3);
    assert.doesNotMatch(page.body, /<script>(?!\s*<\/script>)|<script(?![^>]*\bsrc=)[^>]*>[^<]+<\/script>/, 'no inline script');
    for (const asset of assets) {
      assert.ok(asset.startsWith('/docs/static/'), asset);
      const served = await harness.request({ method: 'GET', url: asset });
      assert.equal(served.statusCode, 200, asset);
    }
    const initializer = await harness.request({ method: 'GET', url: '/docs/static/swagger-initializer.js' });
    assert.match(initializer.body, /validatorUrl: null/, 'no validator badge from validator.swagger.io');
    assert.equal(JSON.parse((await harness.request({ method: 'GET', url: '/docs/json' })).body).openapi, '3.1.0');
  });
});

test('a status that a route does not document is reported by the recorder the test apps install', () => {
  const statuses = new DocumentedStatuses();
  const request = (status: number) => [{ method: 'GET', routeOptions: { url: '/x', schema: { response: { 200: {} } } } }, { statusCode: status }] as never as [never, never];
  statuses.observe(...request(200));
  assert.doesNotThrow(() => statuses.assertAllDocumented());
  statuses.observe(...request(418));
  assert.deepEqual(statuses.seen(), ['GET /x → 418']);
  assert.throws(() => statuses.assertAllDocumented(), /GET \/x → 418/);
});
