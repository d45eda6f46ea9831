import { TENANT_SLUG_PATTERN } from '../../domain/ids.js';
import { MAX_SENDER_LENGTH } from '../../domain/normalise.js';
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { ConversationSummary } from '../../domain/conversation.js';
import type { Relay } from '../../relay/relay.js';
import { callerOf } from '../caller.js';
import { ProblemSchema } from '../schemas/problem.js';

const ConversationSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  tenant: Type.String(),
  channel: Type.Union([Type.Literal('sms'), Type.Literal('podium')]),
  contactId: Type.String({ format: 'uuid' }),
  createdAt: Type.String({ format: 'date-time' }),
  lastMessageAt: Type.String({ format: 'date-time' }),
});
const MessageSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  direction: Type.Union([Type.Literal('inbound'), Type.Literal('outbound')]),
  author: Type.String(),
  body: Type.String(),
  status: Type.String(),
  createdAt: Type.String({ format: 'date-time' }),
});
const LookupQuery = Type.Object(
  {
    tenant: Type.String({ pattern: TENANT_SLUG_PATTERN.source, description: 'tenant slug' }),
    phone: Type.String({ minLength: 1, maxLength: MAX_SENDER_LENGTH, description: 'the contact phone number (E.164 preferred), or the sender as received when it is no phone number (a short code, an alphanumeric id)' }),
  },
  { additionalProperties: false },
);
const MessagesParams = Type.Object({ id: Type.String({ format: 'uuid' }) });
const MessagesQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50 })),
    before: Type.Optional(Type.String({ maxLength: 200, description: 'nextCursor of the previous page' })),
  },
  { additionalProperties: false },
);
const problems = { 400: ProblemSchema, 401: ProblemSchema, 403: ProblemSchema, 404: ProblemSchema };
const tags = ['conversations'];

/**
 * Reading conversations (src/relay/read-conversations.ts): a lookup by phone goes through the
 * contact's blind index; reading messages opens sealed bodies, so every read is an audit event
 * naming who read which conversation. Another tenant's conversation reads as absent.
 */
export function conversationRoutes(options: { relay: Relay }) {
  const { relay } = options;

  return async (app: FastifyInstance): Promise<void> => {
    app.get<{ Querystring: Static<typeof LookupQuery> }>(
      '/api/v1/conversations',
      {
        config: { access: { permission: 'conversations:read' } },
        schema: { tags, summary: "A contact's conversations, found by phone number", querystring: LookupQuery, response: { 200: Type.Object({ conversations: Type.Array(ConversationSchema) }), ...problems } },
      },
      async (request) => {
        const found = await relay.findConversations(callerOf(request), request.query);
        return { conversations: found.conversations.map((conversation) => conversationView(conversation, found.tenantSlug)) };
      },
    );

    app.get<{ Params: Static<typeof MessagesParams>; Querystring: Static<typeof MessagesQuery> }>(
      '/api/v1/conversations/:id/messages',
      {
        config: { access: { permission: 'conversations:read' } },
        schema: {
          tags,
          summary: "A conversation's messages, opened, newest page first (each page oldest first); every read is audited",
          params: MessagesParams,
          querystring: MessagesQuery,
          response: {
            200: Type.Object({ conversation: ConversationSchema, messages: Type.Array(MessageSchema), nextCursor: Type.Union([Type.String(), Type.Null()]) }),
            ...problems,
          },
        },
      },
      async (request) => {
        const page = await relay.readConversation(callerOf(request), { id: request.params.id, limit: request.query.limit ?? 50, before: request.query.before });
        return {
          conversation: conversationView(page.conversation, page.tenantSlug),
          messages: page.messages.map((message) => ({ ...message, createdAt: message.createdAt.toISOString() })),
          nextCursor: page.nextCursor,
        };
      },
    );
  };
}

function conversationView(conversation: ConversationSummary, slug: string) {
  return {
    id: conversation.id,
    tenant: slug,
    channel: conversation.channel,
    contactId: conversation.contactId,
    createdAt: conversation.createdAt.toISOString(),
    lastMessageAt: conversation.lastMessageAt.toISOString(),
  };
}
