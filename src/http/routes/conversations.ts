import { TENANT_SLUG_PATTERN } from '../../domain/ids.js';
import { MAX_SENDER_LENGTH } from '../../domain/normalise.js';
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { ConversationSummary } from '../../domain/conversation.js';
import type { Relay } from '../../relay/relay.js';
import { callerOf } from '../caller.js';
import { problemResponse } from '../openapi.js';

const ChannelSchema = Type.Union([Type.Literal('sms'), Type.Literal('podium')]);
const ConversationSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  tenant: Type.String({ description: 'tenant slug' }),
  channel: ChannelSchema,
  contactId: Type.String({ format: 'uuid' }),
  createdAt: Type.String({ format: 'date-time' }),
  lastMessageAt: Type.String({ format: 'date-time' }),
});
const ConversationListItemSchema = Type.Object({
  ...ConversationSchema.properties,
  contactMasked: Type.String({ description: 'the last 2 to 4 digits of the number behind fixed bullets, nothing else of it (docs/http.md)' }),
  aiPaused: Type.Boolean(),
  optedOut: Type.Boolean(),
});
const ContactSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  phone: Type.String({ description: 'opened: E.164, or the sender as the provider gave it' }),
  name: Type.Union([Type.String(), Type.Null()]),
});
const MessageSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  direction: Type.Union([Type.Literal('inbound'), Type.Literal('outbound')]),
  author: Type.String(),
  body: Type.String(),
  status: Type.String(),
  createdAt: Type.String({ format: 'date-time' }),
});
const ListQuery = Type.Object(
  {
    tenant: Type.String({ pattern: TENANT_SLUG_PATTERN.source, description: 'tenant slug' }),
    phone: Type.Optional(Type.String({ minLength: 1, maxLength: MAX_SENDER_LENGTH, description: 'only this contact: its phone number (E.164 preferred), or the sender as received when it is no phone number (a short code, an alphanumeric id), found through its blind index' })),
    channel: Type.Optional(ChannelSchema),
    since: Type.Optional(Type.String({ format: 'date-time', description: 'last activity at or after this instant' })),
    until: Type.Optional(Type.String({ format: 'date-time', description: 'last activity before this instant' })),
    aiPaused: Type.Optional(Type.Boolean()),
    optedOut: Type.Optional(Type.Boolean()),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 50 })),
    cursor: Type.Optional(Type.String({ minLength: 1, maxLength: 300, description: 'nextCursor of the previous page, with the same tenant and filters' })),
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
const problems = { 400: problemResponse(['validation-failed']), 404: problemResponse(['not-found']) };
const tags = ['conversations'];

/**
 * Finding and reading conversations: lists (src/relay/list-conversations.ts) show nothing sealed
 * but a masked number; reading a conversation (src/relay/read-conversations.ts) opens its bodies
 * and its contact, one audit event per read. Another tenant's conversation reads as absent.
 */
export function conversationRoutes(options: { relay: Relay }) {
  const { relay } = options;

  return async (app: FastifyInstance): Promise<void> => {
    app.get<{ Querystring: Static<typeof ListQuery> }>(
      '/api/v1/conversations',
      {
        config: { access: { permission: 'conversations:read' } },
        schema: {
          tags,
          summary: "A tenant's conversations, latest activity first, filtered and paged; no sealed content (numbers masked); each page is audited",
          querystring: ListQuery,
          response: { 200: Type.Object({ conversations: Type.Array(ConversationListItemSchema), nextCursor: Type.Union([Type.String(), Type.Null()]) }), ...problems },
        },
      },
      async (request) => {
        const { tenant, phone, channel, since, until, aiPaused, optedOut, limit, cursor } = request.query;
        const page = await relay.listConversations(callerOf(request), {
          tenant,
          phone,
          filter: {
            ...(channel ? { channel } : {}),
            ...(since ? { since: new Date(since) } : {}),
            ...(until ? { until: new Date(until) } : {}),
            ...(aiPaused !== undefined ? { aiPaused } : {}),
            ...(optedOut !== undefined ? { optedOut } : {}),
          },
          limit: limit ?? 50,
          cursor,
        });
        return {
          conversations: page.conversations.map((item) => ({ ...conversationView(item, page.tenantSlug), contactMasked: item.contactMasked, aiPaused: item.aiPaused, optedOut: item.optedOut })),
          nextCursor: page.nextCursor,
        };
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
            200: Type.Object({ conversation: ConversationSchema, contact: ContactSchema, messages: Type.Array(MessageSchema), nextCursor: Type.Union([Type.String(), Type.Null()]) }),
            ...problems,
          },
        },
      },
      async (request) => {
        const page = await relay.readConversation(callerOf(request), { id: request.params.id, limit: request.query.limit ?? 50, before: request.query.before });
        return {
          conversation: conversationView(page.conversation, page.tenantSlug),
          contact: page.contact,
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
