import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, before } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from 'drizzle-orm';
import { createAirtableRecordsClient } from '../../src/providers/airtable/records-client.js';
import { createAiReplyClient } from '../../src/providers/openai/reply-client.js';
import { createPodiumClient } from '../../src/providers/podium/client.js';
import { createTwilioSmsClient } from '../../src/providers/twilio/sms-client.js';
import { JobWorker, type JobHandler } from '../../src/relay/job-worker.js';
import { sendJob } from '../../src/relay/jobs.js';
import { JOB } from '../../src/domain/job-kinds.js';
import { Relay } from '../../src/relay/relay.js';
import type { TenantContext } from '../../src/relay/tenant-directory.js';
import { queryRows } from '../../src/store/connection.js';
import type { RetryPolicy } from '../../src/store/job-queue.js';
import type { FakeServer } from '../fakes/fake-server.js';
import { DEFAULT_OPENAI_KEY } from '../fakes/openai.js';
import { DEFAULT_PODIUM_LOCATION, DEFAULT_PODIUM_TOKEN, podiumMessageEvent } from '../fakes/podium.js';
import { DEFAULT_TWILIO_ACCOUNT } from '../fakes/twilio.js';
import { describeEachBackend } from './database.js';
import { openRelayHarness, PUBLIC_URL, randomPhone, TENANT_FROM_NUMBER, type RelayHarness } from './relay.js';

/**
 * What the provider-outage and uncertain-send suites share: a relay whose provider clients give up
 * quickly, a worker that notes what each job row said when it was claimed, and one prepared case
 * per provider (a tenant, an inbound message, and the job under test waiting in the queue).
 */

/** The retry policy the suites open the harness with: quick retries so a test sees several. */
export const RETRY: RetryPolicy = { baseDelayMs: 20, maxDelayMs: 100 };

/**
 * The clients' own timeouts are 15 s (Twilio, Podium) and 30 s (OpenAI, Airtable): a `slow` fault
 * beyond them would hold each test for that long. The relay under test is built with the same
 * clients given a short timeout instead, and the `slow` fault waits well past it.
 */
export const CLIENT_TIMEOUT_MS = 1_000;
export const SLOW_DELAY_MS = 3_000;

/** Retry-After the rate-limit fault sends. Airtable's client waits its documented 30 s instead. */
export const RETRY_AFTER_SECONDS = 2;
export const AIRTABLE_RATE_LIMIT_WAIT_SECONDS = 30;

export type OutageProvider = 'twilio' | 'openai' | 'airtable' | 'podium';
export const OUTAGE_PROVIDERS: readonly OutageProvider[] = ['twilio', 'openai', 'airtable', 'podium'];

/**
 * The relay the suites run jobs with: the harness's database, keys, logger and retry policy, with
 * provider clients whose timeout a `slow` fault can outlast. The harness's own relay still takes
 * the webhooks; no worker of the harness runs, so every job goes through this one.
 */
export function openOutageRelay(harness: RelayHarness): Relay {
  const noWait = async () => undefined;
  return new Relay({
    config: { publicUrl: harness.config.publicUrl, providers: harness.config.providers },
    db: harness.db,
    fields: harness.fields,
    keyring: harness.keyring,
    logger: harness.logs.logger,
    retry: RETRY,
    clients: {
      twilio: createTwilioSmsClient({ apiUrl: harness.twilio.url, timeoutMs: CLIENT_TIMEOUT_MS }),
      podium: createPodiumClient({ apiUrl: harness.podium.url, timeoutMs: CLIENT_TIMEOUT_MS }),
      openai: createAiReplyClient({ baseUrl: `${harness.openai.url}/v1`, timeoutMs: CLIENT_TIMEOUT_MS }),
      // Airtable's 30-second wait after a 429 inside one call is skipped, as the harness does.
      airtableRecords: createAirtableRecordsClient({ apiUrl: harness.airtable.url, timeoutMs: CLIENT_TIMEOUT_MS, sleep: noWait }),
    },
    airtableSleep: noWait,
  });
}

/**
 * The Twilio and OpenAI fakes compile their OpenAPI validators on the first request of each
 * operation, in this process, for up to seconds (OpenAI's document is large). A request that
 * arrives then would outlast CLIENT_TIMEOUT_MS without any fault; one request of each kind
 * first, with the clients' default timeouts, keeps that out of the cases.
 */
export async function warmUpFakes(harness: RelayHarness): Promise<void> {
  const credentials = { accountSid: DEFAULT_TWILIO_ACCOUNT.accountSid, authToken: DEFAULT_TWILIO_ACCOUNT.authToken };
  const twilio = createTwilioSmsClient({ apiUrl: harness.twilio.url });
  const to = randomPhone();
  await twilio.send(credentials, { from: TENANT_FROM_NUMBER, to, body: 'warm-up', statusCallback: `${PUBLIC_URL}/webhooks/twilio/warm-up/status` });
  await twilio.findSent(credentials, { from: TENANT_FROM_NUMBER, to, body: 'warm-up', sentAfter: new Date() });
  const openai = createAiReplyClient({ baseUrl: `${harness.openai.url}/v1` });
  await openai.reply(DEFAULT_OPENAI_KEY, { model: 'gpt-4o-mini', history: [{ role: 'user', content: 'warm-up' }], safetyIdentifier: 'f'.repeat(64) });
}

/** What an outage suite's tests run against; filled in by the suite's `before` hook. */
export interface OutageSuite {
  harness: RelayHarness;
  /** The relay from {@link openOutageRelay}: every job of the suite runs through it. */
  relay: Relay;
}

/**
 * One outage suite per backend: a relay harness with quick retries, the relay of
 * {@link openOutageRelay} over it, and the fakes warmed up, opened before the suite's tests and
 * closed after them. `body` registers the tests; they read `suite.harness` and `suite.relay`.
 */
export function describeOutageSuite(title: string, body: (suite: OutageSuite) => void): Promise<void> {
  return describeEachBackend(title, (backend) => {
    const suite = {} as OutageSuite;
    before(async () => {
      suite.harness = await openRelayHarness(backend, { retry: RETRY });
      suite.relay = openOutageRelay(suite.harness);
      await warmUpFakes(suite.harness);
    });
    after(async () => suite.harness?.close());
    body(suite);
  });
}

/** A job row as a worker found it when it claimed the job: what the previous failure left there. */
export interface ClaimSnapshot {
  jobId: string;
  kind: string;
  attempt: number;
  lastError: string | null;
  runAt: Date;
}

export interface JobRow {
  id: string;
  kind: string;
  state: 'pending' | 'running' | 'dead';
  attempts: number;
  max_attempts: number;
  run_at: Date;
  last_error: string | null;
  updated_at: Date;
  payload: Record<string, unknown>;
}

/**
 * Runs the relay's real handlers in a real JobWorker, and before each handler reads the job's
 * row. A retried job is claimed with its `last_error` and `run_at` from the failure before, so the
 * snapshots show every failure without racing the retry (which comes after 10–100 ms).
 */
export class ObservedJobs {
  readonly claims: ClaimSnapshot[] = [];

  constructor(
    private readonly harness: RelayHarness,
    private readonly relay: Relay,
  ) {}

  /** Runs a worker over `kinds` (default: all) until `done()` holds, then stops it. */
  async runUntil(done: () => Promise<boolean>, options: { kinds?: readonly string[]; timeoutMs?: number; what?: string } = {}): Promise<void> {
    const handlers: Record<string, JobHandler> = {};
    for (const kind of options.kinds ?? Object.keys(this.relay.handlers)) {
      const handler = this.relay.handlers[kind]!;
      handlers[kind] = async (job) => {
        const [row] = await queryRows<{ last_error: string | null; run_at: Date }>(this.harness.db, sql`select last_error, run_at from jobs where id = ${job.id}`);
        this.claims.push({ jobId: job.id, kind: job.kind, attempt: job.attempts, lastError: row?.last_error ?? null, runAt: new Date(row!.run_at) });
        await handler(job);
      };
    }
    const worker = new JobWorker({ queue: this.relay.queue, handlers, logger: this.harness.logs.logger, pollIntervalMs: 10, concurrency: 4 });
    worker.start();
    try {
      const deadline = Date.now() + (options.timeoutMs ?? 30_000);
      while (!(await done())) {
        if (Date.now() > deadline) {
          const rows = await queryRows<JobRow>(this.harness.db, sql`select * from jobs order by created_at`);
          throw new Error(`timed out waiting for ${options.what ?? 'the jobs'}; jobs: ${JSON.stringify(rows)}`);
        }
        await sleep(10);
      }
    } finally {
      await worker.stop();
    }
  }

  /** The claims of one job, in order. */
  of(jobId: string): ClaimSnapshot[] {
    return this.claims.filter((claim) => claim.jobId === jobId);
  }
}

export async function jobRow(harness: RelayHarness, jobId: string): Promise<JobRow | undefined> {
  const [row] = await queryRows<JobRow>(harness.db, sql`select * from jobs where id = ${jobId}`);
  return row;
}

/** No job of the tenant is pending or running (dead ones stay): everything that could run has run. */
export function queueSettled(harness: RelayHarness, tenantId: string): () => Promise<boolean> {
  return async () => {
    const [row] = await queryRows<{ n: number }>(harness.db, sql`select count(*)::int as n from jobs where tenant_id = ${tenantId} and state in ('pending', 'running')`);
    return row!.n === 0;
  };
}

export function jobDead(harness: RelayHarness, jobId: string): () => Promise<boolean> {
  return async () => (await jobRow(harness, jobId))?.state === 'dead';
}

/** The job failed at least once and waits for its retry. */
export function jobWaitingForRetry(harness: RelayHarness, jobId: string): () => Promise<boolean> {
  return async () => {
    const row = await jobRow(harness, jobId);
    return row?.state === 'pending' && row.last_error !== null;
  };
}

/** One provider's case: the job under test is pending and has not been tried yet. */
export interface OutageCase {
  provider: OutageProvider;
  tenant: TenantContext;
  /** The contact's number: must never show up in a job row or a log line. */
  phone: string;
  /** The contact's message, with a unique canary in it. */
  inboundBody: string;
  canary: string;
  inboundMessageId: string;
  jobId: string;
  jobKind: string;
  /** The fake of the provider the job calls. */
  fake: FakeServer;
  /**
   * The provider-side results of the job: messages sent (Twilio, Podium, and the SMS an OpenAI
   * answer becomes), Airtable rows written, each with the id the provider gave it.
   */
  effects(): ProviderEffect[];
  /** The ids the relay recorded for those results (provider_message_id, airtable_record_id). */
  recordedIds(): Promise<string[]>;
  /** Plaintext that must stay out of job rows and logs: the number, the message and the answer. */
  secrets(): string[];
}

export interface ProviderEffect {
  id: string;
  body?: string;
}

/**
 * A tenant wired to the fakes with only what the case needs (so no other job calls the faulty
 * provider), a contact's message through the real webhook, and the jobs before the one under test
 * run to completion (the AI answer before a send).
 */
export async function prepareOutageCase(harness: RelayHarness, observed: ObservedJobs, provider: OutageProvider): Promise<OutageCase> {
  const slug = `${provider}-${randomBytes(4).toString('hex')}`;
  const tenant = await harness.putTenant(slug, (document) => {
    // Airtable syncs would call Airtable from every case; only its own case keeps it. The
    // Airtable case has no AI, so its inbound message has the sync job alone.
    if (provider !== 'airtable') delete document.airtable;
    if (provider === 'airtable') delete document.openai;
  });
  const phone = randomPhone();
  const canary = `canary${randomBytes(6).toString('hex')}`;
  const inboundBody = `Hi, this is Dana (${canary}). Can I move my cleaning to Friday?`;
  if (provider === 'podium') {
    // The customer writes in Podium; Podium calls our webhook with the message object.
    const received = harness.podium.receive({ locationUid: DEFAULT_PODIUM_LOCATION, from: phone, body: inboundBody, contactName: 'Dana Whitfield' });
    const response = await harness.postPodium(slug, podiumMessageEvent('message.received', harness.podium.messageJson(received)));
    assert.equal(response.statusCode, 204, response.body);
  } else {
    const { response } = await harness.sendSms(slug, phone, inboundBody);
    assert.equal(response.statusCode, 200, response.body);
  }
  const [inbound] = await queryRows<{ id: string }>(harness.db, sql`select id from messages where tenant_id = ${tenant.id} and direction = 'inbound'`);
  assert.ok(inbound, 'the inbound message was stored');

  const jobKind = provider === 'openai' ? JOB.aiReply : provider === 'airtable' ? JOB.airtableSync : JOB.send;
  if (jobKind === JOB.send) {
    const aiDone = async () => {
      const [row] = await queryRows<{ n: number }>(harness.db, sql`select count(*)::int as n from jobs where tenant_id = ${tenant.id} and kind = ${JOB.aiReply}`);
      return row!.n === 0;
    };
    await observed.runUntil(aiDone, { kinds: [JOB.aiReply], what: 'the AI answer' });
  }
  const pending = await queryRows<{ id: string; state: string; attempts: number }>(harness.db, sql`select id, state, attempts from jobs where tenant_id = ${tenant.id} and kind = ${jobKind}`);
  assert.equal(pending.length, 1, `one ${jobKind} job waits`);
  assert.deepEqual({ state: pending[0]!.state, attempts: pending[0]!.attempts }, { state: 'pending', attempts: 0 });

  const outbound = async () =>
    queryRows<{ provider_message_id: string | null }>(harness.db, sql`select provider_message_id from messages where tenant_id = ${tenant.id} and direction = 'outbound'`);
  const twilioTo = () => harness.twilio.messages.filter((message) => message.to === phone).map((message) => ({ id: message.sid, body: message.body }));
  const podiumTo = () =>
    harness.podium.messages
      .filter((message) => message.direction === 'outbound' && harness.podium.conversations.some((conversation) => conversation.uid === message.conversationUid && conversation.channel.identifier === phone))
      .map((message) => ({ id: message.uid, body: message.body }));
  const airtableRows = () => {
    const table = harness.airtable.tables.get(`${tenant.settings.airtable?.baseId}/Conversations`);
    return [...(table?.entries() ?? [])].filter(([, fields]) => fields['Ciphergate ID'] === inbound.id).map(([id]) => ({ id }));
  };

  const fakes: Record<OutageProvider, FakeServer> = { twilio: harness.twilio, openai: harness.openai, airtable: harness.airtable, podium: harness.podium };
  const effects: Record<OutageProvider, () => ProviderEffect[]> = { twilio: twilioTo, openai: twilioTo, airtable: airtableRows, podium: podiumTo };
  const recordedIds: Record<OutageProvider, () => Promise<string[]>> = {
    twilio: async () => (await outbound()).map((row) => row.provider_message_id ?? '(none)'),
    openai: async () => (await outbound()).map((row) => row.provider_message_id ?? '(none)'),
    podium: async () => (await outbound()).map((row) => row.provider_message_id ?? '(none)'),
    airtable: async () =>
      (await queryRows<{ airtable_record_id: string | null }>(harness.db, sql`select airtable_record_id from messages where id = ${inbound.id}`)).map((row) => row.airtable_record_id ?? '(none)'),
  };
  const secrets = () => [phone, phone.slice(2), inboundBody, ...effects[provider]().flatMap((effect) => (effect.body ? [effect.body] : []))];
  return {
    provider,
    tenant,
    phone,
    inboundBody,
    canary,
    inboundMessageId: inbound.id,
    jobId: pending[0]!.id,
    jobKind,
    fake: fakes[provider],
    effects: effects[provider],
    recordedIds: recordedIds[provider],
    secrets,
  };
}

/** The completions OpenAI was asked for in this case (its prompt carries the case's canary). */
export function completionsOf(harness: RelayHarness, outage: OutageCase): number {
  return harness.openai.completions.filter((completion) => JSON.stringify(completion).includes(outage.canary)).length;
}

/**
 * A provider error answer that quotes the request, as real ones do ("The 'To' number +1… is not a
 * valid phone number"): the relay must not copy it into job rows or logs.
 */
export function echoingErrorBody(outage: OutageCase, status: number): unknown {
  const quoted = `request for ${outage.phone} failed (${outage.inboundBody})`;
  switch (outage.provider) {
    case 'twilio':
      return { code: 20500, message: quoted, more_info: 'https://www.twilio.com/docs/errors/20500', status };
    case 'openai':
      return { error: { message: quoted, type: 'server_error', param: null, code: null } };
    case 'airtable':
      return { error: { type: 'SERVER_ERROR', message: quoted } };
    case 'podium':
      return { code: 'internal_error', message: quoted };
  }
}

/** Asserts that none of `secrets` appears in `text`. */
export function assertNoPlaintext(text: string, secrets: string[], where: string): void {
  for (const secret of secrets) assert.equal(text.includes(secret), false, `${where} holds plaintext (${secret.slice(0, 12)}…)`);
}

/* Sends whose outcome is uncertain (uncertain-send*.test.ts). */

export type SendProvider = 'twilio' | 'podium';
export const SEND_PROVIDERS: readonly SendProvider[] = ['twilio', 'podium'];

export interface OutboundRow {
  id: string;
  provider_message_id: string | null;
  send_started_at: Date | null;
  status: string;
}

/** The case's outbound messages, oldest first. */
export function outboundRows(harness: RelayHarness, outage: OutageCase): Promise<OutboundRow[]> {
  return queryRows<OutboundRow>(
    harness.db,
    sql`select id, provider_message_id, send_started_at, status from messages where tenant_id = ${outage.tenant.id} and direction = 'outbound' order by created_at, id`,
  );
}

/** Create-message requests that reached the provider's fake so far (every tenant's). */
export function createRequests(harness: RelayHarness, provider: SendProvider): number {
  return provider === 'twilio'
    ? harness.twilio.requests.filter((request) => request.method === 'POST' && request.path.endsWith('/Messages.json')).length
    : harness.podium.requests.filter((request) => request.method === 'POST' && request.path === '/v4/messages').length;
}

/** A staff message with `text` to the case's contact, stored with its send job as the API would. */
export async function storeStaffMessage(harness: RelayHarness, relay: Relay, outage: OutageCase, text: string): Promise<string> {
  const [conversation] = await queryRows<{ id: string; contact_id: string }>(harness.db, sql`select id, contact_id from conversations where tenant_id = ${outage.tenant.id}`);
  const stored = await relay.conversations.storeOutbound(
    { tenantId: outage.tenant.id, conversationId: conversation!.id, contactId: conversation!.contact_id, author: 'staff', body: text, dedupeKey: `api:test:${randomUUID()}` },
    (messageId) => [sendJob(outage.tenant.id, messageId)],
  );
  return stored.messageId;
}

/** The job as a worker that died mid-attempt leaves it: running, attempt 1 used, its lease run out. */
export async function abandonJob(harness: RelayHarness, jobId: string): Promise<void> {
  await harness.db.execute(
    sql`update jobs set state = 'running', attempts = 1, locked_by = 'worker-that-died', locked_until = now() - interval '1 second', updated_at = now() where id = ${jobId}`,
  );
}

/** What a send that died after reaching the provider left there: the message, sent through the same client code. */
export async function sendAtProvider(harness: RelayHarness, outage: OutageCase, provider: SendProvider, messageId: string, body: string): Promise<string> {
  if (provider === 'twilio') {
    const client = createTwilioSmsClient({ apiUrl: harness.twilio.url });
    const sent = await client.send(
      { accountSid: DEFAULT_TWILIO_ACCOUNT.accountSid, authToken: DEFAULT_TWILIO_ACCOUNT.authToken },
      { from: TENANT_FROM_NUMBER, to: outage.phone, body, statusCallback: `${PUBLIC_URL}/webhooks/twilio/${outage.tenant.slug}/status?m=${messageId}` },
    );
    return sent.sid;
  }
  const client = createPodiumClient({ apiUrl: harness.podium.url });
  return (await client.send(DEFAULT_PODIUM_TOKEN, { locationUid: DEFAULT_PODIUM_LOCATION, to: outage.phone, body })).uid;
}
