import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import pg from 'pg';
import { DATABASE_RESTORED_MESSAGE, DATABASE_UNAVAILABLE_MESSAGE } from '../../src/store/connection-errors.js';
import { startOpenAiFake, type OpenAiFake } from '../fakes/openai.js';
import { startTwilioFake, type TwilioFake } from '../fakes/twilio.js';
import { startChildServe } from '../helpers/child-serve.js';
import { freePort } from '../helpers/ports.js';
import { logLines, stopChildren } from '../helpers/cli.js';
import { privatePostgresUnavailableReason, startPrivatePostgres, type PrivatePostgres } from '../helpers/private-postgres.js';
import { serviceGate } from '../helpers/services.js';
import { prepareDrill, sleep, type Delivery } from './drill-setup.js';

/**
 * Fault drill (issue 7): the PostgreSQL server under a running `ciphergate serve` stops with
 * signed Twilio webhooks arriving from several senders, stays down a few seconds, and comes
 * back. While it is down every webhook is answered 503 problem+json with Retry-After (Twilio
 * retries a 5xx; a 2xx would tell it the message was kept), `/readyz` says 503, the process
 * stays up, and the log says so once. Afterwards nothing acknowledged is missing or doubled,
 * the deliveries that got 503 are accepted when sent again, and the queued work drains.
 *
 * `pg_ctl stop -m fast` then `start`: the fast stop terminates every backend with 57P01 (what a
 * restart does), and the pause makes the outage long enough to be seen by every sender and
 * probe on a loaded machine. The cluster is the test's own, so no other suite notices.
 */
after(stopChildren);

const SENDERS = 4;
const SENDER_PAUSE_MS = 40;
const BEFORE_OUTAGE_MS = 1_500;
const OUTAGE_MS = 3_000;
const AFTER_RECOVERY_MS = 1_500;
const SLUG = 'pg-drill';

describe('fault drill: PostgreSQL restarted under load', () => {
  const gate = serviceGate('private PostgreSQL (initdb, pg_ctl)', privatePostgresUnavailableReason());
  let database: PrivatePostgres | undefined;
  let twilio: TwilioFake | undefined;
  let openai: OpenAiFake | undefined;
  after(async () => {
    await stopChildren();
    await database?.destroy();
    await twilio?.close();
    await openai?.close();
  });

  test('webhooks answer 503 while it is down, /readyz follows, nothing acknowledged is lost, one warning', { skip: gate.skip, timeout: 300_000 }, async (t) => {
    database = await startPrivatePostgres();
    [twilio, openai] = await Promise.all([startTwilioFake(), startOpenAiFake()]);
    const port = await freePort();
    const drill = await prepareDrill({ slug: SLUG, databaseUrl: database.url, port, twilioUrl: twilio.url, openaiUrl: openai.url });
    const server = await startChildServe({ env: drill.env, cwd: drill.cwd, port });

    const acknowledged: string[] = [];
    const unavailable: Delivery[] = [];
    const unexpected: Array<{ sid: string; status: number | undefined; body: string }> = [];
    let next = 0;
    let sending = true;
    const sender = async () => {
      while (sending) {
        const delivery = drill.delivery(next++);
        const { status, body, headers } = await drill.post(delivery);
        if (status !== undefined && status >= 200 && status < 300) acknowledged.push(delivery.sid);
        else if (status === 503) {
          unavailable.push(delivery);
          const problem = JSON.parse(body) as { type?: string; status?: number };
          if (problem.type !== 'service-unavailable' || !headers?.get('content-type')?.startsWith('application/problem+json') || !/^\d+$/.test(headers.get('retry-after') ?? '')) {
            unexpected.push({ sid: delivery.sid, status, body });
          }
        } else unexpected.push({ sid: delivery.sid, status, body });
        await sleep(SENDER_PAUSE_MS);
      }
    };

    const readiness: number[] = [];
    const probeFailures: string[] = [];
    let probing = true;
    const prober = (async () => {
      while (probing) {
        try {
          const response = await fetch(`${server.url}/readyz`, { signal: AbortSignal.timeout(15_000) });
          await response.arrayBuffer();
          if (readiness.at(-1) !== response.status) readiness.push(response.status);
        } catch (error) {
          if (readiness.at(-1) !== -1) readiness.push(-1);
          probeFailures.push(String((error as Error).cause ?? error));
        }
        await sleep(100);
      }
    })();

    const senders = Promise.all(Array.from({ length: SENDERS }, sender));
    await sleep(BEFORE_OUTAGE_MS);
    const acknowledgedBefore = acknowledged.length;
    await database.stop();
    await sleep(OUTAGE_MS);
    const unavailableDuringOutage = unavailable.length;
    await database.start();
    // Recovery is the server's own doing: wait (bounded) until it says it is ready again.
    const recoveryDeadline = Date.now() + 60_000;
    while (readiness.at(-1) !== 200 && Date.now() < recoveryDeadline) await sleep(100);
    await sleep(AFTER_RECOVERY_MS);
    sending = false;
    await senders;
    probing = false;
    await prober;

    t.diagnostic(`${acknowledged.length} acknowledged (${acknowledgedBefore} before the outage), ${unavailable.length} answered 503 (${unavailableDuringOutage} during it); readiness ${JSON.stringify(readiness)}`);
    assert.equal(server.child.exitCode, null, `the server exited\n${server.tail()}`);
    assert.equal(server.child.signalCode, null, `the server was killed\n${server.tail()}`);
    assert.deepEqual(unexpected, [], `answers other than 2xx or 503 service-unavailable\n${server.tail()}`);
    assert.ok(acknowledgedBefore > 0, 'nothing was acknowledged before the outage');
    assert.ok(unavailableDuringOutage > 0, 'no webhook was answered 503 while the database was down');
    assert.ok(acknowledged.length > acknowledgedBefore, 'nothing was acknowledged after the outage');
    // 200 first, 503 while down, 200 again, never a probe without an answer.
    assert.equal(readiness[0], 200);
    assert.ok(readiness.includes(503), `/readyz never said 503: ${JSON.stringify(readiness)}`);
    assert.equal(readiness.at(-1), 200, `/readyz did not recover: ${JSON.stringify(readiness)}`);
    assert.ok(!readiness.includes(-1), `/readyz did not answer at some point: ${JSON.stringify(readiness)} ${probeFailures.join('; ')}`);

    // What got 503 is delivered again, as Twilio does, and accepted now.
    for (const delivery of unavailable) {
      const { status } = await drill.post(delivery);
      assert.ok(status !== undefined && status >= 200 && status < 300, `a delivery sent again after the outage got ${status}`);
      acknowledged.push(delivery.sid);
    }

    // Every acknowledged MessageSid stored exactly once; nothing else stored.
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      const { rows } = await client.query<{ dedupe_key: string; count: string }>(
        `select dedupe_key, count(*)::text as count from messages where direction = 'inbound' group by dedupe_key`,
      );
      const stored = new Map(rows.map((row) => [row.dedupe_key.slice('twilio:'.length), Number(row.count)]));
      assert.deepEqual(
        acknowledged.filter((sid) => stored.get(sid) !== 1),
        [],
        'acknowledged messages not stored exactly once',
      );
      assert.equal(stored.size, acknowledged.length, 'stored messages that were never acknowledged');

      // The worker came through the outage by itself: the queued replies drain.
      const drainDeadline = Date.now() + 120_000;
      for (;;) {
        const { rows: open } = await client.query<{ open: string; dead: string }>(
          `select count(*) filter (where state in ('pending', 'running'))::text as open, count(*) filter (where state = 'dead')::text as dead from jobs`,
        );
        if (Number(open[0]!.open) === 0) {
          assert.equal(Number(open[0]!.dead), 0, 'jobs ended in the dead letters');
          break;
        }
        assert.ok(Date.now() < drainDeadline, `jobs still open: ${JSON.stringify(open[0])}\n${server.tail()}`);
        await sleep(250);
      }
    } finally {
      await client.end();
    }

    // One warning when the outage began, one line when it ended; no stack per request or poll.
    const lines = logLines(server.child.output.stdout);
    const outageLines = lines.filter((line) => line.msg === DATABASE_UNAVAILABLE_MESSAGE || line.msg === DATABASE_RESTORED_MESSAGE);
    const outageStory = JSON.stringify(outageLines);
    assert.equal(lines.filter((line) => line.msg === DATABASE_UNAVAILABLE_MESSAGE).length, 1, `expected exactly one outage warning: ${outageStory}`);
    assert.equal(lines.filter((line) => line.msg === DATABASE_RESTORED_MESSAGE).length, 1, `expected exactly one recovery line: ${outageStory}`);
    const errors = lines.filter((line) => Number(line.level) >= 50);
    assert.deepEqual(errors.map((line) => line.msg), [], 'error lines logged during the drill');
    assert.ok(!/\n\s+at /.test(server.child.output.stderr), `a stack trace on stderr:\n${server.child.output.stderr.slice(-2000)}`);

    assert.equal(await server.stop(), 0, server.tail());
  });
});
