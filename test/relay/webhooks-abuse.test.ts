import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { sql } from 'drizzle-orm';
import type { LightMyRequestResponse } from 'fastify';
import type { TenantDocument } from '../../src/config/tenant-document.js';
import { WEBHOOK_BODY_LIMIT_BYTES } from '../../src/http/routes/webhooks.js';
import type { TenantContext } from '../../src/relay/tenant-directory.js';
import { queryRows } from '../../src/store/connection.js';
import { signAirtableNotification } from '../fakes/airtable.js';
import { DEFAULT_PODIUM_LOCATION, podiumMessageEvent, signPodiumRequest } from '../fakes/podium.js';
import { DEFAULT_TWILIO_ACCOUNT, signTwilioRequest } from '../fakes/twilio.js';
import { describeEachBackend, tablesState } from '../helpers/database.js';
import { assertProblem } from '../helpers/problems.js';
import { messageSid, openRelayHarness, PODIUM_WEBHOOK_SECRET, PUBLIC_URL, randomPhone, TENANT_FROM_NUMBER, type RelayHarness } from '../helpers/relay.js';

/**
 * The abuse cases of the inbound webhooks (CONTRACT.md "Webhooks", src/relay/inbound/, answered by src/http/routes/webhooks.ts).
 * Every refusal is checked the same way (`Deliveries.expectRejected`): the status and problem
 * body, nothing stored, one `webhook.rejected` audit entry with the reason and a count of one once
 * the pending aggregated entries are written, and the rejection counter moved by one for that
 * provider and reason. Every 403 of a harness must be byte-identical to the first one, so no
 * reason (unknown tenant included) can be told apart by its answer.
 */

type Provider = 'twilio' | 'podium' | 'airtable';
type TwilioKind = 'sms' | 'status';
type Reason =
  | 'unknown-tenant'
  | 'bad-signature'
  | 'missing-signature'
  | 'stale-timestamp'
  | 'address-not-allowed'
  | 'provider-not-configured'
  | 'account-mismatch'
  | 'body-too-large'
  | 'malformed-payload';

/** What a refused delivery must leave exactly as it was. */
const STORED_TABLES = ['contacts', 'conversations', 'messages', 'jobs'] as const;

// Documentation ranges (RFC 5737): one allowed, one not.
const ALLOWED_NETWORK = '203.0.113.0/24';
const ALLOWED_ADDRESS = '203.0.113.9';
const OUTSIDE_ADDRESS = '198.51.100.7';
const TRUSTED_PROXY = '127.0.0.1';

const OTHER_TWILIO_ACCOUNT = { accountSid: `AC${'f'.repeat(32)}`, authToken: 'another-tenants-twilio-auth-token-77' } as const;
const FORGED_TWILIO_TOKEN = 'forged-twilio-auth-token-000000000';
const OTHER_PODIUM_SECRET = 'another-tenants-podium-webhook-secret';
const OTHER_PODIUM_LOCATION = '2c9d8e7f-6a5b-4c3d-8e2f-1a0b9c8d7e6f';
const FORGED_PODIUM_SECRET = 'forged-podium-webhook-secret-000000';
const FORGED_MAC_SECRET = randomBytes(32).toString('base64');

const SIX_MINUTES_MS = 6 * 60 * 1000;
const OVERSIZED = WEBHOOK_BODY_LIMIT_BYTES + 1024;

/**
 * Builds and posts signed (or deliberately mis-signed) deliveries on one harness, checks how each
 * one was answered, and remembers every secret, signature, phone number and message body it used:
 * none of them may reach a log line.
 */
class Deliveries {
  readonly sensitive = new Set<string>([
    DEFAULT_TWILIO_ACCOUNT.authToken,
    OTHER_TWILIO_ACCOUNT.authToken,
    FORGED_TWILIO_TOKEN,
    PODIUM_WEBHOOK_SECRET,
    OTHER_PODIUM_SECRET,
    FORGED_PODIUM_SECRET,
    FORGED_MAC_SECRET,
  ]);
  /** The first 403 this harness gave: every later one must be the same bytes. */
  private reference403: { body: string; headers: Record<string, unknown> } | undefined;

  constructor(readonly harness: RelayHarness) {}

  async tenant(changes?: (document: TenantDocument) => void): Promise<TenantContext> {
    const tenant = await this.harness.putTenant(undefined, changes);
    this.sensitive.add(this.harness.airtableMacSecret(tenant.slug));
    return tenant;
  }

  /**
   * Refused as `expected` says: 403 `webhook-rejected` (413 `payload-too-large` for a body over
   * the limit), nothing stored, one audit event, the counter up by one.
   */
  async expectRejected(
    expected: { provider: Provider; reason: Reason; tenant: TenantContext | null; sourceIp?: string },
    deliver: () => Promise<LightMyRequestResponse>,
  ): Promise<LightMyRequestResponse> {
    const label = `${expected.provider}/${expected.reason}`;
    const stateBefore = await tablesState(this.harness, STORED_TABLES);
    const countBefore = await rejectionCount(this.harness, expected.provider, expected.reason);
    const auditBefore = await lastAuditSeq(this.harness);

    const response = await deliver();

    if (expected.reason === 'body-too-large') {
      assertProblem(response, 413, 'payload-too-large');
    } else {
      assertProblem(response, 403, 'webhook-rejected');
      const headers = comparableHeaders(response);
      this.reference403 ??= { body: response.body, headers };
      assert.equal(response.body, this.reference403.body, `${label}: the 403 differs from the others`);
      assert.deepEqual(headers, this.reference403.headers, `${label}: the 403 headers differ from the others`);
    }
    assert.equal(await tablesState(this.harness, STORED_TABLES), stateBefore, `${label}: a refused delivery changed stored data`);
    // Refusals are audited per minute; writing the pending entries now makes this one its own.
    await this.harness.relay.rejectionAudit.flush({ all: true });
    assert.deepEqual(await auditEventsAfter(this.harness, auditBefore), [
      {
        action: 'webhook.rejected',
        outcome: 'failure',
        tenant_id: expected.tenant?.id ?? null,
        source_ip: expected.sourceIp ?? '127.0.0.1',
        details: { provider: expected.provider, reason: expected.reason, count: 1 },
      },
    ]);
    assert.equal(await rejectionCount(this.harness, expected.provider, expected.reason), countBefore + 1, `${label}: the rejection counter did not move by one`);
    return response;
  }

  /** Answered 2xx with no rejection audited. */
  async expectAccepted(deliver: () => Promise<LightMyRequestResponse>): Promise<LightMyRequestResponse> {
    const auditBefore = await lastAuditSeq(this.harness);
    const response = await deliver();
    assert.ok(response.statusCode >= 200 && response.statusCode < 300, `expected 2xx, got ${response.statusCode} ${response.body}`);
    await this.harness.relay.rejectionAudit.flush({ all: true });
    assert.deepEqual(await auditEventsAfter(this.harness, auditBefore), []);
    return response;
  }

  assertNothingSensitiveLogged(): void {
    const text = this.harness.logs.text();
    // The capture works: the refusals above were logged (without their contents).
    assert.match(text, /webhook rejected/);
    for (const value of this.sensitive) {
      assert.ok(!text.includes(value), `a log line holds ${JSON.stringify(value.slice(0, 12))}…`);
    }
  }

  // --- Twilio ---

  /** Inbound SMS parameters as Twilio posts them (https://www.twilio.com/docs/messaging/guides/webhook-request). */
  smsParams(accountSid: string = DEFAULT_TWILIO_ACCOUNT.accountSid): Record<string, string> {
    const sid = messageSid();
    const from = randomPhone();
    const body = `Can I move my cleaning to Friday? ref ${randomUUID()}`;
    this.rememberPersonal(from, body);
    return { MessageSid: sid, SmsSid: sid, AccountSid: accountSid, From: from, To: TENANT_FROM_NUMBER, Body: body, NumMedia: '0' };
  }

  /**
   * Parameters of a delivery of `kind`. A status callback names a message the tenant really sent
   * (when a tenant is given), so a forged callback that got through would change its status.
   */
  async twilioParams(kind: TwilioKind, tenant?: TenantContext, status = 'failed', accountSid: string = DEFAULT_TWILIO_ACCOUNT.accountSid): Promise<Record<string, string>> {
    if (kind === 'sms') return this.smsParams(accountSid);
    const sid = tenant ? (await this.sentMessage(tenant)).sid : messageSid();
    return statusParams(sid, status, accountSid);
  }

  /** An outbound message of `tenant` that Twilio accepted as `sid` (status `sent`), with no jobs. */
  async sentMessage(tenant: TenantContext): Promise<{ sid: string; messageId: string }> {
    const { conversations } = this.harness.relay;
    const phone = randomPhone();
    const body = `Your cleaning is confirmed for Friday, ref ${randomUUID()}`;
    this.rememberPersonal(phone, body);
    const { contactId, conversationId } = await conversations.conversationForPhone(tenant.id, phone, 'sms');
    const { messageId } = await conversations.storeOutbound({ tenantId: tenant.id, contactId, conversationId, author: 'staff', body, dedupeKey: `test:${randomUUID()}` }, () => []);
    const sid = messageSid();
    await conversations.recordSent(messageId, sid, 'sent', []);
    return { sid, messageId };
  }

  signTwilio(authToken: string, url: string, params: Record<string, string>): string {
    const signature = signTwilioRequest(authToken, url, params);
    this.sensitive.add(signature);
    return signature;
  }

  postTwilio(slug: string, kind: TwilioKind, params: Record<string, string>, options: { signature: string | null; query?: string; remoteAddress?: string; headers?: Record<string, string> }) {
    return this.harness.postTwilio(slug, kind, params, options);
  }

  /** Signed as Twilio signs it for this URL, with the default account's token unless told otherwise. */
  signedTwilio(slug: string, kind: TwilioKind, params: Record<string, string>, options: { authToken?: string; query?: string; remoteAddress?: string; headers?: Record<string, string> } = {}) {
    const { authToken = DEFAULT_TWILIO_ACCOUNT.authToken, ...rest } = options;
    return this.postTwilio(slug, kind, params, { ...rest, signature: this.signTwilio(authToken, twilioUrl(slug, kind, options.query), params) });
  }

  /**
   * A JSON-bodied SMS webhook. `hashOf` is the body whose SHA-256 goes in the query as posted,
   * `signedHashOf` the one in the URL that was signed (null: no bodySHA256 at all).
   */
  postTwilioJson(slug: string, rawBody: string, options: { hashOf: string | null; signedHashOf: string | null }) {
    const queryFor = (hashed: string | null) => (hashed === null ? undefined : `bodySHA256=${createHash('sha256').update(hashed).digest('hex')}`);
    const signature = this.signTwilio(DEFAULT_TWILIO_ACCOUNT.authToken, twilioUrl(slug, 'sms', queryFor(options.signedHashOf)), {});
    const query = queryFor(options.hashOf);
    return this.harness.app.inject({
      method: 'POST',
      url: `/webhooks/twilio/${slug}/sms${query ? `?${query}` : ''}`,
      remoteAddress: '127.0.0.1',
      headers: { 'content-type': 'application/json', 'x-twilio-signature': signature },
      payload: rawBody,
    });
  }

  // --- Podium ---

  /** A `message.received` delivery for a new customer message at the default location. */
  podiumEvent(locationUid: string = DEFAULT_PODIUM_LOCATION): { rawBody: string; uid: string } {
    const phone = randomPhone();
    const body = `Do you have anything on Saturday? ref ${randomUUID()}`;
    const contactName = `Maria ${randomBytes(4).toString('hex')}`;
    this.rememberPersonal(phone, body);
    this.sensitive.add(contactName);
    const message = this.harness.podium.receive({ locationUid, from: phone, body, contactName });
    return { rawBody: podiumMessageEvent('message.received', this.harness.podium.messageJson(message), { locationUid }), uid: message.uid };
  }

  signPodium(secret: string, timestampMs: number, rawBody: string, encoding: 'hex' | 'base64'): string {
    const signature = signPodiumRequest(secret, timestampMs, rawBody, encoding);
    this.sensitive.add(signature);
    return signature;
  }

  postPodium(slug: string, rawBody: string, options: { timestamp: string | null; signature: string | null; remoteAddress?: string; headers?: Record<string, string> }) {
    return this.harness.app.inject({
      method: 'POST',
      url: `/webhooks/podium/${slug}`,
      remoteAddress: options.remoteAddress ?? '127.0.0.1',
      headers: {
        'content-type': 'application/json',
        ...(options.timestamp === null ? {} : { 'podium-timestamp': options.timestamp }),
        ...(options.signature === null ? {} : { 'podium-signature': options.signature }),
        ...options.headers,
      },
      payload: rawBody,
    });
  }

  signedPodium(slug: string, rawBody: string, options: { secret?: string; timestampMs?: number; remoteAddress?: string; headers?: Record<string, string> } = {}) {
    const { secret = PODIUM_WEBHOOK_SECRET, timestampMs = Date.now(), ...rest } = options;
    return this.postPodium(slug, rawBody, { ...rest, timestamp: String(timestampMs), signature: this.signPodium(secret, timestampMs, rawBody, 'hex') });
  }

  // --- Airtable ---

  signAirtable(macSecretBase64: string, rawBody: string): string {
    const mac = signAirtableNotification(macSecretBase64, rawBody);
    this.sensitive.add(mac);
    return mac;
  }

  postAirtable(slug: string, rawBody: string, options: { mac: string | null; remoteAddress?: string; headers?: Record<string, string> }) {
    return this.harness.app.inject({
      method: 'POST',
      url: `/webhooks/airtable/${slug}`,
      remoteAddress: options.remoteAddress ?? '127.0.0.1',
      headers: { 'content-type': 'application/json', ...(options.mac === null ? {} : { 'x-airtable-content-mac': options.mac }), ...options.headers },
      payload: rawBody,
    });
  }

  /** MAC'd with the secret of the webhook the harness made for `slug`, unless told otherwise. */
  signedAirtable(slug: string, rawBody: string, options: { macSecretBase64?: string; remoteAddress?: string; headers?: Record<string, string> } = {}) {
    const { macSecretBase64 = this.harness.airtableMacSecret(slug), ...rest } = options;
    return this.postAirtable(slug, rawBody, { ...rest, mac: this.signAirtable(macSecretBase64, rawBody) });
  }

  /** A phone number in every spelling a log could carry it, and a message body. */
  private rememberPersonal(phone: string, body: string): void {
    this.sensitive.add(phone);
    this.sensitive.add(phone.slice(2));
    this.sensitive.add(encodeURIComponent(phone));
    this.sensitive.add(body);
    // The reference is unique, so it is found in any encoding of the body.
    this.sensitive.add(/ref ([0-9a-f-]{36})$/.exec(body)![1]!);
  }
}

function twilioUrl(slug: string, kind: TwilioKind, query?: string): string {
  return `${PUBLIC_URL}/webhooks/twilio/${slug}/${kind}${query ? `?${query}` : ''}`;
}

/** A status callback as Twilio posts it (https://www.twilio.com/docs/messaging/guides/track-outbound-message-status). */
function statusParams(sid: string, status: string, accountSid: string = DEFAULT_TWILIO_ACCOUNT.accountSid): Record<string, string> {
  return { MessageSid: sid, SmsSid: sid, AccountSid: accountSid, MessageStatus: status, SmsStatus: status, ...(status === 'failed' ? { ErrorCode: '30003' } : {}) };
}

/** The notification Airtable POSTs: it names the base and the webhook, never the change itself. */
function airtablePing(tenant: TenantContext, webhookId: string = tenant.settings.airtable!.webhookId!): string {
  return JSON.stringify({ base: { id: tenant.settings.airtable!.baseId }, webhook: { id: webhookId }, timestamp: new Date().toISOString() });
}

/** Headers that must not vary between two refusals (the request id and date always do). */
function comparableHeaders(response: LightMyRequestResponse): Record<string, unknown> {
  const { 'x-request-id': _requestId, date: _date, ...rest } = response.headers;
  return rest;
}

async function rejectionCount(harness: RelayHarness, provider: Provider, reason: Reason): Promise<number> {
  const metric = await harness.relay.metrics.webhookRejections.get();
  return metric.values.find((value) => value.labels.provider === provider && value.labels.reason === reason)?.value ?? 0;
}

async function lastAuditSeq(harness: RelayHarness): Promise<number> {
  const [row] = await queryRows<{ seq: number }>(harness.db, sql`select coalesce(max(seq), 0)::int as seq from audit_events`);
  return row!.seq;
}

/** The events after `seq`; an aggregated entry's times are checked here and left out of what is compared. */
async function auditEventsAfter(harness: RelayHarness, seq: number) {
  const rows = await queryRows<{ action: string; outcome: string; tenant_id: string | null; source_ip: string | null; details: Record<string, unknown> }>(
    harness.db,
    sql`select action, outcome, tenant_id, source_ip, details from audit_events where seq > ${seq} order by seq`,
  );
  return rows.map((row) => {
    const { firstAt, lastAt, ...details } = row.details;
    if (firstAt !== undefined || lastAt !== undefined) {
      assert.ok(typeof firstAt === 'string' && typeof lastAt === 'string' && Date.parse(firstAt) <= Date.parse(lastAt), `firstAt ${String(firstAt)}, lastAt ${String(lastAt)}`);
    }
    return { ...row, details };
  });
}

async function inboundCount(harness: RelayHarness, tenant: TenantContext): Promise<number> {
  const [row] = await queryRows<{ n: number }>(harness.db, sql`select count(*)::int as n from messages where tenant_id = ${tenant.id} and direction = 'inbound'`);
  return row!.n;
}

async function messageStatus(harness: RelayHarness, providerMessageId: string): Promise<string | undefined> {
  const [row] = await queryRows<{ status: string }>(harness.db, sql`select status from messages where provider_message_id = ${providerMessageId}`);
  return row?.status;
}

async function pendingAirtableWebhookJobs(harness: RelayHarness, tenant: TenantContext): Promise<number> {
  const [row] = await queryRows<{ n: number }>(harness.db, sql`select count(*)::int as n from jobs where tenant_id = ${tenant.id} and kind = 'airtable-webhook' and state = 'pending'`);
  return row!.n;
}

// The suite comes last: it starts running at the top-level await, before anything declared below it exists.
await describeEachBackend('webhook abuse cases', (backend) => {
  let deliveries: Deliveries;
  before(async () => {
    deliveries = new Deliveries(await openRelayHarness(backend));
  });
  after(async () => deliveries?.harness.close());

  for (const kind of ['sms', 'status'] as const) {
    describe(`Twilio ${kind}`, () => {
      test('a signature made with another auth token is refused (bad-signature)', async () => {
        const tenant = await deliveries.tenant();
        const params = await deliveries.twilioParams(kind, tenant);
        await deliveries.expectRejected({ provider: 'twilio', reason: 'bad-signature', tenant }, () =>
          deliveries.signedTwilio(tenant.slug, kind, params, { authToken: FORGED_TWILIO_TOKEN }),
        );
      });

      test('a body changed after signing is refused (bad-signature)', async () => {
        const tenant = await deliveries.tenant();
        const signed = await deliveries.twilioParams(kind, tenant);
        const signature = deliveries.signTwilio(DEFAULT_TWILIO_ACCOUNT.authToken, twilioUrl(tenant.slug, kind), signed);
        const tampered = kind === 'sms' ? { ...signed, Body: 'Send me everything you have on file.' } : { ...signed, MessageStatus: 'delivered' };
        await deliveries.expectRejected({ provider: 'twilio', reason: 'bad-signature', tenant }, () => deliveries.postTwilio(tenant.slug, kind, tampered, { signature }));
      });

      test('a delivery without X-Twilio-Signature is refused (missing-signature)', async () => {
        const tenant = await deliveries.tenant();
        const params = await deliveries.twilioParams(kind, tenant);
        await deliveries.expectRejected({ provider: 'twilio', reason: 'missing-signature', tenant }, () => deliveries.postTwilio(tenant.slug, kind, params, { signature: null }));
        await deliveries.expectRejected({ provider: 'twilio', reason: 'missing-signature', tenant }, () => deliveries.postTwilio(tenant.slug, kind, params, { signature: '' }));
      });

      test('a replayed delivery answers 2xx and stores nothing new', async () => {
        const tenant = await deliveries.tenant();
        const params = await deliveries.twilioParams(kind, tenant, 'delivered');
        const first = await deliveries.expectAccepted(() => deliveries.signedTwilio(tenant.slug, kind, params));
        assert.equal(first.statusCode, kind === 'sms' ? 200 : 204);
        const afterFirst = await tablesState(deliveries.harness, STORED_TABLES);
        if (kind === 'sms') assert.equal(await inboundCount(deliveries.harness, tenant), 1);
        else assert.equal(await messageStatus(deliveries.harness, params.MessageSid!), 'delivered');

        const replay = await deliveries.expectAccepted(() => deliveries.signedTwilio(tenant.slug, kind, params));
        assert.equal(replay.statusCode, first.statusCode);
        assert.equal(replay.body, first.body);
        assert.equal(await tablesState(deliveries.harness, STORED_TABLES), afterFirst, 'the replay changed stored data');
      });

      test("a delivery signed with tenant A's auth token, posted to tenant B's URL, is refused (bad-signature)", async () => {
        const tenantA = await deliveries.tenant((document) => {
          document.twilio = { ...document.twilio!, ...OTHER_TWILIO_ACCOUNT };
        });
        const tenantB = await deliveries.tenant();
        const params = await deliveries.twilioParams(kind, tenantB, 'failed', OTHER_TWILIO_ACCOUNT.accountSid);
        // A's token over B's URL: what someone holding A's token (or A itself) could make.
        await deliveries.expectRejected({ provider: 'twilio', reason: 'bad-signature', tenant: tenantB }, () =>
          deliveries.signedTwilio(tenantB.slug, kind, params, { authToken: OTHER_TWILIO_ACCOUNT.authToken }),
        );
        assert.equal(await inboundCount(deliveries.harness, tenantA), 0);
      });

      test("a genuine delivery for tenant A replayed at tenant B's URL is refused even when both share one Twilio account", async () => {
        const tenantA = await deliveries.tenant();
        const tenantB = await deliveries.tenant();
        const params = await deliveries.twilioParams(kind, tenantB);
        // The signature covers the URL, and with it the tenant's slug.
        const signatureForA = deliveries.signTwilio(DEFAULT_TWILIO_ACCOUNT.authToken, twilioUrl(tenantA.slug, kind), params);
        await deliveries.expectRejected({ provider: 'twilio', reason: 'bad-signature', tenant: tenantB }, () =>
          deliveries.postTwilio(tenantB.slug, kind, params, { signature: signatureForA }),
        );
      });

      test('an unknown tenant is refused with an answer byte-identical to a bad signature (unknown-tenant)', async () => {
        const tenant = await deliveries.tenant();
        const params = await deliveries.twilioParams(kind, tenant);
        const badSignature = await deliveries.expectRejected({ provider: 'twilio', reason: 'bad-signature', tenant }, () =>
          deliveries.signedTwilio(tenant.slug, kind, params, { authToken: FORGED_TWILIO_TOKEN }),
        );
        for (const slug of [`absent-${randomBytes(3).toString('hex')}`, 'Not_A_Valid_Slug', 'x'.repeat(80)]) {
          // Signed with a real token over the URL it is posted to: only the tenant is wrong.
          const unknown = await deliveries.expectRejected({ provider: 'twilio', reason: 'unknown-tenant', tenant: null }, () =>
            deliveries.signedTwilio(slug, kind, params),
          );
          assert.equal(unknown.body, badSignature.body);
          assert.deepEqual(comparableHeaders(unknown), comparableHeaders(badSignature));
        }
      });

      test('a tenant without Twilio configured is refused (provider-not-configured)', async () => {
        const tenant = await deliveries.tenant((document) => {
          delete document.twilio;
        });
        const params = await deliveries.twilioParams(kind);
        await deliveries.expectRejected({ provider: 'twilio', reason: 'provider-not-configured', tenant }, () => deliveries.signedTwilio(tenant.slug, kind, params));
      });

      test('the address allowlist: outside it is refused, inside it is accepted, and X-Forwarded-For is not believed without a trusted proxy', async () => {
        const tenant = await deliveries.tenant((document) => {
          document.allowIps = { ...document.allowIps, twilio: [ALLOWED_NETWORK] };
        });
        const params = await deliveries.twilioParams(kind, tenant, 'delivered');
        await deliveries.expectRejected({ provider: 'twilio', reason: 'address-not-allowed', tenant, sourceIp: OUTSIDE_ADDRESS }, () =>
          deliveries.signedTwilio(tenant.slug, kind, params, { remoteAddress: OUTSIDE_ADDRESS }),
        );
        await deliveries.expectRejected({ provider: 'twilio', reason: 'address-not-allowed', tenant, sourceIp: OUTSIDE_ADDRESS }, () =>
          deliveries.signedTwilio(tenant.slug, kind, params, { remoteAddress: OUTSIDE_ADDRESS, headers: { 'x-forwarded-for': ALLOWED_ADDRESS } }),
        );
        const accepted = await deliveries.expectAccepted(() => deliveries.signedTwilio(tenant.slug, kind, params, { remoteAddress: ALLOWED_ADDRESS }));
        assert.equal(accepted.statusCode, kind === 'sms' ? 200 : 204);
        if (kind === 'sms') assert.equal(await inboundCount(deliveries.harness, tenant), 1);
        else assert.equal(await messageStatus(deliveries.harness, params.MessageSid!), 'delivered');
      });

      test('a body over 64 KiB is refused with 413 problem+json (body-too-large)', async () => {
        const tenant = await deliveries.tenant();
        const params = { ...(await deliveries.twilioParams(kind, tenant)), Padding: 'x'.repeat(OVERSIZED) };
        await deliveries.expectRejected({ provider: 'twilio', reason: 'body-too-large', tenant: null }, () => deliveries.signedTwilio(tenant.slug, kind, params));
      });

      test("an AccountSid other than the tenant's is refused even when the signature is valid (account-mismatch)", async () => {
        const tenant = await deliveries.tenant();
        const params = await deliveries.twilioParams(kind, tenant, 'failed', OTHER_TWILIO_ACCOUNT.accountSid);
        await deliveries.expectRejected({ provider: 'twilio', reason: 'account-mismatch', tenant }, () => deliveries.signedTwilio(tenant.slug, kind, params));
      });

      test('a signed delivery the relay cannot read is refused (malformed-payload)', async () => {
        const tenant = await deliveries.tenant();
        const params = await deliveries.twilioParams(kind, tenant);
        const unreadable = kind === 'sms' ? { ...params, MessageSid: 'not-a-sid', SmsSid: 'not-a-sid' } : { ...params, MessageStatus: 'delivered!' };
        await deliveries.expectRejected({ provider: 'twilio', reason: 'malformed-payload', tenant }, () => deliveries.signedTwilio(tenant.slug, kind, unreadable));
      });
    });
  }

  describe('Twilio, beyond the common cases', () => {
    test("a valid status callback from tenant B naming tenant A's message (?m=) changes nothing of A", async () => {
      const tenantA = await deliveries.tenant();
      const tenantB = await deliveries.tenant();
      const sentByA = await deliveries.sentMessage(tenantA);
      const stateBefore = await tablesState(deliveries.harness, STORED_TABLES);
      const response = await deliveries.expectAccepted(() =>
        deliveries.signedTwilio(tenantB.slug, 'status', statusParams(sentByA.sid, 'failed'), { query: `m=${sentByA.messageId}` }),
      );
      assert.equal(response.statusCode, 204);
      assert.equal(await messageStatus(deliveries.harness, sentByA.sid), 'sent');
      assert.equal(await tablesState(deliveries.harness, STORED_TABLES), stateBefore);
    });

    // JSON webhooks are signed over the URL alone, with the body bound by `bodySHA256` in the
    // query (https://www.twilio.com/docs/usage/webhooks/webhooks-security, "Validating signatures
    // from Twilio", JSON bodies).
    test('a JSON body with bodySHA256 in the query is accepted when it matches', async () => {
      const tenant = await deliveries.tenant();
      const rawBody = JSON.stringify(deliveries.smsParams());
      const response = await deliveries.expectAccepted(() => deliveries.postTwilioJson(tenant.slug, rawBody, { hashOf: rawBody, signedHashOf: rawBody }));
      assert.equal(response.statusCode, 200);
      assert.equal(await inboundCount(deliveries.harness, tenant), 1);
    });

    test('a JSON body changed after signing is refused (bad-signature)', async () => {
      const tenant = await deliveries.tenant();
      const signedBody = JSON.stringify(deliveries.smsParams());
      const tamperedBody = JSON.stringify({ ...(JSON.parse(signedBody) as Record<string, string>), Body: 'Send me everything you have on file.' });
      await deliveries.expectRejected({ provider: 'twilio', reason: 'bad-signature', tenant }, () =>
        deliveries.postTwilioJson(tenant.slug, tamperedBody, { hashOf: signedBody, signedHashOf: signedBody }),
      );
      // Recomputing bodySHA256 for the new body moves the URL off the one that was signed.
      await deliveries.expectRejected({ provider: 'twilio', reason: 'bad-signature', tenant }, () =>
        deliveries.postTwilioJson(tenant.slug, tamperedBody, { hashOf: tamperedBody, signedHashOf: signedBody }),
      );
    });

    test('a JSON body without bodySHA256 is refused: the signature would not cover it (bad-signature)', async () => {
      const tenant = await deliveries.tenant();
      const rawBody = JSON.stringify(deliveries.smsParams());
      await deliveries.expectRejected({ provider: 'twilio', reason: 'bad-signature', tenant }, () => deliveries.postTwilioJson(tenant.slug, rawBody, { hashOf: null, signedHashOf: null }));
    });
  });

  describe('Podium', () => {
    test('a signature made with another secret is refused (bad-signature)', async () => {
      const tenant = await deliveries.tenant();
      const { rawBody } = deliveries.podiumEvent();
      await deliveries.expectRejected({ provider: 'podium', reason: 'bad-signature', tenant }, () => deliveries.signedPodium(tenant.slug, rawBody, { secret: FORGED_PODIUM_SECRET }));
    });

    test('a body changed after signing is refused (bad-signature)', async () => {
      const tenant = await deliveries.tenant();
      const { rawBody } = deliveries.podiumEvent();
      const timestampMs = Date.now();
      const signature = deliveries.signPodium(PODIUM_WEBHOOK_SECRET, timestampMs, rawBody, 'hex');
      const tampered = rawBody.replace(/"body":"[^"]*"/, '"body":"Send me everything you have on file."');
      assert.notEqual(tampered, rawBody);
      await deliveries.expectRejected({ provider: 'podium', reason: 'bad-signature', tenant }, () =>
        deliveries.postPodium(tenant.slug, tampered, { timestamp: String(timestampMs), signature }),
      );
    });

    test('a delivery without podium-signature or podium-timestamp is refused (missing-signature)', async () => {
      const tenant = await deliveries.tenant();
      const { rawBody } = deliveries.podiumEvent();
      const timestampMs = Date.now();
      const signature = deliveries.signPodium(PODIUM_WEBHOOK_SECRET, timestampMs, rawBody, 'hex');
      await deliveries.expectRejected({ provider: 'podium', reason: 'missing-signature', tenant }, () =>
        deliveries.postPodium(tenant.slug, rawBody, { timestamp: String(timestampMs), signature: null }),
      );
      await deliveries.expectRejected({ provider: 'podium', reason: 'missing-signature', tenant }, () => deliveries.postPodium(tenant.slug, rawBody, { timestamp: null, signature }));
    });

    test('a replayed delivery (same message uid) answers 204 and stores nothing new', async () => {
      const tenant = await deliveries.tenant();
      const { rawBody } = deliveries.podiumEvent();
      const timestampMs = Date.now();
      const first = await deliveries.expectAccepted(() => deliveries.signedPodium(tenant.slug, rawBody, { timestampMs }));
      assert.equal(first.statusCode, 204);
      assert.equal(await inboundCount(deliveries.harness, tenant), 1);
      const afterFirst = await tablesState(deliveries.harness, STORED_TABLES);
      // The very same request again (inside the window), then a fresh signature over the same event.
      const replay = await deliveries.expectAccepted(() => deliveries.signedPodium(tenant.slug, rawBody, { timestampMs }));
      const redelivery = await deliveries.expectAccepted(() => deliveries.signedPodium(tenant.slug, rawBody, { timestampMs: Date.now() + 1 }));
      assert.equal(replay.statusCode, 204);
      assert.equal(redelivery.statusCode, 204);
      assert.equal(await tablesState(deliveries.harness, STORED_TABLES), afterFirst, 'the replay changed stored data');
    });

    test('a captured delivery replayed after the ±5 min window is refused (stale-timestamp), and refreshing its timestamp breaks the signature', async () => {
      const tenant = await deliveries.tenant();
      const { rawBody } = deliveries.podiumEvent();
      // Signed six minutes ago: what an attacker holding an old delivery has.
      const capturedAt = Date.now() - SIX_MINUTES_MS;
      const capturedSignature = deliveries.signPodium(PODIUM_WEBHOOK_SECRET, capturedAt, rawBody, 'hex');
      await deliveries.expectRejected({ provider: 'podium', reason: 'stale-timestamp', tenant }, () =>
        deliveries.postPodium(tenant.slug, rawBody, { timestamp: String(capturedAt), signature: capturedSignature }),
      );
      await deliveries.expectRejected({ provider: 'podium', reason: 'bad-signature', tenant }, () =>
        deliveries.postPodium(tenant.slug, rawBody, { timestamp: String(Date.now()), signature: capturedSignature }),
      );
    });

    test('timestamps six minutes in the past or the future are refused (stale-timestamp); four minutes old is accepted', async () => {
      const tenant = await deliveries.tenant();
      for (const offset of [-SIX_MINUTES_MS, SIX_MINUTES_MS]) {
        const { rawBody } = deliveries.podiumEvent();
        await deliveries.expectRejected({ provider: 'podium', reason: 'stale-timestamp', tenant }, () =>
          deliveries.signedPodium(tenant.slug, rawBody, { timestampMs: Date.now() + offset }),
        );
      }
      const { rawBody } = deliveries.podiumEvent();
      const accepted = await deliveries.expectAccepted(() => deliveries.signedPodium(tenant.slug, rawBody, { timestampMs: Date.now() - 4 * 60 * 1000 }));
      assert.equal(accepted.statusCode, 204);
      assert.equal(await inboundCount(deliveries.harness, tenant), 1);
    });

    test("a delivery signed with tenant A's secret, posted to tenant B's URL, is refused (bad-signature)", async () => {
      const tenantA = await deliveries.tenant((document) => {
        document.podium = { ...document.podium!, webhookSecret: OTHER_PODIUM_SECRET };
      });
      const tenantB = await deliveries.tenant();
      const { rawBody } = deliveries.podiumEvent();
      await deliveries.expectRejected({ provider: 'podium', reason: 'bad-signature', tenant: tenantB }, () =>
        deliveries.signedPodium(tenantB.slug, rawBody, { secret: OTHER_PODIUM_SECRET }),
      );
      assert.equal(await inboundCount(deliveries.harness, tenantA), 0);
    });

    test('an unknown tenant is refused with an answer byte-identical to a bad signature (unknown-tenant)', async () => {
      const tenant = await deliveries.tenant();
      const { rawBody } = deliveries.podiumEvent();
      const badSignature = await deliveries.expectRejected({ provider: 'podium', reason: 'bad-signature', tenant }, () =>
        deliveries.signedPodium(tenant.slug, rawBody, { secret: FORGED_PODIUM_SECRET }),
      );
      for (const slug of [`absent-${randomBytes(3).toString('hex')}`, 'Not_A_Valid_Slug']) {
        const unknown = await deliveries.expectRejected({ provider: 'podium', reason: 'unknown-tenant', tenant: null }, () => deliveries.signedPodium(slug, rawBody));
        assert.equal(unknown.body, badSignature.body);
        assert.deepEqual(comparableHeaders(unknown), comparableHeaders(badSignature));
      }
    });

    test('a tenant without Podium configured is refused (provider-not-configured)', async () => {
      const tenant = await deliveries.tenant((document) => {
        delete document.podium;
      });
      const { rawBody } = deliveries.podiumEvent();
      await deliveries.expectRejected({ provider: 'podium', reason: 'provider-not-configured', tenant }, () => deliveries.signedPodium(tenant.slug, rawBody));
    });

    test('the address allowlist: outside it is refused, inside it is accepted, and X-Forwarded-For is not believed without a trusted proxy', async () => {
      const tenant = await deliveries.tenant((document) => {
        document.allowIps = { ...document.allowIps, podium: [ALLOWED_NETWORK] };
      });
      const { rawBody } = deliveries.podiumEvent();
      await deliveries.expectRejected({ provider: 'podium', reason: 'address-not-allowed', tenant, sourceIp: OUTSIDE_ADDRESS }, () =>
        deliveries.signedPodium(tenant.slug, rawBody, { remoteAddress: OUTSIDE_ADDRESS }),
      );
      await deliveries.expectRejected({ provider: 'podium', reason: 'address-not-allowed', tenant, sourceIp: OUTSIDE_ADDRESS }, () =>
        deliveries.signedPodium(tenant.slug, rawBody, { remoteAddress: OUTSIDE_ADDRESS, headers: { 'x-forwarded-for': ALLOWED_ADDRESS } }),
      );
      const accepted = await deliveries.expectAccepted(() => deliveries.signedPodium(tenant.slug, rawBody, { remoteAddress: ALLOWED_ADDRESS }));
      assert.equal(accepted.statusCode, 204);
      assert.equal(await inboundCount(deliveries.harness, tenant), 1);
    });

    test('a body over 64 KiB is refused with 413 problem+json (body-too-large)', async () => {
      const tenant = await deliveries.tenant();
      const rawBody = JSON.stringify({ ...(JSON.parse(deliveries.podiumEvent().rawBody) as object), padding: 'x'.repeat(OVERSIZED) });
      await deliveries.expectRejected({ provider: 'podium', reason: 'body-too-large', tenant: null }, () => deliveries.signedPodium(tenant.slug, rawBody));
    });

    test('a signature in hex (either case) or in base64 is accepted', async () => {
      const tenant = await deliveries.tenant();
      for (const encoding of ['hex', 'HEX', 'base64'] as const) {
        const { rawBody } = deliveries.podiumEvent();
        const timestampMs = Date.now();
        const signature = deliveries.signPodium(PODIUM_WEBHOOK_SECRET, timestampMs, rawBody, encoding === 'HEX' ? 'hex' : encoding);
        const response = await deliveries.expectAccepted(() =>
          deliveries.postPodium(tenant.slug, rawBody, { timestamp: String(timestampMs), signature: encoding === 'HEX' ? signature.toUpperCase() : signature }),
        );
        assert.equal(response.statusCode, 204, `${encoding}: ${response.body}`);
      }
      assert.equal(await inboundCount(deliveries.harness, tenant), 3);
    });

    // An organization's webhook delivers the events of all its locations, under one secret
    // (https://docs.podium.com/reference/webhookcreate-1); a tenant is one location. Like Twilio's
    // AccountSid, the location named in the event must be the tenant's.
    test("a signed event for a location other than the tenant's is refused (account-mismatch)", async () => {
      const tenant = await deliveries.tenant();
      const { rawBody } = deliveries.podiumEvent(OTHER_PODIUM_LOCATION);
      await deliveries.expectRejected({ provider: 'podium', reason: 'account-mismatch', tenant }, () => deliveries.signedPodium(tenant.slug, rawBody));
    });

    test('a signed delivery the relay cannot read is refused (malformed-payload)', async () => {
      const tenant = await deliveries.tenant();
      for (const rawBody of ['not json at all', JSON.stringify({ data: {}, metadata: {} })]) {
        await deliveries.expectRejected({ provider: 'podium', reason: 'malformed-payload', tenant }, () => deliveries.signedPodium(tenant.slug, rawBody));
      }
    });
  });

  describe('Airtable', () => {
    test('a valid ping answers 204 and leaves exactly one airtable-webhook job pending; a second ping adds none', async () => {
      const tenant = await deliveries.tenant();
      const first = await deliveries.expectAccepted(() => deliveries.signedAirtable(tenant.slug, airtablePing(tenant)));
      assert.equal(first.statusCode, 204);
      assert.equal(await pendingAirtableWebhookJobs(deliveries.harness, tenant), 1);
      const second = await deliveries.expectAccepted(() => deliveries.signedAirtable(tenant.slug, airtablePing(tenant)));
      assert.equal(second.statusCode, 204);
      assert.equal(await pendingAirtableWebhookJobs(deliveries.harness, tenant), 1);
    });

    test('a MAC made with another secret is refused (bad-signature)', async () => {
      const tenant = await deliveries.tenant();
      await deliveries.expectRejected({ provider: 'airtable', reason: 'bad-signature', tenant }, () =>
        deliveries.signedAirtable(tenant.slug, airtablePing(tenant), { macSecretBase64: FORGED_MAC_SECRET }),
      );
    });

    test('a MAC keyed with the base64 text instead of the decoded secret is refused (bad-signature)', async () => {
      // Airtable's key is the base64-DECODED macSecretBase64
      // (https://airtable.com/developers/web/api/webhooks-overview, "Webhook notification delivery").
      const tenant = await deliveries.tenant();
      const rawBody = airtablePing(tenant);
      const textKeyed = `hmac-sha256=${createHash('sha256').update(deliveries.harness.airtableMacSecret(tenant.slug)).update(rawBody).digest('hex')}`;
      deliveries.sensitive.add(textKeyed);
      await deliveries.expectRejected({ provider: 'airtable', reason: 'bad-signature', tenant }, () => deliveries.postAirtable(tenant.slug, rawBody, { mac: textKeyed }));
    });

    test('a body changed after signing is refused (bad-signature)', async () => {
      const tenant = await deliveries.tenant();
      const rawBody = airtablePing(tenant);
      const mac = deliveries.signAirtable(deliveries.harness.airtableMacSecret(tenant.slug), rawBody);
      const tampered = rawBody.replace(/"timestamp":"[^"]*"/, `"timestamp":"${new Date(Date.now() + 1000).toISOString()}"`);
      assert.notEqual(tampered, rawBody);
      await deliveries.expectRejected({ provider: 'airtable', reason: 'bad-signature', tenant }, () => deliveries.postAirtable(tenant.slug, tampered, { mac }));
    });

    test('a ping without X-Airtable-Content-MAC is refused (missing-signature)', async () => {
      const tenant = await deliveries.tenant();
      await deliveries.expectRejected({ provider: 'airtable', reason: 'missing-signature', tenant }, () => deliveries.postAirtable(tenant.slug, airtablePing(tenant), { mac: null }));
    });

    test("a ping MAC'd with tenant A's secret, posted to tenant B's URL, is refused (bad-signature)", async () => {
      const tenantA = await deliveries.tenant();
      const tenantB = await deliveries.tenant();
      await deliveries.expectRejected({ provider: 'airtable', reason: 'bad-signature', tenant: tenantB }, () =>
        deliveries.signedAirtable(tenantB.slug, airtablePing(tenantB), { macSecretBase64: deliveries.harness.airtableMacSecret(tenantA.slug) }),
      );
      assert.equal(await pendingAirtableWebhookJobs(deliveries.harness, tenantA), 0);
    });

    test("a ping naming a webhook that is not the tenant's is refused (malformed-payload)", async () => {
      const tenant = await deliveries.tenant();
      const other = await deliveries.tenant();
      await deliveries.expectRejected({ provider: 'airtable', reason: 'malformed-payload', tenant }, () =>
        deliveries.signedAirtable(tenant.slug, airtablePing(tenant, other.settings.airtable!.webhookId!)),
      );
      for (const rawBody of ['not json', 'null', JSON.stringify({ base: { id: tenant.settings.airtable!.baseId } })]) {
        await deliveries.expectRejected({ provider: 'airtable', reason: 'malformed-payload', tenant }, () => deliveries.signedAirtable(tenant.slug, rawBody));
      }
    });

    test('an unknown tenant is refused with an answer byte-identical to a bad signature (unknown-tenant)', async () => {
      const tenant = await deliveries.tenant();
      const rawBody = airtablePing(tenant);
      const badSignature = await deliveries.expectRejected({ provider: 'airtable', reason: 'bad-signature', tenant }, () =>
        deliveries.signedAirtable(tenant.slug, rawBody, { macSecretBase64: FORGED_MAC_SECRET }),
      );
      for (const slug of [`absent-${randomBytes(3).toString('hex')}`, 'Not_A_Valid_Slug']) {
        const unknown = await deliveries.expectRejected({ provider: 'airtable', reason: 'unknown-tenant', tenant: null }, () =>
          deliveries.signedAirtable(slug, rawBody, { macSecretBase64: deliveries.harness.airtableMacSecret(tenant.slug) }),
        );
        assert.equal(unknown.body, badSignature.body);
        assert.deepEqual(comparableHeaders(unknown), comparableHeaders(badSignature));
      }
    });

    test('a tenant without Airtable configured is refused (provider-not-configured)', async () => {
      const tenant = await deliveries.tenant((document) => {
        delete document.airtable;
      });
      // Signed with the MAC secret of the webhook the harness made for this slug on the fake.
      await deliveries.expectRejected({ provider: 'airtable', reason: 'provider-not-configured', tenant }, () =>
        deliveries.signedAirtable(tenant.slug, JSON.stringify({ base: { id: 'appAAAAAAAAAAAAAA' }, webhook: { id: 'achAAAAAAAAAAAAAA' }, timestamp: new Date().toISOString() })),
      );
    });

    test('the address allowlist: outside it is refused, inside it is accepted, and X-Forwarded-For is not believed without a trusted proxy', async () => {
      const tenant = await deliveries.tenant((document) => {
        document.allowIps = { ...document.allowIps, airtable: [ALLOWED_NETWORK] };
      });
      await deliveries.expectRejected({ provider: 'airtable', reason: 'address-not-allowed', tenant, sourceIp: OUTSIDE_ADDRESS }, () =>
        deliveries.signedAirtable(tenant.slug, airtablePing(tenant), { remoteAddress: OUTSIDE_ADDRESS }),
      );
      await deliveries.expectRejected({ provider: 'airtable', reason: 'address-not-allowed', tenant, sourceIp: OUTSIDE_ADDRESS }, () =>
        deliveries.signedAirtable(tenant.slug, airtablePing(tenant), { remoteAddress: OUTSIDE_ADDRESS, headers: { 'x-forwarded-for': ALLOWED_ADDRESS } }),
      );
      const accepted = await deliveries.expectAccepted(() => deliveries.signedAirtable(tenant.slug, airtablePing(tenant), { remoteAddress: ALLOWED_ADDRESS }));
      assert.equal(accepted.statusCode, 204);
      assert.equal(await pendingAirtableWebhookJobs(deliveries.harness, tenant), 1);
    });

    test('a body over 64 KiB is refused with 413 problem+json (body-too-large)', async () => {
      const tenant = await deliveries.tenant();
      const rawBody = JSON.stringify({ ...(JSON.parse(airtablePing(tenant)) as object), padding: 'x'.repeat(OVERSIZED) });
      await deliveries.expectRejected({ provider: 'airtable', reason: 'body-too-large', tenant: null }, () => deliveries.signedAirtable(tenant.slug, rawBody));
    });
  });

  describe('behind a trusted proxy (CIPHERGATE_TRUST_PROXY)', () => {
    let proxied: Deliveries;
    before(async () => {
      proxied = new Deliveries(await openRelayHarness(backend, { env: { CIPHERGATE_TRUST_PROXY: `${TRUSTED_PROXY}/32` } }));
    });
    after(async () => proxied?.harness.close());

    const allowlisted = (provider: Provider) => (document: TenantDocument) => {
      document.allowIps = { twilio: [], airtable: [], podium: [], ...document.allowIps, [provider]: [ALLOWED_NETWORK] };
    };

    /** One signed, otherwise valid delivery per provider, sent with these addresses. */
    const deliver = async (provider: Provider, tenant: TenantContext, origin: { remoteAddress: string; headers?: Record<string, string> }) => {
      if (provider === 'twilio') return proxied.signedTwilio(tenant.slug, 'sms', proxied.smsParams(), origin);
      if (provider === 'podium') return proxied.signedPodium(tenant.slug, proxied.podiumEvent().rawBody, origin);
      return proxied.signedAirtable(tenant.slug, airtablePing(tenant), origin);
    };

    for (const provider of ['twilio', 'podium', 'airtable'] as const) {
      test(`${provider}: the client address the trusted proxy forwards is the one checked and audited`, async () => {
        const tenant = await proxied.tenant(allowlisted(provider));
        const accepted = await proxied.expectAccepted(() => deliver(provider, tenant, { remoteAddress: TRUSTED_PROXY, headers: { 'x-forwarded-for': ALLOWED_ADDRESS } }));
        assert.equal(accepted.statusCode, provider === 'twilio' ? 200 : 204, accepted.body);

        // The caller wrote the allowed address; the proxy appended the real one.
        await proxied.expectRejected({ provider, reason: 'address-not-allowed', tenant, sourceIp: OUTSIDE_ADDRESS }, () =>
          deliver(provider, tenant, { remoteAddress: TRUSTED_PROXY, headers: { 'x-forwarded-for': `${ALLOWED_ADDRESS}, ${OUTSIDE_ADDRESS}` } }),
        );
        // Only the listed proxy is believed.
        await proxied.expectRejected({ provider, reason: 'address-not-allowed', tenant, sourceIp: OUTSIDE_ADDRESS }, () =>
          deliver(provider, tenant, { remoteAddress: OUTSIDE_ADDRESS, headers: { 'x-forwarded-for': ALLOWED_ADDRESS } }),
        );
        // The proxy's own address is not the client's.
        await proxied.expectRejected({ provider, reason: 'address-not-allowed', tenant, sourceIp: TRUSTED_PROXY }, () => deliver(provider, tenant, { remoteAddress: TRUSTED_PROXY }));
      });
    }

    test('X-Forwarded-Host and X-Forwarded-Proto do not change the URL a Twilio signature is checked against', async () => {
      const tenant = await proxied.tenant();
      const params = proxied.smsParams();
      const path = `/webhooks/twilio/${tenant.slug}/sms`;
      const signature = proxied.signTwilio(DEFAULT_TWILIO_ACCOUNT.authToken, `http://attacker.example${path}`, params);
      await proxied.expectRejected({ provider: 'twilio', reason: 'bad-signature', tenant }, () =>
        proxied.postTwilio(tenant.slug, 'sms', params, { signature, headers: { 'x-forwarded-host': 'attacker.example', 'x-forwarded-proto': 'http' } }),
      );
    });

    test('no log line holds a signature, a secret, a phone number or a message body of these deliveries', () => {
      proxied.assertNothingSensitiveLogged();
    });
  });

  test('no log line holds a signature, a secret, a phone number or a message body of these deliveries', () => {
    deliveries.assertNothingSensitiveLogged();
  });
});
