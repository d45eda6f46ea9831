import type { LightMyRequestResponse } from 'fastify';
import { randomBytes, randomInt } from 'node:crypto';
import type { TenantDocument } from '../../src/config/tenant-document.js';
import { createAirtableWebhooksClient } from '../../src/providers/airtable/webhooks-client.js';
import type { JobWorker } from '../../src/relay/job-worker.js';
import type { Relay } from '../../src/relay/relay.js';
import type { TenantContext } from '../../src/relay/tenant-directory.js';
import type { SealedFields } from '../../src/seal/sealed-fields.js';
import type { StoredKeyring } from '../../src/seal/keyring.js';
import type { RetryPolicy } from '../../src/store/job-queue.js';
import { TenantRepository } from '../../src/store/repositories/tenants.js';
import { DEFAULT_AIRTABLE_KEY, startAirtableFake, type AirtableFake } from '../fakes/airtable.js';
import { DEFAULT_OPENAI_KEY, startOpenAiFake, type OpenAiFake } from '../fakes/openai.js';
import { DEFAULT_PODIUM_LOCATION, DEFAULT_PODIUM_TOKEN, signPodiumRequest, startPodiumFake, type PodiumFake } from '../fakes/podium.js';
import { DEFAULT_TWILIO_ACCOUNT, signTwilioRequest, startTwilioFake, type TwilioFake } from '../fakes/twilio.js';
import { signAirtableNotification } from '../fakes/airtable.js';
import type { Backend } from './database.js';
import { openIdentityHarness, type IdentityHarness } from './identity.js';

export const PUBLIC_URL = 'https://gate.example.test';
export const TENANT_FROM_NUMBER = '+14155550100';
export const PODIUM_WEBHOOK_SECRET = 'podium-webhook-secret-for-tests-0001';

/** A valid, unique US mobile-looking number (libphonenumber accepts it; 555-01xx would not be). */
export function randomPhone(): string {
  return `+1415${randomInt(200, 999)}${String(randomInt(0, 10_000)).padStart(4, '0')}`;
}

/** A Twilio MessageSid. */
export function messageSid(): string {
  return `SM${randomBytes(16).toString('hex')}`;
}

/**
 * The Airtable fake's problems other than pacing. Pacing is proven in
 * test/providers/airtable/records-client.test.ts; here the fake, PGlite and the relay share one
 * event loop, so a request can leave late and arrive bunched with the next ones, which says
 * nothing about the pacer.
 */
export function airtableProblems(fake: AirtableFake): string[] {
  return fake.violations.filter((violation) => !/requests within one second/.test(violation));
}

export interface RelayHarness extends IdentityHarness {
  fields: SealedFields;
  keyring: StoredKeyring;
  relay: Relay;
  twilio: TwilioFake;
  openai: OpenAiFake;
  airtable: AirtableFake;
  podium: PodiumFake;
  /** Creates (or replaces) a tenant wired to every fake; `changes` adjusts the document. */
  putTenant(slug?: string, changes?: (document: TenantDocument) => void): Promise<TenantContext>;
  /** Posts a Twilio webhook signed with the tenant's token over the public URL (unless told otherwise). */
  postTwilio(
    slug: string,
    kind: 'sms' | 'status',
    params: Record<string, string>,
    options?: { authToken?: string; signature?: string | null; query?: string; remoteAddress?: string; headers?: Record<string, string> },
  ): Promise<LightMyRequestResponse>;
  /** An inbound SMS from `from` with `body`, signed; returns the response and the MessageSid used. */
  sendSms(slug: string, from: string, body: string, options?: { sid?: string }): Promise<{ response: LightMyRequestResponse; sid: string }>;
  postPodium(slug: string, rawBody: string, options?: { secret?: string; timestampMs?: number; encoding?: 'hex' | 'base64'; signature?: string | null; remoteAddress?: string }): Promise<LightMyRequestResponse>;
  postAirtable(slug: string, rawBody: string, options?: { macSecretBase64?: string; header?: string | null; remoteAddress?: string }): Promise<LightMyRequestResponse>;
  /** The MAC secret of the tenant's Airtable webhook (made on the fake by putTenant). */
  airtableMacSecret(slug: string): string;
  startWorker(): JobWorker;
  /** Runs the worker until no job is due or running (retries scheduled later are left). */
  drain(options?: { timeoutMs?: number }): Promise<void>;
  close(): Promise<void>;
}

export async function openRelayHarness(backend: Backend, options: { retry?: Partial<RetryPolicy>; leaseMs?: number; env?: Record<string, string> } = {}): Promise<RelayHarness> {
  const [twilio, openai, airtable, podium] = await Promise.all([startTwilioFake(), startOpenAiFake(), startAirtableFake({ strictFields: true }), startPodiumFake()]);
  const base = await openIdentityHarness(backend, {
    env: {
      CIPHERGATE_PUBLIC_URL: PUBLIC_URL,
      CIPHERGATE_TWILIO_API_URL: twilio.url,
      CIPHERGATE_OPENAI_BASE_URL: `${openai.url}/v1`,
      CIPHERGATE_AIRTABLE_API_URL: airtable.url,
      CIPHERGATE_PODIUM_API_URL: podium.url,
      ...options.env,
    },
    relay: {
      retry: options.retry ?? { baseDelayMs: 20, maxDelayMs: 100 },
      ...(options.leaseMs ? { leaseMs: options.leaseMs } : {}),
      airtableSleep: async () => undefined,
    },
    // As serve has them: the queue behind /readyz, the relay's counters behind /metrics.
    extend: ({ relay }) => ({
      readinessChecks: [{ name: 'queue', check: async () => ({ ...(await relay.queue.depth()) }) }],
      metricsRegistries: [relay.metrics.registry],
    }),
  });
  const { db, app, sealing, relay } = base;
  const tenants = new TenantRepository(db, sealing.fields, sealing.keyring);
  const macSecrets = new Map<string, string>();
  const workers: JobWorker[] = [];
  const closeBase = base.close.bind(base);
  const webhooksClient = createAirtableWebhooksClient({ apiUrl: airtable.url });

  const harness: RelayHarness = Object.assign(base, {
    fields: sealing.fields,
    keyring: sealing.keyring,
    relay,
    twilio,
    openai,
    airtable,
    podium,
    async putTenant(slug = `t-${randomBytes(3).toString('hex')}`, changes?: (document: TenantDocument) => void) {
      const baseId = `app${randomBytes(7).toString('hex')}`;
      const webhook = await webhooksClient.createWebhook({ apiKey: DEFAULT_AIRTABLE_KEY, baseId }, { notificationUrl: `${PUBLIC_URL}/webhooks/airtable/${slug}` });
      macSecrets.set(slug, webhook.macSecretBase64);
      // The harness made that request, not the relay: the pacing check counts the relay's only.
      airtable.requestTimesByBase.delete(baseId);
      const document: TenantDocument = {
        name: `Tenant ${slug}`,
        twilio: { accountSid: DEFAULT_TWILIO_ACCOUNT.accountSid, authToken: DEFAULT_TWILIO_ACCOUNT.authToken, fromNumber: TENANT_FROM_NUMBER },
        openai: { apiKey: DEFAULT_OPENAI_KEY, model: 'gpt-4o-mini', systemPrompt: 'You are the front desk of a dental clinic. Be brief.' },
        airtable: {
          apiKey: DEFAULT_AIRTABLE_KEY,
          baseId,
          table: 'Conversations',
          fields: { phone: 'masked', name: 'masked', body: 'plain', aiReply: 'plain' },
          webhookId: webhook.id,
          macSecretBase64: webhook.macSecretBase64,
        },
        podium: { apiKey: DEFAULT_PODIUM_TOKEN, locationUid: DEFAULT_PODIUM_LOCATION, webhookSecret: PODIUM_WEBHOOK_SECRET },
        allowIps: { twilio: [], airtable: [], podium: [] },
      };
      changes?.(document);
      await tenants.put(slug, document, { type: 'system' });
      relay.tenants.clear();
      return (await relay.tenants.bySlug(slug))!;
    },
    postTwilio(slug: string, kind: 'sms' | 'status', params: Record<string, string>, postOptions: Parameters<RelayHarness['postTwilio']>[3] = {}) {
      const path = `/webhooks/twilio/${slug}/${kind}${postOptions.query ? `?${postOptions.query}` : ''}`;
      const signature =
        postOptions.signature === undefined ? signTwilioRequest(postOptions.authToken ?? DEFAULT_TWILIO_ACCOUNT.authToken, `${PUBLIC_URL}${path}`, params) : postOptions.signature;
      return app.inject({
        method: 'POST',
        url: path,
        remoteAddress: postOptions.remoteAddress ?? '127.0.0.1',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          ...(signature === null ? {} : { 'x-twilio-signature': signature }),
          ...postOptions.headers,
        },
        payload: new URLSearchParams(params).toString(),
      });
    },
    async sendSms(slug: string, from: string, body: string, smsOptions: { sid?: string } = {}) {
      const sid = smsOptions.sid ?? messageSid();
      const response = await harness.postTwilio(slug, 'sms', {
        MessageSid: sid,
        SmsSid: sid,
        AccountSid: DEFAULT_TWILIO_ACCOUNT.accountSid,
        From: from,
        To: TENANT_FROM_NUMBER,
        Body: body,
        NumMedia: '0',
      });
      return { response, sid };
    },
    postPodium(slug: string, rawBody: string, postOptions: Parameters<RelayHarness['postPodium']>[2] = {}) {
      const timestampMs = postOptions.timestampMs ?? Date.now();
      const signature = postOptions.signature === undefined ? signPodiumRequest(postOptions.secret ?? PODIUM_WEBHOOK_SECRET, timestampMs, rawBody, postOptions.encoding ?? 'hex') : postOptions.signature;
      return app.inject({
        method: 'POST',
        url: `/webhooks/podium/${slug}`,
        remoteAddress: postOptions.remoteAddress ?? '127.0.0.1',
        headers: { 'content-type': 'application/json', 'podium-timestamp': String(timestampMs), ...(signature === null ? {} : { 'podium-signature': signature }) },
        payload: rawBody,
      });
    },
    postAirtable(slug: string, rawBody: string, postOptions: Parameters<RelayHarness['postAirtable']>[2] = {}) {
      const header = postOptions.header === undefined ? signAirtableNotification(postOptions.macSecretBase64 ?? harness.airtableMacSecret(slug), rawBody) : postOptions.header;
      return app.inject({
        method: 'POST',
        url: `/webhooks/airtable/${slug}`,
        remoteAddress: postOptions.remoteAddress ?? '127.0.0.1',
        headers: { 'content-type': 'application/json', ...(header === null ? {} : { 'x-airtable-content-mac': header }) },
        payload: rawBody,
      });
    },
    airtableMacSecret(slug: string) {
      const secret = macSecrets.get(slug);
      if (!secret) throw new Error(`no Airtable webhook for ${slug}`);
      return secret;
    },
    startWorker() {
      const worker = relay.createWorker({ pollIntervalMs: 10, concurrency: 4 });
      worker.start();
      workers.push(worker);
      return worker;
    },
    async drain(drainOptions: { timeoutMs?: number } = {}) {
      const own = workers.length === 0 ? harness.startWorker() : undefined;
      // Generous: on a loaded two-core CI machine a PGlite drain of a few jobs has taken over 20 s.
      const deadline = Date.now() + (drainOptions.timeoutMs ?? 60_000);
      // Two idle looks in a row: a job that just finished may have enqueued the next.
      let idle = 0;
      while (idle < 2) {
        const depth = await relay.queue.depth();
        idle = depth.due === 0 && depth.running === 0 ? idle + 1 : 0;
        if (Date.now() > deadline) throw new Error(`jobs still due or running after the timeout: ${JSON.stringify(depth)}`);
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      if (own) {
        await own.stop();
        workers.splice(workers.indexOf(own), 1);
      }
    },
    async close() {
      for (const worker of workers) await worker.stop();
      await closeBase();
      await Promise.all([twilio.close(), openai.close(), airtable.close(), podium.close()]);
    },
  });
  return harness;
}
