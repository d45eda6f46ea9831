import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Type } from '@sinclair/typebox';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { buildApp, type App } from '../../src/http/app.js';
import { captureLogs } from '../helpers/log-capture.js';

// A URL the router cannot decode (400 bad-url) and a path segment over the length limit
// (414 url-too-long) are answered by Fastify's `frameworkErrors` hook, before any onRequest hook
// runs, so they went out without the security headers every other answer carries (CSP,
// nosniff, frame denial, HSTS…). Every early answer now carries the same set, and an
// x-request-id, as a routed one; this test compares them to a routed answer's headers.

/** What helmet and our onSend hook add; compared by value with a routed answer's. */
const SECURITY_HEADERS = [
  'content-security-policy',
  'x-frame-options',
  'x-content-type-options',
  'referrer-policy',
  'cross-origin-opener-policy',
  'cross-origin-resource-policy',
  'strict-transport-security',
] as const;

let app: App;
before(async () => {
  const access = { public: true as const, reason: 'test route' };
  app = await buildApp({
    config: { publicUrl: 'https://gate.example.test', trustProxy: [], bodyLimitBytes: 256 },
    logger: captureLogs().logger,
    routes: [
      (scope) => {
        scope.get('/probe/items/:id', { config: { access }, schema: { params: Type.Object({ id: Type.String() }) } }, async () => ({ ok: true }));
        scope.post('/probe/items', { config: { access }, schema: { body: Type.Object({ name: Type.String() }) } }, async () => ({ ok: true }));
      },
    ],
  });
});
after(() => app?.close());

function assertSecurityHeaders(response: LightMyRequestResponse, reference: LightMyRequestResponse, label: string): void {
  for (const name of SECURITY_HEADERS) {
    assert.ok(reference.headers[name], `the routed answer has ${name}`);
    assert.equal(response.headers[name], reference.headers[name], `${label}: ${name}`);
  }
  assert.match(String(response.headers['x-request-id']), /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, `${label}: x-request-id`);
  assert.match(String(response.headers['content-type']), /^application\/problem\+json/, `${label}: problem+json`);
}

test('every early error answer carries the same security headers and a request id as a routed answer', async () => {
  const reference = await app.inject({ method: 'GET', url: '/probe/items/1' });
  assert.equal(reference.statusCode, 200);
  const json = { 'content-type': 'application/json' };
  const cases: Array<{ label: string; status: number; type: string; request: InjectOptions }> = [
    { label: 'undecodable URL', status: 400, type: 'bad-url', request: { method: 'GET', url: '/probe/items/%zz' } },
    { label: 'path segment too long', status: 414, type: 'url-too-long', request: { method: 'GET', url: `/probe/items/${'x'.repeat(500)}` } },
    { label: 'body too large', status: 413, type: 'payload-too-large', request: { method: 'POST', url: '/probe/items', headers: json, payload: JSON.stringify({ name: 'x'.repeat(1000) }) } },
    { label: 'unsupported media type', status: 415, type: 'unsupported-media-type', request: { method: 'POST', url: '/probe/items', headers: { 'content-type': 'application/xml' }, payload: '<name/>' } },
    { label: 'bad JSON', status: 400, type: 'malformed-body', request: { method: 'POST', url: '/probe/items', headers: json, payload: '{"name":' } },
    { label: 'empty JSON body', status: 400, type: 'malformed-body', request: { method: 'POST', url: '/probe/items', headers: json, payload: '' } },
    { label: 'duplicate JSON key', status: 400, type: 'malformed-body', request: { method: 'POST', url: '/probe/items', headers: json, payload: '{"name":"a","name":"b"}' } },
    { label: 'schema failure', status: 400, type: 'validation-failed', request: { method: 'POST', url: '/probe/items', headers: json, payload: '{"name":1}' } },
    { label: 'no such route', status: 404, type: 'not-found', request: { method: 'GET', url: '/nowhere' } },
    { label: 'wrong method', status: 405, type: 'method-not-allowed', request: { method: 'DELETE', url: '/probe/items' } },
  ];
  for (const { label, status, type, request } of cases) {
    const response = await app.inject(request);
    assert.equal(response.statusCode, status, `${label}: ${response.body}`);
    assert.equal(response.json().type, type, label);
    assertSecurityHeaders(response, reference, label);
  }
});
