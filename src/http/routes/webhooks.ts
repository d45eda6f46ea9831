import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from '../../log/logger.js';
import { verifyAirtableMac } from '../../providers/airtable/webhook-mac.js';
import { parsePodiumEvent, PodiumEventError } from '../../providers/podium/events.js';
import { verifyPodiumRequest } from '../../providers/podium/webhook-signature.js';
import { parseFormBody, verifyTwilioRequest } from '../../providers/twilio/webhook-signature.js';
import { normaliseE164 } from '../../domain/normalise.js';
import { isUuid } from '../../domain/ids.js';
import { isAddressAllowed } from '../../relay/inbound/ip-allowlist.js';
import { normaliseStatus } from '../../domain/message-status.js';
import type { Relay } from '../../relay/relay.js';
import type { TenantContext } from '../../relay/tenant-directory.js';
import type { RedisConnection } from '../../store/redis.js';
import { TENANT_SLUG_PATTERN } from '../../domain/ids.js';
import { PROBLEM_CONTENT_TYPE } from '../problem.js';
import { limitByAddress } from '../rate-limit.js';

type Provider = 'twilio' | 'podium' | 'airtable';

/**
 * Why a delivery was refused. Recorded in the audit trail (aggregated per minute) and the
 * metrics; the caller always hears the same 403, so an unknown tenant cannot be told apart from
 * a bad signature.
 */
export type RejectionReason =
  | 'unknown-tenant'
  | 'provider-not-configured'
  | 'address-not-allowed'
  | 'missing-signature'
  | 'bad-signature'
  | 'stale-timestamp'
  | 'account-mismatch'
  | 'malformed-payload'
  | 'body-too-large';

/** SMS webhooks are a few hundred bytes; Podium and Airtable events a few KiB. */
export const WEBHOOK_BODY_LIMIT_BYTES = 64 * 1024;

/** A Message SID: SM (SMS) or MM (MMS) and 32 hex digits (https://www.twilio.com/docs/glossary/what-is-a-sid). */
const TWILIO_MESSAGE_SID = /^(SM|MM)[0-9a-f]{32}$/i;

const EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>';
/**
 * Used when the tenant is unknown, so the work done (and the time it takes) matches a real
 * check that fails: the answer and its timing say nothing about which tenants exist.
 */
const DECOY_SECRET = 'ciphergate-decoy-secret-that-matches-nothing';
const DECOY_MAC_SECRET = Buffer.from(DECOY_SECRET).toString('base64');

const access = { public: true, reason: 'provider webhook: the provider signature is checked in the handler' } as const;

export interface WebhookRouteOptions {
  relay: Relay;
  publicUrl: string;
  logger: Logger;
  /**
   * Requests per minute per source address (CIPHERGATE_WEBHOOK_RATE_LIMIT_PER_MINUTE), shared
   * through Redis when there is one.
   */
  rateLimit: { perMinute: number; redis?: RedisConnection | undefined; keyPrefix: string };
}

/**
 * The provider webhooks (CONTRACT.md "Webhooks"). Each verifies the caller before reading
 * anything the caller says, stores what it must in one transaction, and answers 2xx only after
 * that commit: a provider that sees no 2xx retries, and what got a 2xx is durable.
 */
export function webhookRoutes(options: WebhookRouteOptions) {
  const { relay, publicUrl } = options;

  return async (app: FastifyInstance): Promise<void> => {
    // First of all, per source address: a flood is refused before its body is read, its tenant
    // looked up or its signature checked. A 429 is counted in the metrics and never audited.
    limitByAddress(app, {
      ...options.rateLimit,
      name: 'webhook-rate',
      onLimited: (request) => relay.metrics.webhookRejections.inc({ provider: providerOf(request.url) ?? 'unknown', reason: 'rate-limited' }),
    });

    // Signatures are over the exact bytes received, so every body is kept raw and parsed here.
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: WEBHOOK_BODY_LIMIT_BYTES }, (_request, body, done) => done(null, body));

    // A delivery refused before any handler ran (too large, no content type) is still counted and audited.
    app.addHook('onError', async (request, _reply, error) => {
      const code = (error as { code?: string }).code;
      if (code === 'FST_ERR_CTP_BODY_TOO_LARGE') recordRejection(request, providerOf(request.url), 'body-too-large');
      else if (code?.startsWith('FST_ERR_CTP_')) recordRejection(request, providerOf(request.url), 'malformed-payload');
    });

    app.post<{ Params: { tenant: string } }>('/webhooks/twilio/:tenant/sms', { config: { access }, bodyLimit: WEBHOOK_BODY_LIMIT_BYTES }, async (request, reply) => {
      const verified = await verifyTwilio(request);
      if (!verified.ok) return reject(request, reply, 'twilio', verified.reason, verified.tenant);
      const { tenant, params } = verified;
      const messageSid = first(params.MessageSid) ?? first(params.SmsSid);
      const from = first(params.From);
      const body = first(params.Body) ?? '';
      if (!messageSid || !TWILIO_MESSAGE_SID.test(messageSid) || !from) return reject(request, reply, 'twilio', 'malformed-payload', tenant);
      const phone = phoneOrUndefined(from);
      if (phone === undefined) {
        // A short code or an alphanumeric sender: genuine, but nothing we can answer or index.
        // Acknowledged (an error would only make Twilio log failures) and not stored.
        relay.metrics.webhookAccepted.inc({ provider: 'twilio', outcome: 'ignored' });
        return reply.type('text/xml').send(EMPTY_TWIML);
      }
      const stored = await relay.receive(tenant, { channel: 'sms', dedupeKey: `twilio:${messageSid}`, providerMessageId: messageSid, phone, body });
      relay.metrics.webhookAccepted.inc({ provider: 'twilio', outcome: stored.duplicate ? 'duplicate' : 'stored' });
      // Replies go out through the REST API (with a status callback), never in the TwiML answer.
      return reply.type('text/xml').send(EMPTY_TWIML);
    });

    app.post<{ Params: { tenant: string } }>('/webhooks/twilio/:tenant/status', { config: { access }, bodyLimit: WEBHOOK_BODY_LIMIT_BYTES }, async (request, reply) => {
      const verified = await verifyTwilio(request);
      if (!verified.ok) return reject(request, reply, 'twilio', verified.reason, verified.tenant);
      const { tenant, params } = verified;
      const messageSid = first(params.MessageSid) ?? first(params.SmsSid);
      const status = normaliseStatus(first(params.MessageStatus) ?? first(params.SmsStatus));
      const errorCode = first(params.ErrorCode);
      // The sid is looked up as text: one that is no sid (a NUL byte in it failed the query) is malformed.
      if (!messageSid || !TWILIO_MESSAGE_SID.test(messageSid) || status === 'unknown') return reject(request, reply, 'twilio', 'malformed-payload', tenant);
      // Our status callback URLs name our message (`?m=`): the callback can arrive before the
      // send job has recorded Twilio's sid. The query is covered by the signature.
      const ours = new URL(request.url, 'http://x').searchParams.get('m');
      const which = ours && isUuid(ours) ? { messageId: ours } : { providerMessageId: messageSid };
      await relay.updateStatus(tenant, which, status, errorCode && /^\d{1,10}$/.test(errorCode) ? errorCode : null);
      relay.metrics.webhookAccepted.inc({ provider: 'twilio', outcome: 'status' });
      return reply.code(204).send();
    });

    app.post<{ Params: { tenant: string } }>('/webhooks/podium/:tenant', { config: { access }, bodyLimit: WEBHOOK_BODY_LIMIT_BYTES }, async (request, reply) => {
      const gate = await admit(request, 'podium');
      if (!gate.ok) return reject(request, reply, 'podium', gate.reason, gate.tenant);
      const { tenant } = gate;
      const secret = tenant?.secrets.podiumWebhookSecret ?? DECOY_SECRET;
      const check = verifyPodiumRequest({
        secret,
        timestamp: header(request, 'podium-timestamp'),
        signature: header(request, 'podium-signature'),
        rawBody: rawBodyOf(request),
      });
      if (!tenant) return reject(request, reply, 'podium', 'unknown-tenant');
      if (!tenant.settings.podium || !tenant.secrets.podiumWebhookSecret) return reject(request, reply, 'podium', 'provider-not-configured', tenant);
      if (!check.ok) return reject(request, reply, 'podium', check.reason === 'missing-header' ? 'missing-signature' : check.reason, tenant);
      let event;
      try {
        event = parsePodiumEvent(rawBodyOf(request));
      } catch (error) {
        if (error instanceof PodiumEventError) return reject(request, reply, 'podium', 'malformed-payload', tenant);
        throw error;
      }
      // One secret may sign a whole organization's events; only this tenant's location is ours.
      if (event.locationUid !== undefined && event.locationUid !== tenant.settings.podium.locationUid) return reject(request, reply, 'podium', 'account-mismatch', tenant);
      if (event.message && event.message.direction !== 'outbound' && event.eventType === 'message.received') {
        const message = event.message;
        const phone = phoneOrUndefined(message.channelType === 'phone' || message.channelType === 'sms' ? message.channelIdentifier : undefined);
        if (phone === undefined) {
          // A genuine delivery we cannot answer by SMS (email, Facebook): acknowledged so Podium
          // stops retrying, and not stored.
          relay.metrics.webhookAccepted.inc({ provider: 'podium', outcome: 'ignored' });
          return reply.code(204).send();
        }
        const stored = await relay.receive(tenant, {
          channel: 'podium',
          dedupeKey: `podium:${message.uid}`,
          providerMessageId: message.uid,
          phone,
          name: message.contactName ?? null,
          body: message.body,
          providerConversationId: message.conversationUid,
        });
        relay.metrics.webhookAccepted.inc({ provider: 'podium', outcome: stored.duplicate ? 'duplicate' : 'stored' });
      } else if (event.status) {
        await relay.updateStatus(tenant, { providerMessageId: event.status.messageUid }, normaliseStatus(event.status.state), null);
        relay.metrics.webhookAccepted.inc({ provider: 'podium', outcome: 'status' });
      } else {
        relay.metrics.webhookAccepted.inc({ provider: 'podium', outcome: 'ignored' });
      }
      return reply.code(204).send();
    });

    app.post<{ Params: { tenant: string } }>('/webhooks/airtable/:tenant', { config: { access }, bodyLimit: WEBHOOK_BODY_LIMIT_BYTES }, async (request, reply) => {
      const gate = await admit(request, 'airtable');
      if (!gate.ok) return reject(request, reply, 'airtable', gate.reason, gate.tenant);
      const { tenant } = gate;
      const valid = verifyAirtableMac({
        macSecretBase64: tenant?.secrets.airtableMacSecret ?? DECOY_MAC_SECRET,
        header: header(request, 'x-airtable-content-mac'),
        rawBody: rawBodyOf(request),
      });
      if (!tenant) return reject(request, reply, 'airtable', 'unknown-tenant');
      if (!tenant.settings.airtable?.webhookId || !tenant.secrets.airtableMacSecret) return reject(request, reply, 'airtable', 'provider-not-configured', tenant);
      if (!header(request, 'x-airtable-content-mac')) return reject(request, reply, 'airtable', 'missing-signature', tenant);
      if (!valid) return reject(request, reply, 'airtable', 'bad-signature', tenant);
      // The ping names the webhook; one for another webhook of the base is not ours to act on.
      let notification: { webhook?: { id?: unknown } };
      try {
        notification = JSON.parse(rawBodyOf(request).toString('utf8')) as typeof notification;
      } catch {
        return reject(request, reply, 'airtable', 'malformed-payload', tenant);
      }
      if (notification?.webhook?.id !== tenant.settings.airtable.webhookId) return reject(request, reply, 'airtable', 'malformed-payload', tenant);
      await relay.airtableChanged(tenant);
      relay.metrics.webhookAccepted.inc({ provider: 'airtable', outcome: 'ping' });
      return reply.code(204).send();
    });

    /** Tenant and address checks shared by every provider. The tenant is undefined when unknown. */
    async function admit(
      request: FastifyRequest<{ Params: { tenant: string } }>,
      provider: Provider,
    ): Promise<{ ok: true; tenant: TenantContext | undefined } | { ok: false; reason: RejectionReason; tenant?: TenantContext }> {
      const slug = request.params.tenant;
      const tenant = TENANT_SLUG_PATTERN.test(slug) ? await relay.tenants.bySlug(slug) : undefined;
      if (tenant && !isAddressAllowed(tenant.settings.allowIps[provider], request.ip)) return { ok: false, reason: 'address-not-allowed', tenant };
      return { ok: true, tenant };
    }

    async function verifyTwilio(
      request: FastifyRequest<{ Params: { tenant: string } }>,
    ): Promise<{ ok: true; tenant: TenantContext; params: Record<string, string | string[]> } | { ok: false; reason: RejectionReason; tenant?: TenantContext }> {
      const gate = await admit(request, 'twilio');
      if (!gate.ok) return gate;
      const { tenant } = gate;
      const rawBody = rawBodyOf(request);
      const contentType = header(request, 'content-type');
      const signature = header(request, 'x-twilio-signature');
      const isJson = (contentType ?? '').toLowerCase().startsWith('application/json');
      let params: Record<string, string | string[]>;
      try {
        params = isJson ? jsonParams(rawBody) : parseFormBody(rawBody);
      } catch {
        return tenant ? { ok: false, reason: 'malformed-payload', tenant } : { ok: false, reason: 'unknown-tenant' };
      }
      const valid = verifyTwilioRequest({
        authToken: tenant?.secrets.twilioAuthToken ?? DECOY_SECRET,
        // The URL Twilio was given: our public URL and the path and query as received. Never
        // the Host header, which the caller writes.
        url: `${publicUrl}${request.url}`,
        signature,
        contentType,
        rawBody,
        ...(isJson ? {} : { formParams: params }),
      });
      if (!tenant) return { ok: false, reason: 'unknown-tenant' };
      if (!tenant.settings.twilio || !tenant.secrets.twilioAuthToken) return { ok: false, reason: 'provider-not-configured', tenant };
      if (!signature) return { ok: false, reason: 'missing-signature', tenant };
      if (!valid) return { ok: false, reason: 'bad-signature', tenant };
      const accountSid = first(params.AccountSid);
      if (accountSid !== undefined && accountSid !== tenant.settings.twilio.accountSid) return { ok: false, reason: 'account-mismatch', tenant };
      return { ok: true, tenant, params };
    }

    async function reject(request: FastifyRequest, reply: FastifyReply, provider: Provider, reason: RejectionReason, tenant?: TenantContext): Promise<FastifyReply> {
      recordRejection(request, provider, reason, tenant);
      return reply
        .code(403)
        .type(PROBLEM_CONTENT_TYPE)
        .send({ type: 'webhook-rejected', title: 'Forbidden', status: 403, detail: 'the request could not be verified as coming from the provider configured for this tenant' });
    }

    /**
     * Counted in the metrics and the request log per request, audited per minute: one entry per
     * provider, tenant and reason with its count (src/audit/aggregator.ts), so a flood of forged
     * deliveries costs a bounded number of audit rows and no database write per request.
     */
    function recordRejection(request: FastifyRequest, provider: Provider | undefined, reason: RejectionReason, tenant?: TenantContext): void {
      relay.metrics.webhookRejections.inc({ provider: provider ?? 'unknown', reason });
      request.log.warn({ provider, reason, tenantId: tenant?.id }, 'webhook rejected');
      relay.rejectionAudit.count({ action: 'webhook.rejected', outcome: 'failure', tenantId: tenant?.id ?? null, labels: { provider: provider ?? 'unknown', reason } }, request.ip);
    }
  };
}

function providerOf(url: string): Provider | undefined {
  const match = /^\/webhooks\/(twilio|podium|airtable)\//.exec(url);
  return match ? (match[1] as Provider) : undefined;
}

function phoneOrUndefined(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  try {
    return normaliseE164(value);
  } catch {
    return undefined;
  }
}

function rawBodyOf(request: FastifyRequest): Buffer {
  return Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
}

function header(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function first(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** Twilio's JSON webhooks (signed with bodySHA256) carry flat string members. */
function jsonParams(rawBody: Buffer): Record<string, string> {
  const parsed = JSON.parse(rawBody.toString('utf8')) as unknown;
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new SyntaxError('not an object');
  return Object.fromEntries(Object.entries(parsed).filter((entry): entry is [string, string] => typeof entry[1] === 'string'));
}
