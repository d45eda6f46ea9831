import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import * as airtable from '../../relay/inbound/airtable.js';
import type { Delivery, InboundProvider, Rejection } from '../../relay/inbound/gate.js';
import * as podium from '../../relay/inbound/podium.js';
import * as twilio from '../../relay/inbound/twilio.js';
import type { Relay } from '../../relay/relay.js';
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

    const route = () => ({ config: { access }, bodyLimit: WEBHOOK_BODY_LIMIT_BYTES });

    app.post<{ Params: { tenant: string } }>('/webhooks/twilio/:tenant/sms', route(), async (request, reply) => {
      const verified = await twilio.verify(relay.gate, deliveryOf(request));
      const accepted = verified.ok ? await twilio.accept(relay, verified, 'sms') : verified;
      if (!accepted.ok) return reject(request, reply, 'twilio', accepted);
      return reply.type('text/xml').send(EMPTY_TWIML);
    });

    app.post<{ Params: { tenant: string } }>('/webhooks/twilio/:tenant/status', route(), async (request, reply) => {
      const verified = await twilio.verify(relay.gate, deliveryOf(request));
      const accepted = verified.ok ? await twilio.accept(relay, verified, 'status') : verified;
      if (!accepted.ok) return reject(request, reply, 'twilio', accepted);
      return reply.code(204).send();
    });

    app.post<{ Params: { tenant: string } }>('/webhooks/podium/:tenant', route(), async (request, reply) => {
      const verified = await podium.verify(relay.gate, deliveryOf(request));
      const accepted = verified.ok ? await podium.accept(relay, verified) : verified;
      if (!accepted.ok) return reject(request, reply, 'podium', accepted);
      return reply.code(204).send();
    });

    app.post<{ Params: { tenant: string } }>('/webhooks/airtable/:tenant', route(), async (request, reply) => {
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

function providerOf(url: string): InboundProvider | undefined {
  const match = /^\/webhooks\/(twilio|podium|airtable)\//.exec(url);
  return match ? (match[1] as InboundProvider) : undefined;
}
