import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { Gauge, Registry } from 'prom-client';
import { describeEachBackend } from '../helpers/database.js';
import { openIdentityHarness, PASSWORD } from '../helpers/identity.js';
import { parseScrape, sampleSum, scrapeApp, type Scrape } from '../helpers/metrics.js';
import { assertProblem, assertUnauthenticated } from '../helpers/problems.js';
import { openRelayHarness, type RelayHarness } from '../helpers/relay.js';

/**
 * `GET /metrics` on the main port: Prometheus text for `metrics:read` only, counters that move
 * with real requests, labels that are route patterns and fixed words (never a URL, a slug or an
 * email), and the malformed-URL answer that used to escape as Fastify's own JSON.
 */
await describeEachBackend('GET /metrics', (backend) => {
  let harness: RelayHarness;
  let adminToken: string;
  let tenantId: string;

  before(async () => {
    harness = await openRelayHarness(backend);
    adminToken = (await harness.signIn(await harness.createUser({ role: 'admin' }))).accessToken;
    tenantId = (await harness.putTenant()).id;
  });
  after(async () => harness?.close());

  async function createKey(body: Record<string, unknown>): Promise<{ id: string; key: string }> {
    const response = await harness.request({ method: 'POST', url: '/api/v1/api-keys', token: adminToken, body: { name: 'scraper', ...body } });
    assert.equal(response.statusCode, 201, response.body);
    return { id: response.json().apiKey.id, key: response.json().key };
  }

  const scrape = (token = adminToken): Promise<Scrape> => scrapeApp(harness, token);

  test('the scrape is valid text format and has every family docs/metrics.md lists', async () => {
    const result = await scrape();
    for (const [name, type] of [
      ['ciphergate_http_requests_total', 'counter'],
      ['ciphergate_http_request_duration_seconds', 'histogram'],
      ['ciphergate_webhook_accepted_total', 'counter'],
      ['ciphergate_webhook_rejections_total', 'counter'],
      ['ciphergate_jobs_total', 'counter'],
      ['ciphergate_job_attempts_total', 'counter'],
      ['ciphergate_job_dead_letters_total', 'counter'],
      ['ciphergate_job_queue_depth', 'gauge'],
      ['ciphergate_job_queue_oldest_ready_seconds', 'gauge'],
      ['ciphergate_seal_operations_total', 'counter'],
      ['ciphergate_seal_open_failures_total', 'counter'],
      ['ciphergate_login_failures_total', 'counter'],
      ['ciphergate_login_lockouts_total', 'counter'],
      ['process_cpu_seconds_total', 'counter'],
      ['nodejs_eventloop_lag_seconds', 'gauge'],
    ] as const) {
      assert.equal(result.types.get(name), type, `${name} is a ${type}`);
    }
    // The parser itself refuses what is not the format: a guard against a test that cannot fail.
    assert.throws(() => parseScrape('ciphergate_x{a="1" 2\n'), /not a Prometheus text line/);
    assert.throws(() => parseScrape('ciphergate_untyped 1\n'), /no # TYPE/);
  });

  test('request counters and the latency histogram move with real requests, by route pattern', async () => {
    const before = await scrape();
    for (let i = 0; i < 3; i += 1) assert.equal((await harness.request({ method: 'GET', url: '/healthz' })).statusCode, 200);
    assertProblem(await harness.request({ method: 'GET', url: `/no-such-route/${randomUUID()}` }), 404, 'not-found');
    const slug = `probe-${randomUUID().slice(0, 8)}`;
    const forged = await harness.postTwilio(slug, 'sms', { MessageSid: 'SM0', Body: 'x' }, { signature: 'forged' });
    assert.equal(forged.statusCode, 403);
    const after = await scrape();

    const delta = (name: string, labels: Record<string, string>) => sampleSum(after, name, labels) - sampleSum(before, name, labels);
    assert.equal(delta('ciphergate_http_requests_total', { method: 'GET', route: '/healthz', status: '200' }), 3);
    assert.equal(delta('ciphergate_http_request_duration_seconds_count', { method: 'GET', route: '/healthz', status: '200' }), 3);
    assert.equal(delta('ciphergate_http_request_duration_seconds_bucket', { method: 'GET', route: '/healthz', status: '200', le: '+Inf' }), 3);
    assert.equal(delta('ciphergate_http_requests_total', { method: 'GET', route: 'unmatched', status: '404' }), 1);
    assert.equal(delta('ciphergate_http_requests_total', { method: 'POST', route: '/webhooks/twilio/:tenant/sms', status: '403' }), 1);
    assert.equal(delta('ciphergate_webhook_rejections_total', { provider: 'twilio', reason: 'unknown-tenant' }), 1);
    // The previous scrape is counted too: the scraper's own requests are traffic like any other.
    assert.ok(delta('ciphergate_http_requests_total', { method: 'GET', route: '/metrics', status: '200' }) >= 1);
    // Patterns only: neither the slug nor the random path became a label.
    assert.ok(!after.text.includes(slug), 'the tenant slug from the URL is not in the scrape');
    assert.ok(!after.text.includes('/no-such-route'), 'the unmatched URL is not in the scrape');
  });

  test('a malformed URL is a 400 problem+json, an overlong path segment a 414, both counted under route "unmatched"', async () => {
    const before = await scrape();
    for (const url of ['/%zz', '/api/v1/%E0%A4%A', `/webhooks/twilio/%zz/sms`]) {
      const response = await harness.request({ method: 'GET', url });
      const problem = assertProblem(response, 400, 'bad-url');
      assert.ok(!response.body.includes('%zz') && !response.body.includes('FST_ERR'), 'neither the URL nor Fastify internals are echoed');
      assert.equal(typeof response.headers['x-request-id'], 'string');
      assert.equal(problem.detail, 'the request URL cannot be decoded');
    }
    const long = await harness.request({ method: 'GET', url: `/api/v1/users/${'a'.repeat(200)}/sessions` });
    assertProblem(long, 414, 'url-too-long');
    const after = await scrape();
    const delta = (status: string) => sampleSum(after, 'ciphergate_http_requests_total', { route: 'unmatched', status }) - sampleSum(before, 'ciphergate_http_requests_total', { route: 'unmatched', status });
    assert.equal(delta('400'), 3);
    assert.equal(delta('414'), 1);
  });

  test('no token → 401; a token without metrics:read → 403, audited; neither leaks metrics', async () => {
    const none = await harness.request({ method: 'GET', url: '/metrics' });
    assertUnauthenticated(none);
    assert.ok(!none.body.includes('ciphergate_'));
    assertUnauthenticated(await harness.request({ method: 'GET', url: '/metrics', token: 'not-a-token' }), 'not-a-token');
    assertUnauthenticated(await harness.request({ method: 'GET', url: '/metrics', headers: { authorization: 'Basic YWRtaW46YWRtaW4=' } }));

    const employee = await harness.signIn(await harness.createUser({ role: 'employee' }));
    const manager = await harness.signIn(await harness.createUser({ role: 'manager' }));
    for (const token of [employee.accessToken, manager.accessToken]) {
      const refused = await harness.request({ method: 'GET', url: '/metrics', token });
      const problem = assertProblem(refused, 403, 'forbidden');
      assert.match(problem.detail, /metrics:read/);
      assert.ok(!refused.body.includes('ciphergate_'));
    }
    const denied = (await harness.auditActions()).filter((event) => event.action === 'access.denied' && event.details.permission === 'metrics:read');
    assert.ok(denied.length >= 2, 'each refusal is an access.denied audit event');
  });

  test('a revoked session and an expired access token are refused', async () => {
    const admin = await harness.signIn(await harness.createUser({ role: 'admin' }));
    assert.equal((await harness.request({ method: 'GET', url: '/metrics', token: admin.accessToken })).statusCode, 200);
    assert.equal((await harness.request({ method: 'POST', url: '/api/v1/auth/logout', token: admin.accessToken })).statusCode, 204);
    assertUnauthenticated(await harness.request({ method: 'GET', url: '/metrics', token: admin.accessToken }), admin.accessToken);

    const [header, payload] = adminToken.split('.');
    const claims = JSON.parse(Buffer.from(payload!, 'base64url').toString()) as Record<string, unknown>;
    const stale = `${header}.${Buffer.from(JSON.stringify({ ...claims, exp: 1 })).toString('base64url')}.${adminToken.split('.')[2]}`;
    assertUnauthenticated(await harness.request({ method: 'GET', url: '/metrics', token: stale }), stale);
  });

  test('API keys: metrics:read scrapes; another scope gets 403; revoked and expired keys get 401', async () => {
    const scraper = await createKey({ tenantId: null, scopes: ['metrics:read'] });
    const result = await scrape(scraper.key);
    assert.ok(result.types.has('ciphergate_http_requests_total'));
    assert.ok(!result.text.includes(scraper.key), 'the key never appears in the output');

    const reader = await createKey({ tenantId, scopes: ['tenants:read'] });
    assertProblem(await harness.request({ method: 'GET', url: '/metrics', token: reader.key }), 403, 'forbidden');

    const expiring = await createKey({ tenantId: null, scopes: ['metrics:read'], expiresAt: new Date(Date.now() + 3_600_000).toISOString() });
    assert.equal((await harness.request({ method: 'GET', url: '/metrics', token: expiring.key })).statusCode, 200);
    await harness.db.execute(sql`update api_keys set expires_at = now() - interval '1 second' where id = ${expiring.id}`);
    assertUnauthenticated(await harness.request({ method: 'GET', url: '/metrics', token: expiring.key }), expiring.key);

    assert.equal((await harness.request({ method: 'DELETE', url: `/api/v1/api-keys/${scraper.id}`, token: adminToken })).statusCode, 204);
    assertUnauthenticated(await harness.request({ method: 'GET', url: '/metrics', token: scraper.key }), scraper.key);
  });

  test('sign-in failures and a lockout are counted by stage and reason, never by account', async () => {
    const victim = await harness.createUser({ role: 'employee' });
    const unknownEmail = `nobody-${randomUUID()}@example.test`;
    const before = await scrape();
    const login = (email: string, password: string, remoteAddress = '192.0.2.10') =>
      harness.request({ method: 'POST', url: '/api/v1/auth/login', body: { email, password }, remoteAddress });

    assertProblem(await login(unknownEmail, 'wrong password 1'), 401, 'invalid-credentials');
    // Ten wrong passwords lock the account for this address (LoginThrottle's default).
    for (let attempt = 0; attempt < 10; attempt += 1) assertProblem(await login(victim.email, `wrong password ${attempt}`, '192.0.2.11'), 401, 'invalid-credentials');
    assertProblem(await login(victim.email, PASSWORD, '192.0.2.11'), 429, 'account-locked');

    const after = await scrape();
    const delta = (name: string, labels: Record<string, string>) => sampleSum(after, name, labels) - sampleSum(before, name, labels);
    assert.equal(delta('ciphergate_login_failures_total', { stage: 'password', reason: 'unknown-account' }), 1);
    assert.equal(delta('ciphergate_login_failures_total', { stage: 'password', reason: 'wrong-password-or-inactive' }), 10);
    assert.equal(delta('ciphergate_login_failures_total', { stage: 'password', reason: 'account-locked' }), 1);
    assert.equal(delta('ciphergate_login_lockouts_total', { stage: 'password' }), 1);
    for (const secret of [victim.email, unknownEmail, victim.id, '192.0.2.11', 'wrong password']) assert.ok(!after.text.includes(secret), `${secret} is not in the scrape`);
  });

  test('a wrong current password on a password change is counted as a failed confirmation', async () => {
    const user = await harness.createUser({ role: 'employee' });
    const session = await harness.signIn(user);
    const before = await scrape();
    const refused = await harness.request({ method: 'POST', url: '/api/v1/auth/password', token: session.accessToken, body: { currentPassword: 'not my password at all', newPassword: 'a brand new passphrase 42' } });
    assertProblem(refused, 403, 'invalid-credentials');
    const after = await scrape();
    assert.equal(
      sampleSum(after, 'ciphergate_login_failures_total', { stage: 'password-change', reason: 'wrong-current-password' }) -
        sampleSum(before, 'ciphergate_login_failures_total', { stage: 'password-change', reason: 'wrong-current-password' }),
      1,
    );
  });

  test('a scrape whose figures cannot be read (database away) is a 503 problem, logged, and the next one works', async () => {
    let databaseAway = true;
    const queueLike = new Registry();
    new Gauge({
      name: 'ciphergate_test_queue_depth',
      help: 'stands in for the queue gauges, which read the database',
      registers: [queueLike],
      collect() {
        if (databaseAway) throw new Error('connect ECONNREFUSED 127.0.0.1:5432');
        this.set(1);
      },
    });
    const other = await openIdentityHarness(backend, { extend: () => ({ routes: [], metricsRegistries: [queueLike] }) });
    try {
      const token = (await other.signIn(await other.createUser({ role: 'admin' }))).accessToken;
      const refused = await other.request({ method: 'GET', url: '/metrics', token });
      const problem = assertProblem(refused, 503, 'metrics-unavailable');
      assert.ok(!JSON.stringify(problem).includes('ECONNREFUSED'), 'the cause goes to the log, not the answer');
      assert.match(other.logs.text(), /metrics scrape failed/);
      databaseAway = false;
      assert.equal(sampleSum(await scrapeApp(other, token), 'ciphergate_test_queue_depth'), 1);
    } finally {
      await other.close();
    }
  });

  test('two apps in one process keep their own counts', async () => {
    const other = await openRelayHarness(backend);
    try {
      const otherAdmin = (await other.signIn(await other.createUser({ role: 'admin' }))).accessToken;
      const before = sampleSum(await scrapeApp(other, otherAdmin), 'ciphergate_http_requests_total', { route: '/healthz' });
      for (let i = 0; i < 4; i += 1) await harness.request({ method: 'GET', url: '/healthz' });
      assert.equal(sampleSum(await scrapeApp(other, otherAdmin), 'ciphergate_http_requests_total', { route: '/healthz' }), before);
    } finally {
      await other.close();
    }
  });
});
