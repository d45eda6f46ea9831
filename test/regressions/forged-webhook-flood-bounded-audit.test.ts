import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { sql } from 'drizzle-orm';
import { verifyAuditChain } from '../../src/store/audit-trail.js';
import { queryRows } from '../../src/store/connection.js';
import { DEFAULT_TWILIO_ACCOUNT } from '../fakes/twilio.js';
import { auditMark } from '../helpers/audit.js';
import { describeEachBackend } from '../helpers/database.js';
import { messageSid, openRelayHarness, randomPhone, TENANT_FROM_NUMBER, type RelayHarness } from '../helpers/relay.js';

/**
 * Issue #13 item 1: 15 s of forged `POST /webhooks/twilio/acme/sms` wrote one audit row per
 * request (3,544 rows, 2.1 MB) and took API latency from 3 ms to 312 ms; unknown tenant slugs
 * did the same. Here a 10 s flood, paced a little above the review's 233 requests a second, half
 * with forged signatures for a real tenant and half for a new made-up slug each time, comes
 * over real HTTP from a worker thread while an authenticated API call that reads the database
 * is timed. The flood must add a bounded number of audit rows (one per provider, tenant, reason
 * and minute) that still count every refusal, and the call must stay within 3× its idle
 * latency, both measured in this run as medians.
 */

const FLOOD_MS = 10_000;
/** Requests a second the flood aims at (the review measured 233), over this many connections. */
const FLOOD_RATE = 250;
const FLOOD_CONNECTIONS = 4;
/** Medians over this many calls: stable against a stray GC pause or a neighbour's burst. */
const CALLS = 21;
/**
 * Flood rounds at most. Other processes on a shared machine can only make the flood look worse
 * than it is (they take the CPU from the server, not from the attacker), so a round over the
 * bound is repeated, up to this many times, before it counts as a failure.
 */
const MAX_ROUNDS = 3;

/**
 * The flood's client, in plain JavaScript for a worker thread: keep-alive connections writing
 * raw HTTP/1.1 requests and reading the answers, paced to FLOOD_RATE. As cheap as a client can
 * be, because on a shared two-core machine every cycle it spends is taken from the server, which
 * a remote attacker's client would not do.
 */
const FLOOD_WORKER = `
const { connect } = require('node:net');
const { workerData, parentPort } = require('node:worker_threads');
const { port, knownSlug, durationMs, rate, connections, body } = workerData;
const statuses = {};
let sent = 0;
function request(slug) {
  // Every other request for a tenant that does not exist, a new slug each time (no cache helps).
  const signature = Buffer.from(String(Math.random())).toString('base64');
  return 'POST /webhooks/twilio/' + slug + '/sms HTTP/1.1\\r\\nhost: 127.0.0.1\\r\\ncontent-type: application/x-www-form-urlencoded\\r\\n' +
    'x-twilio-signature: ' + signature + '\\r\\ncontent-length: ' + Buffer.byteLength(body) + '\\r\\n\\r\\n' + body;
}
function connection() {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    const spacing = (1000 / rate) * connections;
    const deadline = Date.now() + durationMs;
    let next = Date.now();
    let buffered = '';
    const sendOne = () => {
      if (Date.now() >= deadline) return void socket.end(resolve);
      sent += 1;
      socket.write(request(sent % 2 === 0 ? knownSlug : 'nx-' + Math.random().toString(36).slice(2, 12)));
    };
    socket.setEncoding('utf8');
    socket.on('data', (chunk) => {
      buffered += chunk;
      for (;;) {
        const headerEnd = buffered.indexOf('\\r\\n\\r\\n');
        if (headerEnd === -1) return;
        const length = Number(/content-length: *(\\d+)/i.exec(buffered.slice(0, headerEnd))?.[1] ?? 0);
        if (buffered.length < headerEnd + 4 + length) return;
        const status = buffered.slice(9, 12);
        statuses[status] = (statuses[status] || 0) + 1;
        buffered = buffered.slice(headerEnd + 4 + length);
        next += spacing;
        setTimeout(sendOne, Math.max(0, next - Date.now()));
      }
    });
    socket.on('error', () => {
      statuses.error = (statuses.error || 0) + 1;
      resolve();
    });
    socket.on('connect', sendOne);
  });
}
Promise.all(Array.from({ length: connections }, connection)).then(() => parentPort.postMessage(statuses));
`;

function floodFrom(workerData: Record<string, unknown>): Promise<Record<string, number>> {
  const worker = new Worker(FLOOD_WORKER, { eval: true, workerData });
  return new Promise((resolve, reject) => {
    worker.once('message', (statuses: Record<string, number>) => {
      resolve(statuses);
      void worker.terminate();
    });
    worker.once('error', reject);
  });
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

await describeEachBackend('a 10 s forged-webhook flood', (backend) => {
  let harness: RelayHarness;

  before(async () => {
    harness = await openRelayHarness(backend);
  });
  after(() => harness.close());

  test('adds a bounded number of audit rows that count every refusal, and an API call stays within 3× its idle latency', { timeout: 180_000 }, async (t) => {
    const tenant = await harness.putTenant();
    const user = await harness.createUser({ role: 'employee' });
    const { accessToken } = await harness.signIn(user);
    await harness.app.listen({ host: '127.0.0.1', port: 0 });
    const port = (harness.app.server.address() as AddressInfo).port;
    const base = `http://127.0.0.1:${port}`;

    /** An authenticated call that reads the database (the caller's sessions), timed. */
    const timedApiCall = async (): Promise<number> => {
      const started = performance.now();
      const response = await fetch(`${base}/api/v1/auth/sessions`, { headers: { authorization: `Bearer ${accessToken}` } });
      const body = (await response.json()) as { sessions?: unknown[] };
      const elapsed = performance.now() - started;
      assert.equal(response.status, 200, JSON.stringify(body));
      assert.ok(Array.isArray(body.sessions) && body.sessions.length > 0);
      return elapsed;
    };
    const idleCalls = async (count: number) => {
      const times: number[] = [];
      for (let index = 0; index < count; index++) {
        times.push(await timedApiCall());
        await sleep(50);
      }
      return times;
    };

    for (let index = 0; index < 5; index++) await timedApiCall(); // warm-up: connection, JIT, caches
    const mark = await auditMark(harness);

    const body = new URLSearchParams({
      MessageSid: messageSid(),
      AccountSid: DEFAULT_TWILIO_ACCOUNT.accountSid,
      From: randomPhone(),
      To: TENANT_FROM_NUMBER,
      Body: `forged ${randomBytes(4).toString('hex')}`,
    }).toString();

    /** One round: idle calls, a flood with calls spread over it, idle calls again; the ratio of the medians. */
    const round = async () => {
      const idleBefore = await idleCalls(CALLS);
      const flood = floodFrom({ port, knownSlug: tenant.slug, durationMs: FLOOD_MS, rate: FLOOD_RATE, connections: FLOOD_CONNECTIONS, body });
      // Calls spread over the flood, after it has ramped up and before it ends.
      await sleep(1_000);
      const duringFlood: number[] = [];
      for (let index = 0; index < CALLS; index++) {
        duringFlood.push(await timedApiCall());
        await sleep((FLOOD_MS - 2_000) / CALLS);
      }
      const statuses = await flood;
      const idleAfter = await idleCalls(CALLS);
      assert.deepEqual(
        Object.keys(statuses).filter((status) => status !== '403' && status !== '429'),
        [],
        `only 403 and 429 answers: ${JSON.stringify(statuses)}`,
      );
      const answered = (statuses['403'] ?? 0) + (statuses['429'] ?? 0);
      // Most of the paced requests were answered (a server that fell behind would answer fewer).
      assert.ok(answered >= 0.8 * FLOOD_RATE * (FLOOD_MS / 1000), `the flood was a flood: ${JSON.stringify(statuses)}`);
      const idle = median([...idleBefore, ...idleAfter]);
      const flooded = median(duringFlood);
      return { statuses, idle, flooded, ratio: flooded / idle };
    };

    let refused = 0;
    const rounds: string[] = [];
    let withinBound = false;
    for (let index = 0; index < MAX_ROUNDS && !withinBound; index++) {
      const result = await round();
      refused += result.statuses['403'] ?? 0;
      rounds.push(`idle median ${result.idle.toFixed(2)} ms, during the flood ${result.flooded.toFixed(2)} ms (${result.ratio.toFixed(2)}×); flood ${JSON.stringify(result.statuses)}`);
      t.diagnostic(`round ${index + 1}: ${rounds.at(-1)}`);
      withinBound = result.ratio <= 3;
    }
    assert.ok(withinBound, `the API call stayed above 3× its idle latency in every round:\n${rounds.join('\n')}`);

    type AuditRow = { action: string; tenant_id: string | null; details: { provider: string; reason: string; count: number } };
    const rowsSinceMark = () => queryRows<AuditRow>(harness.db, sql`select action, tenant_id, details from audit_events where seq > ${mark} order by seq`);
    // While the floods last, at most the entries of minutes that have ended are written (two keys; the rounds span at most one minute's end).
    const writtenDuringFlood = (await rowsSinceMark()).length;
    assert.ok(writtenDuringFlood <= 2 * rounds.length, `${writtenDuringFlood} audit rows written during floods of ${refused} refusals`);

    // Everything counted is written at a clean stop (serve calls the same).
    await harness.relay.rejectionAudit.stop();
    const rows = await rowsSinceMark();
    // Two keys (the tenant's bad signatures, unknown tenants) per minute the rounds touched.
    assert.ok(rows.length <= 2 * (rounds.length + 1), `${rows.length} audit rows for ${refused} refusals`);
    assert.ok(rows.every((row) => row.action === 'webhook.rejected'), JSON.stringify(rows.map((row) => row.action)));
    assert.deepEqual([...new Set(rows.map((row) => `${row.tenant_id === tenant.id ? 'tenant' : row.tenant_id}/${row.details.provider}/${row.details.reason}`))].sort(), [
      'null/twilio/unknown-tenant',
      'tenant/twilio/bad-signature',
    ]);
    assert.equal(
      rows.reduce((sum, row) => sum + row.details.count, 0),
      refused,
      'every 403 is counted in the aggregated entries, and no 429 is',
    );
    assert.equal((await verifyAuditChain(harness.db)).intact, true);
  });
});
