import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Type } from '@sinclair/typebox';
import { buildApp, type App } from '../../src/http/app.js';
import { HttpProblem } from '../../src/http/problem.js';
import { captureLogs } from '../helpers/log-capture.js';

const config = { publicUrl: 'http://127.0.0.1:8080', trustProxy: [], bodyLimitBytes: 1024 * 1024 };

/** Routes that exist only to drive the error paths; each declares access like any real route. */
async function probeRoutes(app: App): Promise<void> {
  const access = { public: true as const, reason: 'test route' };
  let stored = 0;
  app.post(
    '/probe/items',
    {
      config: { access },
      schema: {
        body: Type.Object({ name: Type.String({ minLength: 1, maxLength: 20 }), count: Type.Integer({ minimum: 0 }) }, { additionalProperties: false }),
        querystring: Type.Object({ dryRun: Type.Optional(Type.Boolean()) }),
      },
    },
    async (_request, reply) => {
      stored += 1;
      return reply.code(201).send({ stored });
    },
  );
  app.get('/probe/stored', { config: { access } }, async () => ({ stored }));
  app.get('/probe/crash', { config: { access } }, async () => {
    throw new Error('relation "secret_table" does not exist at Query.run (/app/src/store/x.ts:12)');
  });
  app.get('/probe/teapot', { config: { access } }, async () => {
    throw new HttpProblem(409, 'conflict', 'Conflict', 'the thing already exists', { thingId: 't1' });
  });
}

async function appWithLogs(overrides: Partial<typeof config> = {}) {
  const logs = captureLogs();
  const app = await buildApp({ config: { ...config, ...overrides }, logger: logs.logger, routes: [probeRoutes] });
  return { app, logs };
}

function assertProblem(response: { statusCode: number; headers: Record<string, unknown>; json(): any }, status: number, type: string) {
  assert.equal(response.statusCode, status);
  assert.match(String(response.headers['content-type']), /^application\/problem\+json/);
  const body = response.json();
  assert.equal(body.status, status);
  assert.equal(body.type, type);
  assert.equal(typeof body.title, 'string');
  assert.equal(typeof body.detail, 'string');
  assert.equal(JSON.stringify(body).includes('stack'), false, 'no stack trace in a response');
  return body;
}

describe('problem+json answers', () => {
  test('a body failing its schema gets 400 naming the field, and the handler never runs', async () => {
    const { app } = await appWithLogs();
    const missing = await app.inject({ method: 'POST', url: '/probe/items', payload: { name: 'a' } });
    const body = assertProblem(missing, 400, 'validation-failed');
    assert.equal(body.detail, "body count: must have required property 'count'");
    assert.deepEqual(body.errors, [{ in: 'body', field: 'count', message: "must have required property 'count'" }]);

    const wrongType = assertProblem(await app.inject({ method: 'POST', url: '/probe/items', payload: { name: 'a', count: 'many' } }), 400, 'validation-failed');
    assert.match(wrongType.detail, /^body count: must be integer/);

    const tooLong = assertProblem(await app.inject({ method: 'POST', url: '/probe/items', payload: { name: 'x'.repeat(21), count: 1 } }), 400, 'validation-failed');
    assert.match(tooLong.detail, /^body name: must NOT have more than 20 characters/);

    const extra = assertProblem(await app.inject({ method: 'POST', url: '/probe/items', payload: { name: 'a', count: 1, admin: true } }), 400, 'validation-failed');
    assert.match(extra.detail, /must NOT have additional properties/);

    const query = assertProblem(await app.inject({ method: 'POST', url: '/probe/items?dryRun=perhaps', payload: { name: 'a', count: 1 } }), 400, 'validation-failed');
    assert.match(query.detail, /^querystring dryRun: must be boolean/);

    assert.deepEqual((await app.inject({ url: '/probe/stored' })).json(), { stored: 0 }, 'nothing was written');
    assert.equal((await app.inject({ method: 'POST', url: '/probe/items', payload: { name: 'a', count: 1 } })).statusCode, 201);
    await app.close();
  });

  test('malformed JSON and an empty JSON body get 400', async () => {
    const { app } = await appWithLogs();
    const malformed = await app.inject({ method: 'POST', url: '/probe/items', headers: { 'content-type': 'application/json' }, payload: '{"name": "a",' });
    assertProblem(malformed, 400, 'malformed-body');
    const empty = await app.inject({ method: 'POST', url: '/probe/items', headers: { 'content-type': 'application/json' }, payload: '' });
    assertProblem(empty, 400, 'malformed-body');
    const proto = await app.inject({ method: 'POST', url: '/probe/items', headers: { 'content-type': 'application/json' }, payload: '{"name":"a","count":1,"__proto__":{"admin":true}}' });
    assert.equal(proto.statusCode, 400, 'prototype poisoning is refused');
    assert.deepEqual((await app.inject({ url: '/probe/stored' })).json(), { stored: 0 });
    await app.close();
  });

  test('an unknown route gets 404 and a wrong method gets 405 with Allow', async () => {
    const { app } = await appWithLogs();
    const notFound = assertProblem(await app.inject({ url: '/nowhere?x=1' }), 404, 'not-found');
    assert.equal(notFound.detail, 'no route for GET /nowhere');
    const wrongMethod = await app.inject({ method: 'DELETE', url: '/healthz' });
    assertProblem(wrongMethod, 405, 'method-not-allowed');
    assert.equal(wrongMethod.headers.allow, 'GET, HEAD');
    const postOnly = await app.inject({ method: 'GET', url: '/probe/items' });
    assertProblem(postOnly, 405, 'method-not-allowed');
    assert.equal(postOnly.headers.allow, 'POST');
    await app.close();
  });

  test('an oversized body gets 413 and nothing is stored', async () => {
    const { app } = await appWithLogs({ bodyLimitBytes: 2048 });
    const response = await app.inject({ method: 'POST', url: '/probe/items', payload: { name: 'a', count: 1, pad: 'x'.repeat(4096) } });
    const body = assertProblem(response, 413, 'payload-too-large');
    assert.match(body.detail, /2048 bytes/);
    assert.deepEqual((await app.inject({ url: '/probe/stored' })).json(), { stored: 0 });
    await app.close();
  });

  test('the default body limit is 1 MiB', async () => {
    const { app: defaultApp } = await appWithLogs();
    const big = JSON.stringify({ name: 'a', count: 1, pad: 'x'.repeat(1024 * 1024) });
    assertProblem(await defaultApp.inject({ method: 'POST', url: '/probe/items', headers: { 'content-type': 'application/json' }, payload: big }), 413, 'payload-too-large');
    const justUnder = JSON.stringify({ name: 'a', count: 1 }).padEnd(1024 * 1024 - 16, ' ');
    assert.equal((await defaultApp.inject({ method: 'POST', url: '/probe/items', headers: { 'content-type': 'application/json' }, payload: justUnder })).statusCode, 201);
    await defaultApp.close();
  });

  test('an unsupported media type gets 415', async () => {
    const { app } = await appWithLogs();
    const response = await app.inject({ method: 'POST', url: '/probe/items', headers: { 'content-type': 'application/xml' }, payload: '<a/>' });
    const body = assertProblem(response, 415, 'unsupported-media-type');
    assert.match(body.detail, /application\/xml/);
    assert.deepEqual((await app.inject({ url: '/probe/stored' })).json(), { stored: 0 });
    await app.close();
  });

  test('an unexpected error gets 500 with an errorId that is in the log, and no internals', async () => {
    const { app, logs } = await appWithLogs();
    const response = await app.inject({ url: '/probe/crash' });
    const body = assertProblem(response, 500, 'internal-error');
    assert.match(body.errorId, /^[0-9a-f-]{36}$/);
    assert.equal(JSON.stringify(body).includes('secret_table'), false, 'no SQL or message in the body');
    assert.equal(JSON.stringify(body).includes('/app/src'), false, 'no paths in the body');
    const logged = logs.lines().find((line) => line.errorId === body.errorId);
    assert.ok(logged, 'the errorId appears in a log line');
    assert.equal(logged.level, 50);
    assert.match(JSON.stringify(logged.err), /secret_table/, 'the log keeps the real error for the operator');
    await app.close();
  });

  test('a typed HttpProblem keeps its status, type and extension members', async () => {
    const { app } = await appWithLogs();
    const body = assertProblem(await app.inject({ url: '/probe/teapot' }), 409, 'conflict');
    assert.equal(body.thingId, 't1');
    await app.close();
  });
});

describe('the app shell', () => {
  test('every response carries a request id that the log lines share', async () => {
    const { app, logs } = await appWithLogs();
    const response = await app.inject({ url: '/healthz', headers: { 'x-request-id': 'attacker-chosen' } });
    const requestId = String(response.headers['x-request-id']);
    assert.match(requestId, /^[0-9a-f-]{36}$/, 'ids are generated, never taken from the client');
    assert.ok(logs.lines().some((line) => line.reqId === requestId));
    await app.close();
  });

  test('security headers are set; HSTS only when the public URL is https', async () => {
    const { app } = await appWithLogs();
    const plain = await app.inject({ url: '/healthz' });
    assert.equal(plain.headers['x-content-type-options'], 'nosniff');
    assert.equal(plain.headers['x-frame-options'], 'DENY');
    assert.equal(plain.headers['content-security-policy'], "default-src 'none';frame-ancestors 'none'");
    assert.equal(plain.headers['referrer-policy'], 'no-referrer');
    assert.equal(plain.headers['cross-origin-resource-policy'], 'same-origin');
    assert.equal(plain.headers['strict-transport-security'], undefined);
    await app.close();
    const { app: tlsApp } = await appWithLogs({ publicUrl: 'https://gate.example.com' });
    const tls = await tlsApp.inject({ url: '/healthz' });
    assert.equal(tls.headers['strict-transport-security'], 'max-age=31536000; includeSubDomains');
    await tlsApp.close();
  });

  test('/docs/json serves the OpenAPI document with the declared routes and schemas', async () => {
    const { app } = await appWithLogs();
    const response = await app.inject({ url: '/docs/json' });
    assert.equal(response.statusCode, 200);
    const document = response.json();
    assert.equal(document.openapi, '3.1.0');
    assert.ok(document.paths['/healthz'].get.responses['200']);
    assert.ok(document.paths['/readyz'].get.responses['503']);
    assert.ok(document.paths['/probe/items'].post.requestBody.content['application/json'].schema.properties.count);
    await app.close();
  });

  test('a route that declares no access is refused at start-up (deny by default)', async () => {
    const logs = captureLogs();
    await assert.rejects(
      buildApp({
        config,
        logger: logs.logger,
        routes: [
          (app) => {
            app.get('/forgotten', async () => ({ open: true }));
          },
        ],
      }),
      /route GET \/forgotten declares no access/,
    );
  });

  test('every registered route is in the catalogue with a declared access', async () => {
    const { app } = await appWithLogs();
    const urls = app.routeCatalogue.map((route) => `${String(route.method)} ${route.url}`);
    for (const expected of ['GET /healthz', 'GET /readyz', 'GET /docs', 'POST /probe/items']) assert.ok(urls.includes(expected), expected);
    for (const route of app.routeCatalogue) {
      assert.ok('public' in route.access ? route.access.reason.length > 0 : route.access.permission.length > 0, `${route.url} has a real declaration`);
    }
    await app.close();
  });

  test('closing drains a request in flight before the server stops', async () => {
    const logs = captureLogs();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let entered!: () => void;
    const inHandler = new Promise<void>((resolve) => (entered = resolve));
    const app = await buildApp({
      config,
      logger: logs.logger,
      routes: [
        (scope) => {
          scope.get('/probe/slow', { config: { access: { public: true, reason: 'test' } } }, async () => {
            entered();
            await gate;
            return { done: true };
          });
        },
      ],
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const address = app.server.address() as { port: number };
    const inFlight = fetch(`http://127.0.0.1:${address.port}/probe/slow`);
    // Waiting for the handler, not a fixed time: on a loaded machine 100 ms may not be enough
    // for the request to arrive, and a request arriving after close() rightly gets 503.
    await inHandler;
    const closing = app.close();
    setTimeout(release, 200);
    const response = await inFlight;
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('connection'), 'close', 'the client is told to let the server go');
    assert.deepEqual(await response.json(), { done: true });
    const started = Date.now();
    await closing;
    assert.ok(Date.now() - started < 5_000, 'the drain does not wait for keep-alive timeouts');
  });
});
