import { TENANT_SLUG_PATTERN } from '../../domain/ids.js';
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { appendAuditEvent } from '../../store/audit-trail.js';
import type { Identity } from '../../identity/identity.js';
import { auditActorOf, mayAccessTenant } from '../../identity/principal.js';
import { airtableSyncJob, sendJob } from '../../relay/jobs.js';
import type { Relay } from '../../relay/relay.js';
import { normaliseE164 } from '../../domain/normalise.js';
import { HttpProblem } from '../problem.js';
import { ProblemSchema } from '../schemas/problem.js';

/** Twilio's limit for one message body (https://www.twilio.com/docs/messaging/api/message-resource). */
const MAX_BODY = 1600;

const SendBody = Type.Object(
  {
    tenant: Type.String({ pattern: TENANT_SLUG_PATTERN.source, description: 'tenant slug' }),
    to: Type.String({ minLength: 3, maxLength: 32, description: 'the recipient, E.164' }),
    body: Type.String({ minLength: 1, maxLength: MAX_BODY }),
  },
  { additionalProperties: false },
);
const SendHeaders = Type.Object({
  'idempotency-key': Type.String({ minLength: 8, maxLength: 100, pattern: '^[A-Za-z0-9_.:-]+$', description: 'a unique key per message; a retry with the same key sends nothing new' }),
});
const Accepted = Type.Object({
  id: Type.String({ format: 'uuid' }),
  conversationId: Type.String({ format: 'uuid' }),
  status: Type.String(),
});

/**
 * `POST /api/v1/messages`: a person or a machine sends an SMS through the tenant's Twilio
 * number. The message is stored sealed with its send job in one transaction and answered 202;
 * the send itself follows (and is retried) in the queue. `Idempotency-Key` is required: the same
 * key from the same caller returns the first message instead of sending a second one, and the
 * same key with a different message is refused (422), as Stripe does.
 */
export function messageRoutes(options: { relay: Relay; identity: Identity }) {
  const { relay, identity } = options;
  return async (app: FastifyInstance): Promise<void> => {
    app.post<{ Body: Static<typeof SendBody>; Headers: Static<typeof SendHeaders> }>(
      '/api/v1/messages',
      {
        config: { access: { permission: 'messages:send' } },
        schema: {
          tags: ['messages'],
          summary: 'Send an SMS to a contact',
          body: SendBody,
          headers: SendHeaders,
          response: { 200: Accepted, 202: Accepted, 400: ProblemSchema, 401: ProblemSchema, 403: ProblemSchema, 404: ProblemSchema, 409: ProblemSchema, 422: ProblemSchema },
        },
      },
      async (request, reply) => {
        const principal = request.principal!;
        const tenant = await relay.tenants.bySlug(request.body.tenant);
        if (!tenant || !mayAccessTenant(principal, tenant.id)) throw new HttpProblem(404, 'not-found', 'Not Found', 'no such tenant');
        if (!tenant.settings.twilio) throw new HttpProblem(409, 'provider-not-configured', 'Provider not configured', 'this tenant has no Twilio settings to send with');
        let to: string;
        try {
          to = normaliseE164(request.body.to);
        } catch {
          throw new HttpProblem(400, 'validation-failed', 'Invalid request', 'body to: not a valid phone number');
        }
        const callerKey = principal.kind === 'user' ? `u:${principal.userId}` : `k:${principal.apiKeyId}`;
        const dedupeKey = `api:${callerKey}:${request.headers['idempotency-key']}`;
        // Everything the request says is checked above; from here one transaction writes the
        // contact, conversation, message and jobs, or (a key already used) nothing at all.
        const stored = await relay.conversations.storeOutboundToPhone(
          { tenantId: tenant.id, phone: to, channel: 'sms', author: principal.kind === 'user' ? 'staff' : 'api', body: request.body.body, dedupeKey },
          (messageId) => [sendJob(tenant.id, messageId), ...(tenant.settings.airtable ? [airtableSyncJob(tenant.id, messageId)] : [])],
        );
        const message = await relay.conversations.messageForJob(stored.messageId);
        if (stored.duplicate) {
          // The same key must mean the same message: the recipient and text the first call stored.
          const first = await relay.conversations.openContact({ id: message!.contactId, tenantId: tenant.id });
          const sameMessage = first.phone === to && (await relay.conversations.openBody(message!)) === request.body.body;
          if (!sameMessage) throw new HttpProblem(422, 'idempotency-key-reused', 'Idempotency key reused', 'this Idempotency-Key was used for a different message');
          return reply.code(200).send({ id: stored.messageId, conversationId: message!.conversationId, status: message!.status });
        }
        const { conversationId } = stored;
        if (message!.contactOptedOut) {
          request.log.info({ messageId: stored.messageId }, 'recipient has opted out; the message will be suppressed');
        }
        relay.announce();
        await appendAuditEvent(identity.parts.db, {
          actor: auditActorOf(principal),
          action: 'message.send',
          target: { type: 'message', id: stored.messageId },
          tenantId: tenant.id,
          sourceIp: request.ip,
          outcome: 'success',
          details: { conversationId },
        });
        return reply.code(202).send({ id: stored.messageId, conversationId, status: message!.status });
      },
    );
  };
}
