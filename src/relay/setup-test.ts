import { randomBytes, randomUUID } from 'node:crypto';
import { SETUP_TEST_BODY_MARKER } from '../domain/setup-test.js';
import { signPodiumRequest } from '../providers/podium/webhook-signature.js';
import { signTwilioRequest } from '../providers/twilio/webhook-signature.js';
import type { StoredKeyring } from '../seal/keyring.js';
import type { SealedFields } from '../seal/sealed-fields.js';
import { appendAuditEvent } from '../store/audit-trail.js';
import type { Db } from '../store/connection.js';
import { ConversationRepository } from '../store/repositories/conversations.js';
import { TenantRepository } from '../store/repositories/tenants.js';
import { TenantDirectory, type TenantContext } from './tenant-directory.js';

/**
 * The setup test (`ciphergate tenants test SLUG`): one correctly signed test delivery per
 * configured provider, sent to the tenant's PUBLIC webhook URL (CIPHERGATE_PUBLIC_URL + path, so
 * through the operator's proxy and TLS, exactly as the provider will call it), then each hop read
 * back: reachable, signature accepted, stored (looked up by its provider id), AI and reply
 * skipped for a test message (src/domain/setup-test.ts: the relay stores it and enqueues no job).
 * Every failed hop carries a hint naming the likely cause. Audited as `tenant.setup-test`.
 */

export type SetupTestHopName = 'reachable' | 'signature' | 'stored' | 'ai' | 'reply';

export interface SetupTestHop {
  hop: SetupTestHopName;
  result: 'pass' | 'fail' | 'skipped';
  detail: string;
  /** What to check, for a failed hop. */
  hint?: string;
}

export interface SetupTestDelivery {
  provider: 'twilio' | 'podium' | 'airtable';
  /** The public URL the delivery was sent to and signed for. */
  url: string;
  hops: SetupTestHop[];
}

export type SetupTestOutcome =
  | { ok: false; code: 'unknown-tenant' }
  | { ok: true; tenant: { id: string; slug: string }; passed: boolean; deliveries: SetupTestDelivery[] };

export interface SetupTestDeps {
  db: Db;
  fields: SealedFields;
  keyring: StoredKeyring;
  /** CIPHERGATE_PUBLIC_URL, without a trailing slash. */
  publicUrl: string;
  /** How long one delivery may take before it counts as unreachable; bounds a hang. */
  timeoutMs?: number;
}

/** The sender of every test message: Twilio's documented magic test number, never a customer's. */
export const SETUP_TEST_SENDER = '+15005550006';

/** Runs the setup test of `slug`; `actor` is audited. */
export async function runSetupTest(deps: SetupTestDeps, slug: string, actor: { type: 'system' | 'user'; id?: string }): Promise<SetupTestOutcome> {
  const tenants = new TenantDirectory(deps.db, new TenantRepository(deps.db, deps.fields, deps.keyring));
  const tenant = await tenants.bySlug(slug);
  if (!tenant) return { ok: false, code: 'unknown-tenant' };
  const conversations = new ConversationRepository(deps.db, deps.fields);
  const probe = new DeliveryProbe(deps, tenant, conversations);
  const deliveries: SetupTestDelivery[] = [];
  if (tenant.settings.twilio && tenant.secrets.twilioAuthToken) deliveries.push(await probe.twilio(tenant.secrets.twilioAuthToken, tenant.settings.twilio.accountSid));
  if (tenant.settings.podium && tenant.secrets.podiumWebhookSecret) deliveries.push(await probe.podium(tenant.secrets.podiumWebhookSecret, tenant.settings.podium.locationUid));
  if (tenant.settings.airtable) {
    // An Airtable ping makes the server fetch the changes from Airtable itself: not something a
    // test may set off. The webhook URL is the same origin and prefix as the ones tested above.
    deliveries.push({
      provider: 'airtable',
      url: webhookUrl(deps.publicUrl, `/webhooks/airtable/${tenant.slug}`),
      hops: [{ hop: 'reachable', result: 'skipped', detail: 'not sent: an Airtable ping would make the server call Airtable' }],
    });
  }
  const tested = deliveries.filter((delivery) => delivery.provider !== 'airtable');
  const passed = tested.length > 0 && tested.every((delivery) => delivery.hops.every((hop) => hop.result !== 'fail'));
  await appendAuditEvent(deps.db, {
    actor,
    action: 'tenant.setup-test',
    target: { type: 'tenant', id: tenant.id },
    tenantId: tenant.id,
    outcome: passed ? 'success' : 'failure',
    details: { providers: tested.map((delivery) => delivery.provider).join(',') || 'none', failedHops: failedHopNames(tested).join(',') || 'none' },
  });
  return { ok: true, tenant: { id: tenant.id, slug: tenant.slug }, passed, deliveries };
}

class DeliveryProbe {
  constructor(
    private readonly deps: SetupTestDeps,
    private readonly tenant: TenantContext,
    private readonly conversations: ConversationRepository,
  ) {}

  /** An inbound SMS as Twilio posts it: form-encoded, X-Twilio-Signature over the public URL and the parameters. */
  async twilio(authToken: string, accountSid: string): Promise<SetupTestDelivery> {
    const url = webhookUrl(this.deps.publicUrl, `/webhooks/twilio/${this.tenant.slug}/sms`);
    const sid = `SM7e57${randomBytes(14).toString('hex')}`;
    const params = { MessageSid: sid, SmsSid: sid, AccountSid: accountSid, From: SETUP_TEST_SENDER, To: this.tenant.settings.twilio?.fromNumber ?? '', Body: testBody(), NumMedia: '0' };
    const headers = { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': signTwilioRequest(authToken, url, params) };
    return this.deliver('twilio', url, headers, new URLSearchParams(params).toString(), `twilio:${sid}`);
  }

  /** A message.received event as Podium posts it: `podium-timestamp` and the HMAC over `timestamp.body`. */
  async podium(secret: string, locationUid: string): Promise<SetupTestDelivery> {
    const url = webhookUrl(this.deps.publicUrl, `/webhooks/podium/${this.tenant.slug}`);
    const uid = `test-${randomUUID()}`;
    const rawBody = JSON.stringify({
      data: { uid, body: testBody(), conversation: { uid: `test-${randomUUID()}`, channel: { type: 'phone', identifier: SETUP_TEST_SENDER } }, location: { uid: locationUid } },
      metadata: { eventType: 'message.received', eventUid: `test-${randomUUID()}`, locationUid },
    });
    const timestamp = Date.now();
    const headers = { 'content-type': 'application/json', 'podium-timestamp': String(timestamp), 'podium-signature': signPodiumRequest(secret, timestamp, rawBody) };
    return this.deliver('podium', url, headers, rawBody, `podium:${uid}`);
  }

  private async deliver(provider: 'twilio' | 'podium', url: string, headers: Record<string, string>, body: string, dedupeKey: string): Promise<SetupTestDelivery> {
    const hops: SetupTestHop[] = [];
    const done = () => ({ provider, url, hops });
    let status: number;
    try {
      // No redirects: a provider does not follow them either, and the signature names this URL.
      const response = await fetch(url, { method: 'POST', headers, body, redirect: 'manual', signal: AbortSignal.timeout(this.deps.timeoutMs ?? 15_000) });
      await response.arrayBuffer();
      status = response.status;
    } catch (error) {
      hops.push({ hop: 'reachable', result: 'fail', detail: connectionFailure(error), hint: `is the server reachable at ${this.deps.publicUrl}? is CIPHERGATE_PUBLIC_URL the address providers call (through your proxy or tunnel)?` });
      return done();
    }
    if (status === 404 || (status >= 300 && status < 400)) {
      hops.push({
        hop: 'reachable',
        result: 'fail',
        detail: `answered ${status}`,
        hint: `the proxy does not pass ${new URL(url).pathname} to Ciphergate as is: check the path prefix in CIPHERGATE_PUBLIC_URL and the proxy's location rules (and that http is not redirected to https)`,
      });
      return done();
    }
    hops.push({ hop: 'reachable', result: 'pass', detail: `answered ${status}` });
    if (status === 403) {
      hops.push({
        hop: 'signature',
        result: 'fail',
        detail: `refused (403); signed for ${url}`,
        hint: `the server checks signatures against its own CIPHERGATE_PUBLIC_URL + path: its log line "webhook rejected" names that URL as checkedUrl; it must be ${url} (scheme, host, port and path prefix). Also check the tenant's allowIps`,
      });
      return done();
    }
    if (status < 200 || status >= 300) {
      hops.push({
        hop: 'signature',
        result: 'fail',
        detail: `answered ${status}`,
        hint: status >= 500 ? "the server (or the proxy in front of it) failed: look in the server's log for the request" : 'the delivery was refused; see the answer in the server log',
      });
      return done();
    }
    hops.push({ hop: 'signature', result: 'pass', detail: `accepted (${status})` });
    // The relay commits before it answers 2xx, so the message is there now or never.
    const storedId = await this.conversations.idByDedupeKey(this.tenant.id, dedupeKey);
    if (storedId === undefined) {
      hops.push({ hop: 'stored', result: 'fail', detail: 'not found after a 2xx answer', hint: 'the server that answered is not writing to this database: is CIPHERGATE_PUBLIC_URL pointing at another instance or environment?' });
      return done();
    }
    hops.push({ hop: 'stored', result: 'pass', detail: `message ${storedId}` });
    const ai = this.tenant.settings.openai ? 'skipped: setup test (a real message is answered by OpenAI)' : 'skipped: no OpenAI settings';
    hops.push({ hop: 'ai', result: 'skipped', detail: ai });
    hops.push({ hop: 'reply', result: 'skipped', detail: 'skipped: setup test (nothing is sent)' });
    return done();
  }
}

function testBody(): string {
  return `${SETUP_TEST_BODY_MARKER} ${randomBytes(6).toString('hex')}`;
}

function webhookUrl(publicUrl: string, path: string): string {
  return `${publicUrl.replace(/\/+$/, '')}${path}`;
}

function failedHopNames(deliveries: SetupTestDelivery[]): string[] {
  return deliveries.flatMap((delivery) => delivery.hops.filter((hop) => hop.result === 'fail').map((hop) => `${delivery.provider}:${hop.hop}`));
}

/** fetch's TypeError carries the socket's error as `cause` (ECONNREFUSED, ENOTFOUND, a TLS code). */
function connectionFailure(error: unknown): string {
  if (error instanceof Error && error.name === 'TimeoutError') return 'no answer in time';
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  if (cause?.code) return `could not connect (${cause.code})`;
  return `could not connect (${error instanceof Error ? error.message : String(error)})`;
}
