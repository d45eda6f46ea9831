import { TENANT_SLUG_PATTERN } from '../../domain/ids.js';
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { Relay } from '../../relay/relay.js';
import { callerOf } from '../caller.js';
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
 * number (relay.sendMessage, src/relay/send-message.ts). The message is stored sealed with its
 * send job in one transaction and answered 202; the send itself follows (and is retried) in the
 * queue. `Idempotency-Key` is required: the same key from the same caller returns the first
 * message (200) instead of sending a second one, and the same key with a different message is
 * refused (422), as Stripe does.
 */
export function messageRoutes(options: { relay: Relay }) {
  const { relay } = options;
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
        const sent = await relay.sendMessage(callerOf(request), { ...request.body, idempotencyKey: request.headers['idempotency-key'] });
        if (!sent.duplicate && sent.recipientOptedOut) request.log.info({ messageId: sent.id }, 'recipient has opted out; the message will be suppressed');
        return reply.code(sent.duplicate ? 200 : 202).send({ id: sent.id, conversationId: sent.conversationId, status: sent.status });
      },
    );
  };
}
