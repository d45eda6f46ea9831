import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import * as airtable from '../../relay/inbound/airtable.js';
import type { Delivery, InboundProvider, Rejection } from '../../relay/inbound/gate.js';
import * as podium from '../../relay/inbound/podium.js';
import * as twilio from '../../relay/inbound/twilio.js';
import type { Relay } from '../../relay/relay.js';
import { Type } from '@sinclair/typebox';
import { problemResponse, type DocumentedRequest } from '../openapi.js';
import { PROBLEM_CONTENT_TYPE } from '../problem.js';
import { limitByAddress, type SharedLimitBackend } from '../rate-limit.js';

/** SMS webhooks are a few hundred bytes; Podium and Airtable events a few KiB. */
export const WEBHOOK_BODY_LIMIT_BYTES = 64 * 1024;

/** Replies go out through the REST API (with a status callback), never in the TwiML answer. */
const EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>';

const access = { public: true, reason: 'provider webhook: the provider signature is checked in the handler' } as const;

export interface WebhookRouteOptions {
  relay: Relay;
  publicUrl: string;
  /**
   * Requests per minute per source address (CIPHERGATE_WEBHOOK_RATE_LIMIT_PER_MINUTE), shared
   * through Redis when there is one.
   */
  rateLimit: { perMinute: number; redis?: SharedLimitBackend; keyPrefix: string };
}

/**
 * The provider webhooks (CONTRACT.md "Webhooks"): HTTP in, HTTP out. The relay's inbound use
 * cases (src/relay/inbound/<provider>.ts) verify the caller before anything the caller says is
 * read, and store what they must in one transaction; the answer is 2xx only after that commit:
 * a provider that sees no 2xx retries, and what got a 2xx is durable. Every refusal is the same
 * 403, so an unknown tenant cannot be told apart from a bad signature.
 */
export function webhookRoutes(options: WebhookRouteOptions) {
  const { relay, publicUrl } = options;

  return async (app: FastifyInstance): Promise<void> => {
    // First of all, per source address: a flood is refused before its body is read, its tenant
    // looked up or its signature checked. A 429 is counted in the metrics and never audited.
    limitByAddress(app, { ...options.rateLimit, name: 'webhook-rate', onLimited: (request) => relay.gate.rateLimited(providerOf(request.url)) });

    // Signatures are over the exact bytes received, so every body is kept raw and parsed by the relay.
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: WEBHOOK_BODY_LIMIT_BYTES }, (_request, body, done) => done(null, body));

    // A delivery refused before any handler ran (too large, no content type) is still counted and audited.
    app.addHook('onError', async (request, _reply, error) => {
      const code = (error as { code?: string }).code;
      if (code === 'FST_ERR_CTP_BODY_TOO_LARGE') refused(request, providerOf(request.url), { reason: 'body-too-large' });
      else if (code?.startsWith('FST_ERR_CTP_')) refused(request, providerOf(request.url), { reason: 'malformed-payload' });
    });

    const route = (documentedRequest: DocumentedRequest, accepted: Record<number, unknown>) => ({
      config: { access, documentedRequest, rateLimited: true },
      bodyLimit: WEBHOOK_BODY_LIMIT_BYTES,
      schema: {
        tags: ['webhooks'],
        // No pattern: a tenant that cannot exist is refused with the same 403 as a bad signature.
        params: Type.Object({ tenant: Type.String({ description: 'tenant slug' }) }),
        response: {
          ...accepted,
          403: problemResponse(['webhook-rejected']),
          413: problemResponse(['payload-too-large']),
          429: problemResponse(['rate-limited']),
        },
      },
    });

    app.post<{ Params: { tenant: string } }>('/webhooks/twilio/:tenant/sms', route(TWILIO_SMS, { 200: TWIML_ANSWER }), async (request, reply) => {
      const verified = await twilio.verify(relay.gate, deliveryOf(request));
      const accepted = verified.ok ? await twilio.accept(relay, verified, 'sms') : verified;
      if (!accepted.ok) return reject(request, reply, 'twilio', accepted);
      return reply.type('text/xml').send(EMPTY_TWIML);
    });

    app.post<{ Params: { tenant: string } }>('/webhooks/twilio/:tenant/status', route(TWILIO_STATUS, { 204: NO_CONTENT }), async (request, reply) => {
      const verified = await twilio.verify(relay.gate, deliveryOf(request));
      const accepted = verified.ok ? await twilio.accept(relay, verified, 'status') : verified;
      if (!accepted.ok) return reject(request, reply, 'twilio', accepted);
      return reply.code(204).send();
    });

    app.post<{ Params: { tenant: string } }>('/webhooks/podium/:tenant', route(PODIUM_EVENT, { 204: NO_CONTENT }), async (request, reply) => {
      const verified = await podium.verify(relay.gate, deliveryOf(request));
      const accepted = verified.ok ? await podium.accept(relay, verified) : verified;
      if (!accepted.ok) return reject(request, reply, 'podium', accepted);
      return reply.code(204).send();
    });

    app.post<{ Params: { tenant: string } }>('/webhooks/airtable/:tenant', route(AIRTABLE_PING, { 204: NO_CONTENT }), async (request, reply) => {
      const verified = await airtable.verify(relay.gate, deliveryOf(request));
      const accepted = verified.ok ? await airtable.accept(relay, verified) : verified;
      if (!accepted.ok) return reject(request, reply, 'airtable', accepted);
      return reply.code(204).send();
    });

    /** What the relay checks of a request: the raw bytes, headers, the URL the provider signed, the address. */
    function deliveryOf(request: FastifyRequest<{ Params: { tenant: string } }>): Delivery {
      return {
        tenantSlug: request.params.tenant,
        rawBody: Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0),
        header: (name) => {
          const value = request.headers[name];
          return Array.isArray(value) ? value[0] : value;
        },
        // The URL the provider was given: our public URL and the path and query as received.
        // Never the Host header, which the caller writes.
        signedUrl: `${publicUrl}${request.url}`,
        sourceIp: request.ip,
      };
    }

    async function reject(request: FastifyRequest, reply: FastifyReply, provider: InboundProvider, rejection: Rejection): Promise<FastifyReply> {
      refused(request, provider, rejection);
      return reply
        .code(403)
        .type(PROBLEM_CONTENT_TYPE)
        .send({ type: 'webhook-rejected', title: 'Forbidden', status: 403, detail: 'the request could not be verified as coming from the provider configured for this tenant' });
    }

    function refused(request: FastifyRequest, provider: InboundProvider | undefined, rejection: Omit<Rejection, 'ok'>): void {
      relay.gate.refused(provider, rejection, { sourceIp: request.ip, log: request.log, signedUrl: `${publicUrl}${request.url}` });
    }
  };
}

/** The answers and request bodies as the OpenAPI document shows them; the relay, not a schema, checks what arrives. */
const TWIML_ANSWER = {
  description: 'Stored (or a repeated delivery): an empty TwiML answer; replies go out through the REST API',
  content: { 'text/xml': { schema: { type: 'string', examples: [EMPTY_TWIML] } } },
};
const NO_CONTENT = { description: 'Stored, applied or a repeated delivery; no body', type: 'null' };
const signed = (header: string) => `Signed by the provider (${header}) over the exact bytes; read raw and verified before anything in it is used.`;
const TWILIO_SMS: DocumentedRequest = {
  contentType: 'application/x-www-form-urlencoded',
  schema: {
    type: 'object',
    description: `${signed('X-Twilio-Signature')} Twilio's inbound message parameters (https://www.twilio.com/docs/messaging/guides/webhook-request).`,
    properties: { MessageSid: { type: 'string' }, AccountSid: { type: 'string' }, From: { type: 'string' }, To: { type: 'string' }, Body: { type: 'string' } },
    required: ['MessageSid', 'From'],
  },
};
const TWILIO_STATUS: DocumentedRequest = {
  contentType: 'application/x-www-form-urlencoded',
  schema: {
    type: 'object',
    description: `${signed('X-Twilio-Signature')} A delivery status callback; the URL carries \`?m=<message id>\` (docs/providers.md).`,
    properties: { MessageSid: { type: 'string' }, MessageStatus: { type: 'string' }, ErrorCode: { type: 'string' } },
    required: ['MessageSid', 'MessageStatus'],
  },
};
const PODIUM_EVENT: DocumentedRequest = {
  contentType: 'application/json',
  schema: { type: 'object', description: `${signed('podium-timestamp, podium-signature')} A Podium webhook event (metadata.eventType, data).` },
};
const AIRTABLE_PING: DocumentedRequest = {
  contentType: 'application/json',
  schema: { type: 'object', description: `${signed('X-Airtable-Content-MAC')} An Airtable webhook notification ({base, webhook, timestamp}); the changes are fetched afterwards.` },
};

function providerOf(url: string): InboundProvider | undefined {
  const match = /^\/webhooks\/(twilio|podium|airtable)\//.exec(url);
  return match ? (match[1] as InboundProvider) : undefined;
}
