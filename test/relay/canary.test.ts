import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { createAirtableWebhooksClient } from '../../src/providers/airtable/webhooks-client.js';
import { openDatabase, queryRows, type Db } from '../../src/store/connection.js';
import { signAirtableNotification, startAirtableFake, type AirtableFake } from '../fakes/airtable.js';
import { echoPlaceholders, startOpenAiFake, type OpenAiFake } from '../fakes/openai.js';
import { DEFAULT_PODIUM_LOCATION, podiumMessageEvent, signPodiumRequest, startPodiumFake, type PodiumFake } from '../fakes/podium.js';
import { signTwilioRequest, startTwilioFake, type TwilioFake } from '../fakes/twilio.js';
import { startChildServe, type ChildServe } from '../helpers/child-serve.js';
import { runCliProcess, stopChildren } from '../helpers/cli.js';
import { createTestDatabase, postgresUnavailableReason, type TestDatabase } from '../helpers/database.js';
import { assertNoLeaks, canary, dumpTables, findLeakingLines, findLeaks, needlesFor, pgDump, phoneNeedles, randomLetters, scanTree, type Needle } from '../helpers/canaries.js';
import { randomPhone } from '../helpers/relay.js';
import { serviceGate } from '../helpers/services.js';

/**
 * The canary test of issue 6: unique strings sent as message bodies, contact names and phone
 * numbers (and the tenant's provider secrets) never appear in the data dir, a pg_dump, the logs
 * or the job payloads.
 *
 * A real `ciphergate serve` child, logging at debug (the most it ever logs), takes the traffic a
 * tenant sees: signed Twilio SMS (one with another phone number inside its text), a Podium
 * message with a contact name, manual sends through the API (one of which Twilio refuses with an
 * error that quotes the number, as its 21211 does), a staff reply typed into Airtable, AI answers
 * that carry canaries of their own, status callbacks, a conversation looked up by phone number
 * and read through the API, and forged, oversized, malformed and wrongly configured deliveries.
 * First with `--no-workers`, so every job is still pending when its payload is read; then with
 * workers until every job is done or dead. Then everything left behind is searched byte for byte
 * for every watched value, in every encoding a store might use (UTF-8, UTF-16LE, hex as
 * PostgreSQL prints bytea, base64 at each alignment).
 *
 * Each search is shown able to find a leak: canaries written on purpose into the data dir, a
 * table and a dump are found by the same scanner (the positive controls), so a clean result means
 * "nothing there", not "the scanner is blind".
 */
after(stopChildren);

const SLUG = 'canary-clinic';
/** What providers are told to call; signatures are computed over it, never over 127.0.0.1. */
const PUBLIC_URL = 'https://gate.example.test';
const TENANT_FROM_NUMBER = '+14155550100';
const AIRTABLE_TABLE = 'Conversations';

// ---------------------------------------------------------------------------------------------
// The run

/** Where the child keeps its data: a data dir (PGlite) or a PostgreSQL database. */
interface Store {
  backend: 'pglite' | 'postgres';
  /** The children's working directory; CIPHERGATE_DATA_DIR is inside it. */
  workDir: string;
  dataDir: string;
  url?: string;
}

interface CanaryRun {
  /** Bodies, names, phone numbers and secrets: none may be found at rest or in a log. */
  needles: Needle[];
  /** The phone numbers and the contact's name alone: none may reach OpenAI or Airtable either. */
  personalNeedles: Needle[];
  /** Every log line and CLI message of the run (stdout and stderr of every process). */
  logs: string;
  /** How each `serve` ended: SIGTERM must drain and exit 0 (and PGlite flush its files). */
  stops: Array<{ label: string; code: number | null; signal: NodeJS.Signals | null; logTail: string }>;
  /** Kind, state, payload, last_error and singleton_key of every job while all were pending. */
  pendingJobs: { text: string; pendingKinds: string[] };
  /** The same at the end: done jobs are deleted, failed ones stay as dead letters. */
  finalJobs: { text: string; deadKinds: string[] };
  audit: { text: string; actions: string[] };
  tablesDump: { tables: string[]; text: string };
  fakes: { twilio: TwilioFake; openai: OpenAiFake; airtable: AirtableFake; podium: PodiumFake };
  airtableBaseId: string;
  /** Texts the run must have delivered to a provider: proof that plaintext went through the process. */
  deliveredTexts: string[];
  /** Bodies the conversations API opened for the API key: proof that what was sealed opens again. */
  bodiesReadThroughApi: string[];
  inboundCanaryRead: string;
}


/** Opens the store the child used, after the child has stopped (PGlite is single-process). */
async function withDatabase<T>(store: Store, use: (db: Db) => Promise<T>): Promise<T> {
  const database = await openDatabase(store.url ? { url: store.url, maxConnections: 2 } : { dataDir: store.dataDir });
  try {
    return await use(database.db);
  } finally {
    await database.close();
  }
}

async function readJobs(db: Db): Promise<{ text: string; pendingKinds: string[]; deadKinds: string[] }> {
  const rows = await queryRows<{ kind: string; state: string; payload: string; last_error: string | null; singleton_key: string | null }>(
    db,
    sql`select kind, state, payload::text as payload, last_error, singleton_key from jobs order by created_at`,
  );
  return {
    text: rows.map((row) => `${row.kind} ${row.state} ${row.payload} ${row.last_error ?? ''} ${row.singleton_key ?? ''}`).join('\n'),
    pendingKinds: rows.filter((row) => row.state === 'pending').map((row) => row.kind),
    deadKinds: rows.filter((row) => row.state === 'dead').map((row) => row.kind),
  };
}

async function waitUntil(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Nothing pending (due or waiting for a retry) and nothing running, twice in a row: the pipeline is at rest. */
async function waitForIdleQueue(server: ChildServe): Promise<void> {
  let idleLooks = 0;
  await waitUntil('the job queue is empty', async () => {
    const response = await fetch(`${server.url}/readyz`);
    const body = (await response.json()) as { details?: { queue?: { pending: number; running: number } } };
    const queue = body.details?.queue;
    idleLooks = queue && queue.pending === 0 && queue.running === 0 ? idleLooks + 1 : 0;
    return idleLooks >= 2;
  });
}

function postTwilio(server: ChildServe, kind: 'sms' | 'status', params: Record<string, string>, options: { authToken: string; query?: string; forge?: boolean }) {
  const path = `/webhooks/twilio/${SLUG}/${kind}${options.query ? `?${options.query}` : ''}`;
  const signature = options.forge ? randomBytes(20).toString('base64') : signTwilioRequest(options.authToken, `${PUBLIC_URL}${path}`, params);
  return fetch(`${server.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': signature },
    body: new URLSearchParams(params).toString(),
  });
}

/** An inbound SMS as Twilio posts it (https://www.twilio.com/docs/messaging/guides/webhook-request). */
function smsParams(accountSid: string, from: string, body: string): Record<string, string> {
  const sid = `SM${randomBytes(16).toString('hex')}`;
  return { MessageSid: sid, SmsSid: sid, AccountSid: accountSid, From: from, To: TENANT_FROM_NUMBER, Body: body, NumMedia: '0', ApiVersion: '2010-04-01' };
}

function callApi(server: ChildServe, apiKey: string, method: 'GET' | 'POST', path: string, body?: string) {
  return fetch(`${server.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${apiKey}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json', 'idempotency-key': `canary-${randomBytes(8).toString('hex')}` }),
    },
    ...(body === undefined ? {} : { body }),
  });
}

async function runCanaryConversation(store: Store): Promise<CanaryRun> {
  const accountSid = `AC${randomBytes(16).toString('hex')}`;
  // Unique secrets, so finding one anywhere means it leaked from this run.
  const secrets = {
    twilioAuthToken: `twilio-token-${randomBytes(12).toString('hex')}`,
    openAiKey: `sk-canary-${randomBytes(16).toString('hex')}`,
    airtableKey: `patCanary${randomBytes(8).toString('hex')}.${randomBytes(16).toString('hex')}`,
    podiumToken: `podium-token-${randomBytes(12).toString('hex')}`,
    podiumWebhookSecret: `podium-webhook-${randomBytes(12).toString('hex')}`,
  };
  const aiCanaries: string[] = [];
  const [twilio, openai, airtable, podium] = await Promise.all([
    startTwilioFake({ accounts: { [accountSid]: secrets.twilioAuthToken } }),
    startOpenAiFake({
      apiKeys: [secrets.openAiKey],
      // Each answer carries a canary of its own (and puts back what the redactor hid), so the
      // AI's words are watched as closely as the customer's.
      answer: (request) => {
        const marker = canary();
        aiCanaries.push(marker);
        return `${echoPlaceholders(request)} Your booking reference is ${marker}.`;
      },
    }),
    // The per-base rate check is off here: this test is about plaintext, and a child busy with
    // PGlite on a loaded machine can bunch its (correctly paced) departures into one arrival second.
    startAirtableFake({ apiKeys: [secrets.airtableKey], rateLimitPerSecond: 0 }),
    startPodiumFake({ tokens: [secrets.podiumToken] }),
  ]);
  const logParts: string[] = [];
  const stops: CanaryRun['stops'] = [];
  const stopAndRecord = async (label: string, server: ChildServe) => {
    const code = await server.stop();
    logParts.push(server.logs());
    stops.push({ label, code, signal: server.child.signalCode, logTail: server.logs().slice(-3000) });
  };
  try {
    const baseId = `app${randomBytes(7).toString('hex')}`;
    const webhook = await createAirtableWebhooksClient({ apiUrl: airtable.url }).createWebhook(
      { apiKey: secrets.airtableKey, baseId },
      { notificationUrl: `${PUBLIC_URL}/webhooks/airtable/${SLUG}` },
    );
    // PGlite keeps its generated key in the data dir (the embedded default); PostgreSQL gets one.
    const masterKey = store.backend === 'postgres' ? randomBytes(32).toString('base64') : undefined;
    const env: Record<string, string | undefined> = {
      CIPHERGATE_DATA_DIR: store.dataDir,
      CIPHERGATE_DATABASE_URL: store.url,
      CIPHERGATE_MASTER_KEY: masterKey,
      CIPHERGATE_PUBLIC_URL: PUBLIC_URL,
      CIPHERGATE_TWILIO_API_URL: twilio.url,
      CIPHERGATE_OPENAI_BASE_URL: `${openai.url}/v1`,
      CIPHERGATE_AIRTABLE_API_URL: airtable.url,
      CIPHERGATE_PODIUM_API_URL: podium.url,
      CIPHERGATE_LOG_LEVEL: 'debug',
    };

    // The tenant as an operator puts it: Airtable gets masked phone numbers and references only.
    const tenantJson = JSON.stringify({
      name: 'Canary Clinic',
      twilio: { accountSid, authToken: secrets.twilioAuthToken, fromNumber: TENANT_FROM_NUMBER },
      openai: { apiKey: secrets.openAiKey, model: 'gpt-4o-mini', systemPrompt: 'You are the front desk of a dental clinic. Be brief.' },
      airtable: {
        apiKey: secrets.airtableKey,
        baseId,
        table: AIRTABLE_TABLE,
        fields: { phone: 'masked', name: 'sealed', body: 'sealed', aiReply: 'sealed' },
        webhookId: webhook.id,
        macSecretBase64: webhook.macSecretBase64,
      },
      podium: { apiKey: secrets.podiumToken, locationUid: DEFAULT_PODIUM_LOCATION, webhookSecret: secrets.podiumWebhookSecret },
    });
    const put = await runCliProcess(['tenants', 'put', SLUG], { env, cwd: store.workDir, stdin: tenantJson, timeoutMs: 180_000 });
    logParts.push(put.stdout, put.stderr);
    assert.equal(put.code, 0, put.stderr);
    const keyCreated = await runCliProcess(['api-keys', 'create', '--tenant', SLUG, '--scope', 'messages:send', '--scope', 'conversations:read', '--name', 'canary caller'], {
      env,
      cwd: store.workDir,
      timeoutMs: 180_000,
    });
    // Its stdout is the key itself, printed once by design; the note on stderr counts as a log.
    logParts.push(keyCreated.stderr);
    assert.equal(keyCreated.code, 0, keyCreated.stderr);
    const apiKey = keyCreated.stdout.trim();

    const phones = {
      sms: [randomPhone(), randomPhone(), randomPhone()],
      /** Written inside the first SMS's text. */
      inBody: randomPhone(),
      podium: randomPhone(),
      api: randomPhone(),
      refused: randomPhone(),
      forged: randomPhone(),
      oversized: randomPhone(),
      getWebhook: randomPhone(),
    };
    const contactName = `Wilhelmina ${randomLetters(1).toUpperCase()}${randomLetters(11)}`;
    const bodies = {
      sms: [canary(), canary(), canary()],
      podium: canary(),
      api: canary(),
      refused: canary(),
      manual: canary(),
      forged: canary(),
      oversized: canary(),
      getWebhook: canary(),
      malformedJson: canary(),
      unknownMember: canary(),
    };

    // Phase 1: HTTP only. Every delivery is stored with its jobs, none of which runs yet.
    const httpOnly = await startChildServe({ env, cwd: store.workDir, args: ['--no-workers'] });
    try {
      for (const [index, body] of bodies.sms.entries()) {
        const text = index === 0 ? `Hi, can I move my cleaning to Friday? Call me back on ${phones.inBody}. Ref ${body}` : `Is there parking nearby? ${body}`;
        const response = await postTwilio(httpOnly, 'sms', smsParams(accountSid, phones.sms[index]!, text), { authToken: secrets.twilioAuthToken });
        assert.equal(response.status, 200, await response.text());
      }

      const received = podium.receive({ locationUid: DEFAULT_PODIUM_LOCATION, from: phones.podium, body: `This is ${contactName}, I lost a filling. ${bodies.podium}`, contactName });
      const podiumEvent = podiumMessageEvent('message.received', podium.messageJson(received));
      const timestamp = Date.now();
      const podiumResponse = await fetch(`${httpOnly.url}/webhooks/podium/${SLUG}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'podium-timestamp': String(timestamp), 'podium-signature': signPodiumRequest(secrets.podiumWebhookSecret, timestamp, podiumEvent, 'hex') },
        body: podiumEvent,
      });
      assert.equal(podiumResponse.status, 204, await podiumResponse.text());

      const sent = await callApi(httpOnly, apiKey, 'POST', '/api/v1/messages', JSON.stringify({ tenant: SLUG, to: phones.api, body: `Your appointment is confirmed. ${bodies.api}` }));
      assert.equal(sent.status, 202, await sent.text());
      // Twilio refuses this one with an error that quotes the number, as its 21211 does
      // (https://www.twilio.com/docs/errors/21211): the quote must not reach a log or the queue.
      twilio.failNext(
        {
          kind: 'status',
          status: 400,
          body: { code: 21211, message: `The 'To' number ${phones.refused} is not a valid phone number.`, more_info: 'https://www.twilio.com/docs/errors/21211', status: 400 },
        },
        { match: (request) => request.method === 'POST' && new URLSearchParams(request.rawBody.toString('utf8')).get('To') === phones.refused },
      );
      const refused = await callApi(httpOnly, apiKey, 'POST', '/api/v1/messages', JSON.stringify({ tenant: SLUG, to: phones.refused, body: `Reminder: ${bodies.refused}` }));
      assert.equal(refused.status, 202, await refused.text());

      // Deliveries that are refused must leave nothing behind either, not even in a log line.
      const forged = await postTwilio(httpOnly, 'sms', smsParams(accountSid, phones.forged, `Forged ${bodies.forged}`), { authToken: secrets.twilioAuthToken, forge: true });
      assert.equal(forged.status, 403);
      const oversized = await postTwilio(httpOnly, 'sms', smsParams(accountSid, phones.oversized, `${bodies.oversized} ${'x'.repeat(70 * 1024)}`), { authToken: secrets.twilioAuthToken });
      assert.equal(oversized.status, 413);
      const malformed = await callApi(httpOnly, apiKey, 'POST', '/api/v1/messages', `{"tenant":"${SLUG}","to":"${phones.api}","body":"${bodies.malformedJson}"`);
      assert.equal(malformed.status, 400);
      const unknownMember = await callApi(httpOnly, apiKey, 'POST', '/api/v1/messages', JSON.stringify({ tenant: SLUG, to: phones.api, body: 'Hello', note: bodies.unknownMember }));
      assert.equal(unknownMember.status, 400);
      // A Twilio number whose webhook is set to HTTP GET in the console: Twilio then puts every
      // parameter, Body and From included, in the query string
      // (https://www.twilio.com/docs/usage/webhooks/messaging-webhooks). Only POST is served.
      const getParams = smsParams(accountSid, phones.getWebhook, `Sent by GET ${bodies.getWebhook}`);
      const getPath = `/webhooks/twilio/${SLUG}/sms?${new URLSearchParams(getParams).toString()}`;
      const getWebhook = await fetch(`${httpOnly.url}${getPath}`, { headers: { 'x-twilio-signature': signTwilioRequest(secrets.twilioAuthToken, `${PUBLIC_URL}${getPath}`, {}) } });
      assert.ok(getWebhook.status >= 400 && getWebhook.status < 500, `GET webhook answered ${getWebhook.status}`);
    } finally {
      await stopAndRecord('serve --no-workers', httpOnly);
    }

    const pendingJobs = await withDatabase(store, (db) => readJobs(db));

    // Phase 2: the workers. An OpenAI rate limit on the way exercises the retry path and its log.
    openai.failNext({ kind: 'rate-limit', retryAfterSeconds: 1 });
    let bodiesReadThroughApi: string[] = [];
    const full = await startChildServe({ env, cwd: store.workDir });
    try {
      const outbound = () => [...twilio.messages.map((message) => message.body), ...podium.messages.filter((message) => message.direction === 'outbound').map((message) => message.body)];
      await waitUntil(
        'every AI answer and the API message reached a provider',
        () => aiCanaries.length >= 4 && aiCanaries.every((marker) => outbound().some((body) => body.includes(marker))) && outbound().some((body) => body.includes(bodies.api)),
      );
      await waitForIdleQueue(full);

      // Twilio's status callbacks for what it sent, in the form Twilio posts (both numbers in it).
      for (const message of twilio.messages) {
        const query = new URL(message.statusCallback!).search.slice(1);
        const params = { MessageSid: message.sid, SmsSid: message.sid, MessageStatus: 'delivered', SmsStatus: 'delivered', AccountSid: accountSid, From: message.from, To: message.to, ApiVersion: '2010-04-01' };
        const response = await postTwilio(full, 'status', params, { authToken: secrets.twilioAuthToken, query });
        assert.equal(response.status, 204, await response.text());
      }
      await waitForIdleQueue(full);

      // Staff type a reply into the Airtable row of the first SMS; Airtable pings the webhook.
      const rows = airtable.tables.get(`${baseId}/${AIRTABLE_TABLE}`);
      assert.ok(rows && rows.size > 0, 'nothing was synced to Airtable');
      const [recordId] = [...rows.entries()].find(([, fields]) => fields.Direction === 'inbound' && String(fields.Phone).endsWith(phones.sms[0]!.slice(-4))) ?? [];
      assert.ok(recordId, 'the first SMS has no Airtable row');
      const notification = JSON.stringify(airtable.editRecord(baseId, AIRTABLE_TABLE, recordId, { 'Manual Reply': `Yes, Friday works. ${bodies.manual}` }));
      const ping = await fetch(`${full.url}/webhooks/airtable/${SLUG}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-airtable-content-mac': signAirtableNotification(webhook.macSecretBase64, notification) },
        body: notification,
      });
      assert.equal(ping.status, 204, await ping.text());
      await waitUntil('the manual reply reached Twilio', () => twilio.messages.some((message) => message.body.includes(bodies.manual)));
      await waitForIdleQueue(full);

      // A machine looks the second texter up by phone number (the documented lookup) and reads.
      const lookup = await callApi(full, apiKey, 'GET', `/api/v1/conversations?tenant=${SLUG}&phone=${encodeURIComponent(phones.sms[1]!)}`);
      assert.equal(lookup.status, 200, await lookup.clone().text());
      const [conversation] = ((await lookup.json()) as { conversations: Array<{ id: string }> }).conversations;
      assert.ok(conversation, 'the lookup found no conversation');
      const read = await callApi(full, apiKey, 'GET', `/api/v1/conversations/${conversation.id}/messages`);
      assert.equal(read.status, 200, await read.clone().text());
      bodiesReadThroughApi = ((await read.json()) as { messages: Array<{ body: string }> }).messages.map((message) => message.body);
    } finally {
      await stopAndRecord('serve', full);
    }

    const final = await withDatabase(store, async (db) => {
      const auditRows = await queryRows<{ action: string; details: string }>(db, sql`select action, details::text as details from audit_events order by seq`);
      return {
        jobs: await readJobs(db),
        audit: { text: auditRows.map((row) => `${row.action} ${row.details}`).join('\n'), actions: auditRows.map((row) => row.action) },
        tables: await dumpTables(db),
      };
    });

    const personalNeedles = [
      ...Object.entries(phones).flatMap(([path, value]) => (Array.isArray(value) ? value.flatMap((phone, index) => phoneNeedles(`phone ${path}#${index + 1}`, phone)) : phoneNeedles(`phone ${path}`, value))),
      ...needlesFor('contact name', contactName),
      ...needlesFor('contact surname', contactName.split(' ')[1]!),
    ];
    const needles = [
      ...personalNeedles,
      ...Object.entries(bodies).flatMap(([path, value]) => (Array.isArray(value) ? value.flatMap((body, index) => needlesFor(`body ${path}#${index + 1}`, body)) : needlesFor(`body ${path}`, value))),
      ...aiCanaries.flatMap((marker, index) => needlesFor(`AI answer #${index + 1}`, marker)),
      ...Object.entries(secrets).flatMap(([name, value]) => needlesFor(`secret ${name}`, value)),
      ...needlesFor('secret airtableMacSecret', webhook.macSecretBase64),
      ...needlesFor('secret apiKey', apiKey),
      ...(masterKey ? needlesFor('secret masterKey', masterKey) : []),
    ];
    return {
      needles,
      personalNeedles,
      logs: logParts.join('\n'),
      stops,
      pendingJobs,
      finalJobs: final.jobs,
      audit: final.audit,
      tablesDump: final.tables,
      fakes: { twilio, openai, airtable, podium },
      airtableBaseId: baseId,
      deliveredTexts: [bodies.api, bodies.manual, ...aiCanaries],
      bodiesReadThroughApi,
      inboundCanaryRead: bodies.sms[1]!,
    };
  } finally {
    await Promise.all([twilio.close(), openai.close(), airtable.close(), podium.close()]);
  }
}

// ---------------------------------------------------------------------------------------------
// The checks, the same on both backends

function declareCommonChecks(getRun: () => CanaryRun): void {
  test('the run carried plaintext through every path (else a clean scan would prove nothing)', () => {
    const run = getRun();
    for (const stop of run.stops) assert.deepEqual([stop.label, stop.code, stop.signal], [stop.label, 0, null], `${stop.label} did not stop cleanly: ${stop.logTail}`);
    const { twilio, openai, airtable, podium } = run.fakes;
    const delivered = [...twilio.messages.map((message) => message.body), ...podium.messages.map((message) => message.body)].join('\n');
    for (const expected of run.deliveredTexts) assert.ok(delivered.includes(expected), `${expected} never reached a provider`);
    assert.ok(run.bodiesReadThroughApi.some((body) => body.includes(run.inboundCanaryRead)), 'the API did not open the sealed body it stored');
    assert.ok(run.audit.actions.includes('conversation.read'), 'the read through the API was not audited');
    assert.ok(run.audit.actions.includes('webhook.rejected'), 'the refused deliveries were not audited');
    assert.deepEqual([...twilio.violations, ...openai.violations, ...airtable.violations, ...podium.violations], []);
  });

  test('job payloads hold ids only: while pending, and as dead letters after a provider error quoting the number', () => {
    const run = getRun();
    const pending = run.pendingJobs.pendingKinds;
    assert.ok(['ai-reply', 'send', 'airtable-sync'].every((kind) => pending.includes(kind)) && pending.length >= 6, `expected every delivery's jobs pending (Airtable writes are one job per tenant), got: ${pending.join(', ')}`);
    assertNoLeaks(findLeakingLines(run.pendingJobs.text, run.needles), 'a pending job');
    assert.ok(run.finalJobs.deadKinds.includes('send'), 'the send Twilio refused should be a dead letter');
    assertNoLeaks(findLeakingLines(run.finalJobs.text, run.needles), 'a job at the end (dead letters included)');
  });

  test('no row of any table, audit events included, holds plaintext or a secret', () => {
    const run = getRun();
    for (const table of ['public.messages', 'public.contacts', 'public.tenants', 'public.jobs', 'public.audit_events', 'public.api_keys']) {
      assert.ok(run.tablesDump.tables.includes(table), `${table} was not dumped (tables: ${run.tablesDump.tables.join(', ')})`);
    }
    assertNoLeaks(findLeakingLines(run.audit.text, run.needles), 'an audit event');
    assertNoLeaks(findLeakingLines(run.tablesDump.text, run.needles), 'a table row');
  });

  test('no log line of serve or the CLI holds a body, a name, a phone number or a secret', () => {
    const run = getRun();
    assert.match(run.logs, /"level":20/, 'no debug line was logged: the check would not be strict');
    assert.match(run.logs, /request completed/);
    assertNoLeaks(findLeakingLines(run.logs, run.needles), 'the logs');
  });

  test('OpenAI gets no phone number or name, and Airtable only masked values and references', () => {
    const run = getRun();
    const { openai, airtable } = run.fakes;
    assert.ok(openai.requests.length >= 4);
    assertNoLeaks(findLeaks(Buffer.concat(openai.requests.map((request) => request.rawBody)), run.personalNeedles), 'the requests to OpenAI (personal data)');
    const toAirtable = Buffer.concat(airtable.requests.map((request) => Buffer.concat([Buffer.from(`${request.method} ${request.path}?${request.query.toString()}\n`), request.rawBody, Buffer.from('\n')])));
    assertNoLeaks(findLeakingLines(toAirtable.toString('utf8'), run.needles), 'the requests to Airtable');
    // What rests in the table (the manual reply staff typed is cleared once sent).
    const cells = JSON.stringify([...(airtable.tables.get(`${run.airtableBaseId}/${AIRTABLE_TABLE}`)?.values() ?? [])]);
    assertNoLeaks(findLeaks(cells, run.needles), 'the Airtable table');
  });
}

describe('canaries: the scanner itself', () => {
  test('finds a watched value in every encoding it claims to, at every byte offset, and nothing in random bytes', () => {
    const marker = canary();
    const needles = needlesFor('marker', marker);
    for (const form of ['utf8', 'utf16le', 'hex', 'base64'] as const) {
      for (let offset = 0; offset < 3; offset += 1) {
        const payload = Buffer.concat([randomBytes(offset), Buffer.from(marker), randomBytes(5)]);
        const encoded = form === 'utf8' ? payload : form === 'utf16le' ? Buffer.from(payload.toString('latin1'), 'utf16le') : Buffer.from(payload.toString(form), 'latin1');
        const haystack = Buffer.concat([randomBytes(1000), encoded, randomBytes(1000)]);
        assert.ok(findLeaks(haystack, needles).some((leak) => leak.includes(form)), `missed the marker as ${form} at offset ${offset}`);
      }
    }
    const phone = randomPhone();
    assert.ok(findLeaks(`"to":"${phone.slice(1)}"`, phoneNeedles('phone', phone)).length > 0, 'missed E.164 digits without +');
    assert.ok(findLeaks(`phone=${encodeURIComponent(phone)}`, phoneNeedles('phone', phone)).length > 0, 'missed a URL-encoded E.164 number');
    assert.ok(findLeaks(`call (${phone.slice(2, 5)}) ${phone.slice(5, 8)}-${phone.slice(8)}`, phoneNeedles('phone', phone)).length > 0, 'missed a formatted number');
    assert.deepEqual(findLeaks(randomBytes(1 << 20), [...needles, ...phoneNeedles('phone', phone)]), []);
  });
});

describe('canaries on the embedded database (PGlite)', { timeout: 900_000 }, () => {
  const workDir = mkdtempSync(join(tmpdir(), 'cg-canary-'));
  const store: Store = { backend: 'pglite', workDir, dataDir: join(workDir, 'data') };
  let run: CanaryRun | undefined;
  before(async () => {
    run = await runCanaryConversation(store);
  });
  after(() => rmSync(workDir, { recursive: true, force: true }));

  declareCommonChecks(() => run!);

  test('no file in the data dir holds plaintext or a secret, byte for byte', () => {
    // The working directory of every process of the run; the data dir is inside it.
    const scanned = scanTree(workDir, run!.needles);
    assert.ok(scanned.files > 10 && scanned.bytes > 1_000_000, `the data dir looks empty: ${scanned.files} files, ${scanned.bytes} bytes`);
    assertNoLeaks(scanned.leaks, 'the data dir');
  });

  test('positive control: canaries written on purpose into the data dir are found', async () => {
    // Through PGlite (a text and a bytea column: no compression or encoding hides them from the
    // scan) and as a file in UTF-16LE; then the same scan as above must report all three.
    const control = { text: canary(), bytea: canary(), file: canary() };
    await withDatabase(store, async (db) => {
      await db.execute(sql`create table canary_positive_control (note text, blob bytea)`);
      await db.execute(sql`insert into canary_positive_control values (${control.text}, convert_to(${control.bytea}, 'UTF8'))`);
    });
    writeFileSync(join(store.dataDir, 'canary-positive-control.bin'), Buffer.concat([randomBytes(64), Buffer.from(control.file, 'utf16le'), randomBytes(64)]));
    const controlNeedles = [...needlesFor('control text', control.text), ...needlesFor('control bytea', control.bytea), ...needlesFor('control file', control.file)];
    const scanned = scanTree(workDir, controlNeedles);
    for (const expected of ['control text as utf8', 'control bytea as utf8', 'control file as utf16le']) {
      assert.ok(scanned.leaks.some((leak) => leak.endsWith(expected)), `the scan missed the ${expected} written on purpose (found: ${scanned.leaks.join('; ')})`);
    }
    const dumped = await withDatabase(store, (db) => dumpTables(db));
    assert.deepEqual(findLeaks(dumped.text, controlNeedles).sort(), ['control bytea as hex', 'control text as utf8']);
  });
});

describe('canaries on PostgreSQL', { timeout: 900_000 }, async () => {
  const gate = serviceGate('PostgreSQL', await postgresUnavailableReason());
  const workDir = mkdtempSync(join(tmpdir(), 'cg-canary-pg-'));
  let database: TestDatabase | undefined;
  let store: Store | undefined;
  let run: CanaryRun | undefined;
  before(async () => {
    if (gate.skip) return;
    // Created empty: the child migrates it, as `serve` does on a fresh database.
    database = await createTestDatabase('postgres', { migrated: false });
    await database.database.close();
    store = { backend: 'postgres', workDir, dataDir: join(workDir, 'data'), url: database.url! };
    run = await runCanaryConversation(store);
  });
  after(async () => {
    await stopChildren();
    // Closes its (already closed) connection, then drops the database.
    await database?.cleanup();
    rmSync(workDir, { recursive: true, force: true });
  });

  if (gate.skip) {
    test('canary checks', { skip: gate.skip }, () => undefined);
    return;
  }

  declareCommonChecks(() => run!);

  test('a pg_dump of the database holds no plaintext or secret', async () => {
    const dump = await pgDump(store!.url!);
    assert.match(dump.toString('utf8'), /COPY public\.messages /, 'the dump has no messages data');
    assertNoLeaks(findLeakingLines(dump.toString('utf8'), run!.needles), 'the pg_dump');
    // Nothing written beside the database either (no key file, no spool, no export).
    assertNoLeaks(scanTree(workDir, run!.needles).leaks, 'the working directory');
  });

  test('positive control: canaries written on purpose into a table are found in the pg_dump', async () => {
    const control = { text: canary(), bytea: canary() };
    await withDatabase(store!, async (db) => {
      await db.execute(sql`create table canary_positive_control (note text, blob bytea)`);
      await db.execute(sql`insert into canary_positive_control values (${control.text}, convert_to(${control.bytea}, 'UTF8'))`);
    });
    const controlNeedles = [...needlesFor('control text', control.text), ...needlesFor('control bytea', control.bytea)];
    assert.deepEqual(findLeaks(await pgDump(store!.url!), controlNeedles).sort(), ['control bytea as hex', 'control text as utf8']);
  });
});
