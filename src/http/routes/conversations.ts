import { TENANT_SLUG_PATTERN } from '../../domain/ids.js';
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { appendAuditEvent } from '../../store/audit-trail.js';
import type { Identity } from '../../identity/identity.js';
import { isUuid } from '../../domain/ids.js';
import { auditActorOf, confinedTenant, mayAccessTenant, type Principal } from '../../identity/principal.js';
import type { Relay } from '../../relay/relay.js';
import type { TenantContext } from '../../relay/tenant-directory.js';
import { normaliseE164 } from '../../domain/normalise.js';
import type { ConversationSummary } from '../../store/repositories/conversations.js';
import { HttpProblem } from '../problem.js';
import { isStorableInstant } from '../schemas/formats.js';
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
    phone: Type.String({ minLength: 3, maxLength: 32, description: 'the contact phone number, E.164 preferred' }),
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
 * Reading conversations. A lookup by phone goes through the contact's blind index (no row is
 * opened to find it); reading messages opens sealed bodies, so every read is an audit event
 * naming who read which conversation. Another tenant's conversation reads as absent.
 */
export function conversationRoutes(options: { relay: Relay; identity: Identity }) {
  const { relay, identity } = options;

  return async (app: FastifyInstance): Promise<void> => {
    app.get<{ Querystring: Static<typeof LookupQuery> }>(
      '/api/v1/conversations',
      {
        config: { access: { permission: 'conversations:read' } },
        schema: { tags, summary: "A contact's conversations, found by phone number", querystring: LookupQuery, response: { 200: Type.Object({ conversations: Type.Array(ConversationSchema) }), ...problems } },
      },
      async (request) => {
        const principal = request.principal!;
        const tenant = await tenantFor(request, principal, request.query.tenant);
        let phone: string;
        try {
          phone = normaliseE164(request.query.phone);
        } catch {
          throw new HttpProblem(400, 'validation-failed', 'Invalid request', 'querystring phone: not a valid phone number');
        }
        const found = await relay.conversations.findByPhone(tenant.id, phone);
        await appendAuditEvent(identity.parts.db, {
          actor: auditActorOf(principal),
          action: 'conversation.lookup',
          tenantId: tenant.id,
          sourceIp: request.ip,
          outcome: 'success',
          details: { found: found.length },
        });
        return { conversations: found.map((conversation) => conversationView(conversation, tenant.slug)) };
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
        const principal = request.principal!;
        const conversation = await relay.conversations.findConversation(request.params.id);
        if (!conversation || !mayAccessTenant(principal, conversation.tenantId)) {
          if (conversation) await auditOtherTenant(request, principal, conversation.tenantId, { type: 'conversation', id: conversation.id });
          throw new HttpProblem(404, 'not-found', 'Not Found', 'no such conversation');
        }
        const limit = request.query.limit ?? 50;
        const before = request.query.before === undefined ? undefined : parseCursor(request.query.before);
        const page = await relay.conversations.messagesPage({ id: conversation.id, tenantId: conversation.tenantId }, { limit, ...(before ? { before } : {}) });
        // Audited before the answer leaves: a read that cannot be recorded is not served.
        await appendAuditEvent(identity.parts.db, {
          actor: auditActorOf(principal),
          action: 'conversation.read',
          target: { type: 'conversation', id: conversation.id },
          tenantId: conversation.tenantId,
          sourceIp: request.ip,
          outcome: 'success',
          details: { messages: page.length },
        });
        const oldest = page[0];
        const tenant = await relay.tenants.byId(conversation.tenantId);
        return {
          conversation: conversationView(conversation, tenant?.slug ?? ''),
          messages: page.map((message) => ({ ...message, createdAt: message.createdAt.toISOString() })),
          nextCursor: page.length === limit && oldest ? formatCursor(oldest.createdAt, oldest.id) : null,
        };
      },
    );
  };

  async function tenantFor(request: FastifyRequest, principal: Principal, slug: string): Promise<TenantContext> {
    const tenant = await relay.tenants.bySlug(slug);
    if (!tenant || !mayAccessTenant(principal, tenant.id)) {
      if (tenant) await auditOtherTenant(request, principal, tenant.id, { type: 'tenant', id: tenant.id });
      throw new HttpProblem(404, 'not-found', 'Not Found', 'no such tenant');
    }
    return tenant;
  }

  async function auditOtherTenant(request: FastifyRequest, principal: Principal, tenantId: string, target: { type: string; id: string }): Promise<void> {
    const confined = confinedTenant(principal);
    await appendAuditEvent(identity.parts.db, {
      actor: auditActorOf(principal),
      action: 'access.denied',
      target,
      tenantId: confined === 'none' ? null : confined,
      sourceIp: request.ip,
      outcome: 'denied',
      details: { reason: 'other-tenant', deniedTenant: tenantId },
    });
  }
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

function formatCursor(createdAt: Date, id: string): string {
  return Buffer.from(`${createdAt.toISOString()}|${id}`).toString('base64url');
}

/**
 * Only the exact text formatCursor writes is a cursor: base64url of `<ISO instant>|<uuid>`. Anything
 * looser reached the query as a Date PostgreSQL cannot hold (year 275760, an invalid Date) or an
 * id that is no uuid, each a 500.
 */
function parseCursor(cursor: string): { createdAt: Date; id: string } {
  const decoded = /^[A-Za-z0-9_-]*$/.test(cursor) ? Buffer.from(cursor, 'base64url').toString('utf8') : '';
  const [at = '', id = '', ...rest] = decoded.split('|');
  const createdAt = new Date(at);
  const exact = rest.length === 0 && isStorableInstant(createdAt) && createdAt.toISOString() === at && isUuid(id);
  if (!exact) throw new HttpProblem(400, 'validation-failed', 'Invalid request', 'querystring before: not a cursor this API gave out');
  return { createdAt, id };
}
