import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { startChildServe } from '../helpers/child-serve.js';
import { freePort } from '../helpers/ports.js';
import { assertOneLine, runCliProcess, spawnCli, stopChildren, waitForOutput } from '../helpers/cli.js';
import { parseScrape, sampleSum } from '../helpers/metrics.js';

/**
 * CIPHERGATE_METRICS_ADDRESS as an operator meets it: `ciphergate serve` and `ciphergate worker`
 * (a worker-only process has no other port to scrape) open it, it answers `/metrics` without a
 * token while the main port still demands one, it closes on SIGTERM, and a port that is taken
 * stops start-up with one line and exit 1. PGlite in a fresh folder per process: no service needed.
 */
describe('the separate metrics listener', () => {
  const blockers: Server[] = [];
  after(async () => {
    await stopChildren();
    for (const blocker of blockers) blocker.close();
  });

  function workspace(extra: Record<string, string> = {}) {
    const cwd = mkdtempSync(join(tmpdir(), 'cg-metrics-'));
    return { cwd, env: { CIPHERGATE_MASTER_KEY: randomBytes(32).toString('base64'), CIPHERGATE_DATA_DIR: join(cwd, 'data'), CIPHERGATE_LOG_LEVEL: 'info', ...extra } };
  }

  async function takenPort(): Promise<number> {
    const blocker = createServer();
    blockers.push(blocker);
    blocker.listen(0, '127.0.0.1');
    await once(blocker, 'listening');
    return (blocker.address() as { port: number }).port;
  }

  test('serve: /metrics without a token on the metrics address, 401 on the main port; closed on SIGTERM', { timeout: 240_000 }, async () => {
    const [port, metricsPort] = [await freePort(), await freePort()];
    const { cwd, env } = workspace({ CIPHERGATE_PUBLIC_URL: `http://127.0.0.1:${port}`, CIPHERGATE_METRICS_ADDRESS: `127.0.0.1:${metricsPort}` });
    const server = await startChildServe({ env, cwd, port, timeoutMs: 180_000 });
    const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;

    const open = await fetch(metricsUrl);
    assert.equal(open.status, 200);
    assert.match(String(open.headers.get('content-type')), /^text\/plain; version=0\.0\.4/);
    const scrape = parseScrape(await open.text());
    // The readiness probes startChildServe made went through the main app: the listener serves its counters.
    assert.ok(sampleSum(scrape, 'ciphergate_http_requests_total', { route: '/readyz', status: '200' }) >= 1);
    assert.ok(scrape.types.has('ciphergate_job_queue_depth') && scrape.types.has('ciphergate_login_failures_total'));

    const guarded = await fetch(`${server.url}/metrics`);
    assert.equal(guarded.status, 401);
    assert.match(String(guarded.headers.get('content-type')), /^application\/problem\+json/);
    assert.ok(!(await guarded.text()).includes('ciphergate_http'));

    // Nothing but /metrics is reachable through the unauthenticated address.
    for (const path of ['/api/v1/users', '/readyz', '/metrics/../api/v1/users']) assert.equal((await fetch(`http://127.0.0.1:${metricsPort}${path}`)).status, 404, path);
    assert.equal((await fetch(metricsUrl, { method: 'POST' })).status, 405);

    assert.equal(await server.stop(), 0, server.tail());
    await assert.rejects(fetch(metricsUrl, { signal: AbortSignal.timeout(5_000) }), 'the metrics address is closed after shutdown');
  });

  test('worker: scraped on the metrics address; stops cleanly', { timeout: 240_000 }, async () => {
    const metricsPort = await freePort();
    const { cwd, env } = workspace({ CIPHERGATE_PUBLIC_URL: 'https://gate.example.test', CIPHERGATE_METRICS_ADDRESS: `127.0.0.1:${metricsPort}` });
    const worker = spawnCli(['worker'], { env, cwd });
    await waitForOutput(worker, (output) => output.stdout.includes('ciphergate worker running'), 180_000);
    const response = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
    assert.equal(response.status, 200);
    const scrape = parseScrape(await response.text());
    assert.equal(scrape.types.get('ciphergate_job_queue_depth'), 'gauge');
    assert.equal(scrape.types.get('ciphergate_jobs_total'), 'counter');
    assert.equal(scrape.types.get('process_cpu_seconds_total'), 'counter');
    assert.ok(!scrape.types.has('ciphergate_http_requests_total'), 'a worker has no HTTP app to count');
    worker.kill('SIGTERM');
    const [code] = (await once(worker, 'exit')) as [number | null];
    assert.equal(code, 0, worker.output.stderr);
  });

  for (const command of ['serve', 'worker'] as const) {
    test(`${command}: a taken metrics port stops start-up with one line and exit 1`, { timeout: 240_000 }, async () => {
      const blocked = await takenPort();
      const port = await freePort();
      const { cwd, env } = workspace({ CIPHERGATE_PUBLIC_URL: `http://127.0.0.1:${port}`, CIPHERGATE_PORT: String(port), CIPHERGATE_METRICS_ADDRESS: `127.0.0.1:${blocked}`, CIPHERGATE_LOG_LEVEL: 'warn' });
      const result = await runCliProcess([command], { env, cwd, timeoutMs: 180_000 });
      assert.equal(result.code, 1, `${result.stdout}\n${result.stderr}`);
      assertOneLine(result.stderr);
      assert.equal(result.stderr, `ciphergate: CIPHERGATE_METRICS_ADDRESS: cannot listen on 127.0.0.1:${blocked}: the port is already in use\n`);
      if (command === 'serve') await assert.rejects(fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(5_000) }), 'the main port never opened');
    });
  }

  test('a malformed CIPHERGATE_METRICS_ADDRESS is refused before anything starts', { timeout: 120_000 }, async () => {
    const { cwd, env } = workspace({ CIPHERGATE_PUBLIC_URL: 'https://gate.example.test', CIPHERGATE_METRICS_ADDRESS: 'http://0.0.0.0:9464/metrics' });
    const result = await runCliProcess(['worker'], { env, cwd, timeoutMs: 120_000 });
    assert.notEqual(result.code, 0);
    assertOneLine(result.stderr);
    assert.match(result.stderr, /CIPHERGATE_METRICS_ADDRESS: expected HOST:PORT/);
  });
});
