import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { after, describe, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { JOB_GRACE_MS } from '../../src/runtime/worker.js';
import { queryRows } from '../../src/store/connection.js';
import { childRelayResources } from '../helpers/child-relay.js';
import { startChildServe } from '../helpers/child-serve.js';
import { freePort } from '../helpers/ports.js';
import { logLines, stopChildren } from '../helpers/cli.js';
import { postgresUnavailableReason } from '../helpers/database.js';
import { serviceGate } from '../helpers/services.js';
import { prepareDrill, sleep, type Delivery } from './drill-setup.js';

/**
 * Fault drill (issue 7): SIGTERM while requests and a job are in flight. Requests whose bodies
 * are still arriving when the signal comes finish with 2xx; new connections are refused; the
 * AI reply that is still waiting on OpenAI after the grace period has its lease released (due
 * now, the attempt not counted) so another instance takes it over at once; the exit code is 0.
 */
after(stopChildren);

const SLOW_REQUESTS = 3;
const SLUG = 'sigterm-drill';

describe('fault drill: SIGTERM during load', async () => {
  const gate = serviceGate('PostgreSQL', await postgresUnavailableReason());
  const startResources = childRelayResources();

  test('in-flight requests finish, new connections are refused, running jobs are released, exit 0', { skip: gate.skip, timeout: 240_000 }, async () => {
    const { database, twilio, openai } = await startResources();
    // The AI reply hangs well past the grace period (the client's own timeout is 30 s).
    openai.failNext({ kind: 'slow', delayMs: 25_000 });
    const port = await freePort();
    const drill = await prepareDrill({ slug: SLUG, databaseUrl: database.url!, port, twilioUrl: twilio.url, openaiUrl: openai.url });
    const server = await startChildServe({ env: drill.env, cwd: drill.cwd, port });

    const first = await drill.post(drill.delivery(0));
    assert.equal(first.status, 200, first.body);
    const jobDeadline = Date.now() + 60_000;
    while (openai.requests.length === 0) {
      assert.ok(Date.now() < jobDeadline, `the AI reply job never reached OpenAI\n${server.tail()}`);
      await sleep(50);
    }

    // Requests whose headers and half their bodies have arrived: in flight when the signal comes.
    const slow = await Promise.all(Array.from({ length: SLOW_REQUESTS }, (_, index) => startSlowRequest(port, drill.delivery(index + 1), new URL(drill.webhookUrl).pathname)));
    await sleep(300);
    const signalledAt = Date.now();
    const exited = once(server.child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    server.child.kill('SIGTERM');

    // The listener closes at once: a new connection is refused while the old ones finish.
    const refusedDeadline = Date.now() + 10_000;
    let refused = false;
    while (!refused && Date.now() < refusedDeadline) {
      refused = await connectionRefused(port);
      if (!refused) await sleep(50);
    }
    assert.ok(refused, 'new connections were still accepted after SIGTERM');

    const answers = await Promise.all(slow.map((request) => request.finish()));
    assert.deepEqual(answers, Array.from({ length: SLOW_REQUESTS }, () => 200), `in-flight requests did not all finish with 200\n${server.tail()}`);

    const [code, signal] = await exited;
    const stoppedAfterMs = Date.now() - signalledAt;
    assert.equal(signal, null, server.tail());
    assert.equal(code, 0, server.tail());
    // The grace period, not the 25 s OpenAI delay nor the 60 s lease, bounds the stop.
    assert.ok(stoppedAfterMs >= JOB_GRACE_MS - 500, `stopped after ${stoppedAfterMs} ms, before the grace period`);
    assert.ok(stoppedAfterMs < 20_000, `stopping took ${stoppedAfterMs} ms`);

    const { db } = database.database;
    const jobs = await queryRows<{ kind: string; state: string; attempts: number; locked_by: string | null; due: boolean }>(
      db,
      sql`select kind, state, attempts, locked_by, run_at <= now() as due from jobs where kind = 'ai-reply'`,
    );
    assert.ok(jobs.length >= 1, 'no AI reply job');
    for (const job of jobs) {
      assert.deepEqual({ state: job.state, attempts: Number(job.attempts), lockedBy: job.locked_by, due: job.due }, { state: 'pending', attempts: 0, lockedBy: null, due: true }, 'the running job was not released');
    }
    const stored = await queryRows<{ count: string }>(db, sql`select count(*)::text as count from messages where direction = 'inbound'`);
    assert.equal(Number(stored[0]!.count), 1 + SLOW_REQUESTS);

    const lines = logLines(server.child.output.stdout);
    assert.ok(lines.some((line) => typeof line.msg === 'string' && line.msg.includes('released their leases')), 'no log line about the released leases');
    assert.ok(lines.some((line) => line.msg === 'stopped cleanly'), server.tail());
  });
});

/** An HTTP request sent in two parts over a raw socket: headers and half the body now, the rest on `finish()`. */
async function startSlowRequest(port: number, delivery: Delivery, path: string): Promise<{ finish(): Promise<number> }> {
  const socket: Socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  let response = '';
  socket.on('data', (chunk: Buffer) => (response += chunk.toString()));
  const closed = once(socket, 'close');
  const body = Buffer.from(delivery.form);
  const half = Math.floor(body.length / 2);
  socket.write(
    [
      `POST ${path} HTTP/1.1`,
      `Host: 127.0.0.1:${port}`,
      'Content-Type: application/x-www-form-urlencoded',
      `X-Twilio-Signature: ${delivery.signature}`,
      `Content-Length: ${body.length}`,
      '',
      '',
    ].join('\r\n'),
  );
  socket.write(body.subarray(0, half));
  return {
    async finish() {
      await sleep(500);
      socket.write(body.subarray(half));
      const deadline = setTimeout(() => socket.destroy(), 30_000);
      await closed;
      clearTimeout(deadline);
      const status = /^HTTP\/1\.1 (\d{3})/.exec(response)?.[1];
      return status === undefined ? -1 : Number(status);
    },
  };
}

async function connectionRefused(port: number): Promise<boolean> {
  const socket = connect(port, '127.0.0.1');
  try {
    await once(socket, 'connect');
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ECONNREFUSED';
  } finally {
    socket.destroy();
  }
}
