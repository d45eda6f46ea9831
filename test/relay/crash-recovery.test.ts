import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { queryRows } from '../../src/store/connection.js';
import { DEFAULT_OPENAI_KEY } from '../fakes/openai.js';
import { openAiSpecValidator, twilioSpecValidator } from '../fakes/openapi-validator.js';
import { DEFAULT_TWILIO_ACCOUNT, signTwilioRequest } from '../fakes/twilio.js';
import { childRelayEnv, childRelayResources } from '../helpers/child-relay.js';
import { startChildServe, type ChildServe } from '../helpers/child-serve.js';
import { freePort } from '../helpers/ports.js';
import { runCliProcess, stopChildren } from '../helpers/cli.js';
import { postgresUnavailableReason } from '../helpers/database.js';
import { serviceGate } from '../helpers/services.js';

/**
 * The crash test of issue 6: a child `ciphergate serve` on PostgreSQL takes 1,000 signed
 * messages from 20 concurrent senders and is killed with SIGKILL mid-way; after the restart
 * every message that got a 2xx is stored exactly once and answered exactly once.
 *
 * The senders behave like Twilio: a delivery that got no 2xx (the connection was refused or
 * reset, the answer never came) is delivered again until it gets one
 * (https://www.twilio.com/docs/usage/webhooks/webhooks-connection-overrides: Twilio retries a
 * webhook whose connection fails). A delivery in flight at the kill may have committed without
 * its answer reaching the sender, so its retry after the restart is a duplicate the gateway must
 * recognise. Fifty deliveries that did get a 2xx are sent once more at the end, as Twilio may.
 *
 * The kill also lands in the middle of the job workers' work. Once enough deliveries are
 * acknowledged the kill is armed, and it fires the moment the Twilio fake receives a send (before
 * the fake answers): that send reaches Twilio but is never recorded, the uncertain send the
 * issue names. AI replies are in flight at the same time. Their jobs' leases run out (60 s, the
 * queue's default) and the restarted server finishes them; the uncertain send is looked up at
 * Twilio before it is made again. "Answered exactly once" is checked where it matters, at the
 * Twilio fake: one message to each sender's number, no more.
 *
 * The senders pause briefly between messages, as texts from many people arrive, so the workers
 * keep up and sends are under way when the kill comes; without the pause the whole intake
 * would queue up before the first reply, and no send could be caught mid-way.
 */
after(stopChildren);

const MESSAGES = 1_000;
const SENDERS = 20;
/** The kill comes when this many deliveries have been acknowledged: well inside the run. */
const KILL_AFTER_ACKNOWLEDGED = 350;
/** If no send reaches Twilio this long after the kill is armed, the kill fires anyway. */
const KILL_FALLBACK_MS = 3_000;
/** Each sender's pause between two messages. */
const SENDER_PAUSE_MS = 200;
const DUPLICATES_AFTER_RESTART = 50;
/** Per delivery; with backoff this outlasts a restart by far. */
const MAX_ATTEMPTS = 40;
/** The queue's 60 s lease on the killed worker's jobs, plus the work itself. */
const DRAIN_TIMEOUT_MS = 180_000;
const SLUG = 'crash-clinic';
const TENANT_FROM_NUMBER = '+14155550100';

interface Delivery {
  sid: string;
  from: string;
  form: string;
  signature: string;
}

/** Each message from its own valid US number, so each is its own conversation and is answered. */
function phoneOf(index: number): string {
  return `+1415${200 + (index % 800)}${String(1000 + Math.floor(index / 800)).padStart(4, '0')}`;
}

function deliveryOf(index: number, publicUrl: string): Delivery {
  const sid = `SM${randomBytes(16).toString('hex')}`;
  const from = phoneOf(index);
  const params = {
    MessageSid: sid,
    SmsSid: sid,
    AccountSid: DEFAULT_TWILIO_ACCOUNT.accountSid,
    From: from,
    To: TENANT_FROM_NUMBER,
    Body: `Hello, this is crash test message number ${index}; could someone call me back?`,
    NumMedia: '0',
  };
  const signature = signTwilioRequest(DEFAULT_TWILIO_ACCOUNT.authToken, `${publicUrl}/webhooks/twilio/${SLUG}/sms`, params);
  return { sid, from, form: new URLSearchParams(params).toString(), signature };
}

/**
 * The fakes compile a request validator from the provider's OpenAPI document on the first request
 * of each operation, which blocks this process for seconds. Done up front, so that the kill is
 * not held back (while the server answers every delivery in flight) by a compile.
 */
function warmSpecValidators(): void {
  const messagesPath = `/2010-04-01/Accounts/${DEFAULT_TWILIO_ACCOUNT.accountSid}/Messages.json`;
  const form = new URLSearchParams({ To: phoneOf(0), From: TENANT_FROM_NUMBER, Body: 'warm-up', StatusCallback: 'http://127.0.0.1:1/status' });
  twilioSpecValidator().check({ method: 'POST', path: messagesPath, query: new URLSearchParams(), headers: { 'content-type': 'application/x-www-form-urlencoded' }, rawBody: Buffer.from(form.toString()) });
  twilioSpecValidator().check({ method: 'GET', path: messagesPath, query: new URLSearchParams({ To: phoneOf(0), From: TENANT_FROM_NUMBER, PageSize: '100' }), headers: {}, rawBody: Buffer.alloc(0) });
  const completion = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'warm-up' }], store: false };
  openAiSpecValidator().check({ method: 'POST', path: '/v1/chat/completions', query: new URLSearchParams(), headers: { 'content-type': 'application/json' }, rawBody: Buffer.from(JSON.stringify(completion)) });
}

/** Resolved while the server is up; a sender whose delivery failed waits here for the restart. */
class Availability {
  private up: Promise<void> = Promise.resolve();
  private release: (() => void) | undefined;

  down(): void {
    this.up = new Promise((resolve) => (this.release = resolve));
  }

  restore(): void {
    this.release?.();
    this.release = undefined;
  }

  wait(): Promise<void> {
    return this.up;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('crash recovery: ciphergate serve on PostgreSQL killed with SIGKILL mid-way', async () => {
  const gate = serviceGate('PostgreSQL', await postgresUnavailableReason());
  const startResources = childRelayResources();

  test('every message that got a 2xx is stored exactly once and answered exactly once', { skip: gate.skip, timeout: 420_000 }, async (t) => {
    warmSpecValidators();
    const { database, twilio, openai } = await startResources();
    const { db } = database.database;
    const port = await freePort();
    const publicUrl = `http://127.0.0.1:${port}`;
    const cwd = mkdtempSync(join(tmpdir(), 'cg-crash-'));
    const env = childRelayEnv({ databaseUrl: database.url!, publicUrl, twilioUrl: twilio.url, openaiUrl: openai.url });

    const tenantJson = {
      name: 'Crash Clinic',
      twilio: { accountSid: DEFAULT_TWILIO_ACCOUNT.accountSid, authToken: DEFAULT_TWILIO_ACCOUNT.authToken, fromNumber: TENANT_FROM_NUMBER },
      openai: { apiKey: DEFAULT_OPENAI_KEY, model: 'gpt-4o-mini' },
    };
    const put = await runCliProcess(['tenants', 'put', SLUG], { env, cwd, stdin: JSON.stringify(tenantJson), timeoutMs: 120_000 });
    assert.equal(put.code, 0, put.stderr);
    const [tenant] = await queryRows<{ id: string }>(db, sql`select id from tenants where slug = ${SLUG}`);
    assert.ok(tenant, 'tenants put stored no tenant');

    const startedAt = Date.now();
    let server: ChildServe = await startChildServe({ env, cwd, port });
    const firstPid = server.pid;
    const deliveries = Array.from({ length: MESSAGES }, (_, index) => deliveryOf(index, publicUrl));
    const webhookUrl = `${publicUrl}/webhooks/twilio/${SLUG}/sms`;

    const availability = new Availability();
    const acknowledged = new Set<string>();
    /** Deliveries answered with something that is neither 2xx nor a failure to retry. */
    const refused: Array<{ sid: string; status: number }> = [];
    const gaveUp: string[] = [];
    let failedAttempts = 0;
    const failedSids = new Set<string>();
    let retriedAfterFailure = 0;
    let inFlight = 0;
    const atKill = { acknowledged: 0, inFlight: 0, duringSend: false, twilioMessageIndex: -1, storedSids: new Set<string>(), runningJobs: [] as Array<{ kind: string; count: string }>, pendingJobs: 0 };
    let crash: Promise<void> | undefined;
    let armed = false;
    let crashError: unknown;

    const post = async (delivery: Delivery): Promise<number> => {
      // Node's fetch (undici) keeps connections alive between requests of a sender.
      const response = await fetch(webhookUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': delivery.signature },
        body: delivery.form,
        signal: AbortSignal.timeout(30_000),
      });
      await response.arrayBuffer();
      return response.status;
    };

    const killAndRestart = () => {
      crash ??= restartAfterKill();
    };
    const restartAfterKill = async () => {
      availability.down();
      atKill.acknowledged = acknowledged.size;
      atKill.inFlight = inFlight;
      try {
        await server.kill();
        atKill.runningJobs = await queryRows<{ kind: string; count: string }>(db, sql`select kind, count(*)::text as count from jobs where state = 'running' group by kind order by kind`);
        const stored = await queryRows<{ dedupe_key: string }>(db, sql`select dedupe_key from messages where direction = 'inbound'`);
        atKill.storedSids = new Set(stored.map((row) => row.dedupe_key.slice('twilio:'.length)));
        const [pending] = await queryRows<{ count: string }>(db, sql`select count(*)::text as count from jobs where state = 'pending'`);
        atKill.pendingJobs = Number(pending?.count ?? 0);
        server = await startChildServe({ env, cwd, port });
      } catch (error) {
        crashError = error;
      } finally {
        // On a failed restart the senders run into refused connections and give up.
        availability.restore();
      }
    };

    /**
     * The fake consults a fault's `match` synchronously for every request it receives, before it
     * answers: the one place a test can act between "the send reached Twilio" and "the server
     * heard back". The predicate never matches, so every request is answered normally (to a
     * server that is gone, for the one that triggers the kill).
     */
    twilio.failNext(
      { kind: 'status', status: 500 },
      {
        match: (request) => {
          if (armed && !crash && request.method === 'POST' && request.path.endsWith('/Messages.json')) {
            atKill.duringSend = true;
            // The fake stores this request's message next, at this index, once the predicate returns.
            atKill.twilioMessageIndex = twilio.messages.length;
            killAndRestart();
          }
          return false;
        },
      },
    );
    const armKill = () => {
      armed = true;
      setTimeout(killAndRestart, KILL_FALLBACK_MS).unref();
    };

    /** Delivers until a 2xx, as Twilio retries a webhook whose connection failed. */
    const deliver = async (delivery: Delivery): Promise<void> => {
      for (let attempt = 1; ; attempt++) {
        await availability.wait();
        if (attempt > 1) retriedAfterFailure++;
        inFlight++;
        let status: number | undefined;
        try {
          status = await post(delivery);
        } catch {
          status = undefined;
        } finally {
          inFlight--;
        }
        if (status !== undefined && status >= 200 && status < 300) {
          acknowledged.add(delivery.sid);
          if (acknowledged.size === KILL_AFTER_ACKNOWLEDGED) armKill();
          return;
        }
        if (status !== undefined && status < 500) {
          refused.push({ sid: delivery.sid, status });
          return;
        }
        failedAttempts++;
        failedSids.add(delivery.sid);
        if (attempt >= MAX_ATTEMPTS) {
          gaveUp.push(delivery.sid);
          return;
        }
        await sleep(Math.min(1_000, 25 * attempt));
      }
    };

    let next = 0;
    const sender = async () => {
      while (next < deliveries.length) {
        await deliver(deliveries[next++]!);
        await sleep(SENDER_PAUSE_MS);
      }
    };
    await Promise.all(Array.from({ length: SENDERS }, sender));
    await crash;
    if (crashError) throw crashError;
    const deliveredAt = Date.now();

    assert.ok(crash, `the server was never killed: only ${acknowledged.size} deliveries were acknowledged`);
    assert.notEqual(server.pid, firstPid, 'the server was not restarted');
    assert.deepEqual(refused, [], `deliveries refused (not 2xx, not retryable)\n${server.tail()}`);
    assert.deepEqual(gaveUp, [], `deliveries that never got a 2xx\n${server.tail()}`);
    assert.equal(acknowledged.size, MESSAGES);

    // Twilio may deliver again what already got a 2xx: it is answered 2xx and changes nothing.
    const storedBeforeKill = deliveries.filter((delivery) => atKill.storedSids.has(delivery.sid)).slice(0, DUPLICATES_AFTER_RESTART);
    for (const delivery of storedBeforeKill) {
      const status = await post(delivery);
      assert.ok(status >= 200 && status < 300, `a repeated delivery got ${status}`);
    }

    // The restarted worker takes over the killed worker's jobs once their leases run out.
    const deadline = Date.now() + DRAIN_TIMEOUT_MS;
    let idleLooks = 0;
    let depth: { open: number; dead: number } = { open: -1, dead: -1 };
    while (idleLooks < 2) {
      const [row] = await queryRows<{ open: string; dead: string }>(db, sql`
        select count(*) filter (where state in ('pending', 'running'))::text as open,
               count(*) filter (where state = 'dead')::text as dead
        from jobs`);
      depth = { open: Number(row?.open ?? 0), dead: Number(row?.dead ?? 0) };
      idleLooks = depth.open === 0 ? idleLooks + 1 : 0;
      if (idleLooks < 2 && Date.now() > deadline) assert.fail(`jobs still open after ${DRAIN_TIMEOUT_MS} ms: ${JSON.stringify(depth)}\n${server.tail()}`);
      await sleep(500);
    }
    const drainedAt = Date.now();
    t.diagnostic(
      `killed pid ${firstPid} ${atKill.duringSend ? 'as a send reached Twilio' : 'on the fallback timer'}, after ${atKill.acknowledged} acknowledged deliveries with ${atKill.inFlight} in flight; ` +
        `jobs at the kill: running ${JSON.stringify(atKill.runningJobs)}, pending ${atKill.pendingJobs}; ` +
        `${failedAttempts} failed attempts, ${retriedAfterFailure} retries, ` +
        `${[...failedSids].filter((sid) => atKill.storedSids.has(sid)).length} of them for messages stored before the kill (their 2xx was lost); ` +
        `${twilio.messages.length} Twilio sends, ${openai.completions.length} OpenAI completions for ${MESSAGES} messages; ` +
        `delivering took ${deliveredAt - startedAt} ms (restart included), draining ${drainedAt - deliveredAt} ms`,
    );
    const deadJobs = await queryRows<{ kind: string; last_error: string | null }>(db, sql`select kind, last_error from jobs where state = 'dead'`);
    assert.deepEqual(deadJobs, [], 'jobs ended in the dead letters');

    // Stored exactly once: one inbound row per MessageSid, and every acknowledged one is there.
    type MessageRow = { id: string; dedupe_key: string; in_reply_to: string | null; provider_message_id: string | null; author: string };
    const inbound = await queryRows<MessageRow>(
      db,
      sql`select id, dedupe_key, in_reply_to, provider_message_id, author from messages where tenant_id = ${tenant.id} and direction = 'inbound'`,
    );
    const inboundBySid = new Map<string, MessageRow[]>();
    for (const row of inbound) {
      assert.match(row.dedupe_key, /^twilio:SM[0-9a-f]{32}$/);
      const sid = row.dedupe_key.slice('twilio:'.length);
      inboundBySid.set(sid, [...(inboundBySid.get(sid) ?? []), row]);
    }
    const storedTwice = [...inboundBySid].filter(([, rows]) => rows.length !== 1).map(([sid]) => sid);
    assert.deepEqual(storedTwice, [], 'MessageSids stored more than once');
    const sentSids = new Set(deliveries.map((delivery) => delivery.sid));
    const missing = [...acknowledged].filter((sid) => !inboundBySid.has(sid));
    assert.deepEqual(missing, [], 'acknowledged messages that were not stored');
    assert.deepEqual([...inboundBySid.keys()].filter((sid) => !sentSids.has(sid)), [], 'stored messages nobody sent');
    assert.equal(inbound.length, new Set([...sentSids].filter((sid) => inboundBySid.has(sid))).size);

    // Answered exactly once, in the database: one AI answer per inbound message, each sent.
    const outbound = await queryRows<MessageRow>(
      db,
      sql`select id, dedupe_key, in_reply_to, provider_message_id, author from messages where tenant_id = ${tenant.id} and direction = 'outbound'`,
    );
    const answersByInbound = new Map<string, MessageRow[]>();
    for (const row of outbound) {
      assert.equal(row.author, 'ai');
      assert.equal(row.dedupe_key, `ai:${row.in_reply_to}`);
      answersByInbound.set(row.in_reply_to!, [...(answersByInbound.get(row.in_reply_to!) ?? []), row]);
    }
    const notAnsweredOnce = inbound.filter((row) => answersByInbound.get(row.id)?.length !== 1).map((row) => row.dedupe_key);
    assert.deepEqual(notAnsweredOnce, [], 'inbound messages without exactly one AI answer');
    assert.equal(outbound.length, inbound.length);
    const unsent = outbound.filter((row) => row.provider_message_id === null).map((row) => row.id);
    assert.deepEqual(unsent, [], 'AI answers never recorded as sent');

    // Answered exactly once, at Twilio: one message to each sender, each the one we recorded.
    const sentTo = new Map<string, number>();
    for (const message of twilio.messages) sentTo.set(message.to, (sentTo.get(message.to) ?? 0) + 1);
    const storedFrom = new Set(deliveries.filter((delivery) => inboundBySid.has(delivery.sid)).map((delivery) => delivery.from));
    const answeredTwice = [...sentTo].filter(([, count]) => count > 1).map(([to]) => to);
    assert.deepEqual(answeredTwice, [], 'numbers that Twilio was asked to text more than once');
    assert.deepEqual([...storedFrom].filter((from) => !sentTo.has(from)), [], 'senders Twilio never texted');
    assert.deepEqual([...sentTo.keys()].filter((to) => !storedFrom.has(to)), [], 'texts to numbers that sent nothing');
    assert.ok(twilio.messages.every((message) => message.from === TENANT_FROM_NUMBER));
    assert.deepEqual(new Set(outbound.map((row) => row.provider_message_id)), new Set(twilio.messages.map((message) => message.sid)));

    // The send the kill caught after it reached Twilio was looked up and recorded, not made again.
    if (atKill.duringSend) {
      const caught = twilio.messages[atKill.twilioMessageIndex];
      assert.ok(caught, 'the send that triggered the kill never reached the Twilio fake');
      const [recorded] = await queryRows<{ send_started_at: Date | null }>(db, sql`select send_started_at from messages where provider_message_id = ${caught.sid}`);
      assert.ok(recorded, 'the send caught by the kill was not recorded after the restart');
      assert.notEqual(recorded.send_started_at, null);
      assert.equal(sentTo.get(caught.to), 1);
    }

    assert.deepEqual(twilio.violations, []);
    assert.deepEqual(openai.violations, []);

    assert.equal(await server.stop(), 0, server.tail());
  });
});
