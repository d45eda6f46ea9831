import { randomUUID } from 'node:crypto';
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { TENANT_SLUG_PATTERN } from '../../domain/ids.js';
import { forbidden } from '../../identity/errors.js';
import { principalHas } from '../../identity/principal.js';
import type { Relay } from '../../relay/relay.js';
import { RelayError } from '../../relay/errors.js';
import { CSRF_FORM_FIELD } from '../../http/guard.js';
import { ConversationData, type ConversationRow } from '../conversation-data.js';
import { PAGE, pageFrame } from '../signed-in.js';

/**
 * `/console/conversations`: find a contact's conversations in a tenant (masked number, no
 * bodies) and open one (`/console/conversations/{id}`), which is an audited reveal of its
 * messages. The lookup is a POST so the phone number never lands in a URL, a history or a log.
 */

const lookupFields = {
  [CSRF_FORM_FIELD]: Type.String({ maxLength: 256 }),
  tenant: Type.String({ pattern: TENANT_SLUG_PATTERN.source }),
  phone: Type.String({ minLength: 3, maxLength: 32 }),
};
/** The lookup, or a reply to the contact found (same page, so the number the person typed stays in no URL). */
const ConversationsForm = Type.Union([
  Type.Object({ ...lookupFields, action: Type.Optional(Type.Literal('find')) }, { additionalProperties: false }),
  Type.Object(
    {
      ...lookupFields,
      action: Type.Literal('reply'),
      // Twilio's limit for one message body, as POST /api/v1/messages has it.
      body: Type.String({ minLength: 1, maxLength: 1600 }),
      idempotencyKey: Type.String({ format: 'uuid' }),
    },
    { additionalProperties: false },
  ),
]);
const IdParams = Type.Object({ id: Type.String({ format: 'uuid' }) });

export function conversationPages(relay: Relay) {
  const data = new ConversationData(relay);

  return async function register(app: FastifyInstance): Promise<void> {
    app.get('/console/conversations', { config: { access: { permission: 'conversations:read' } }, schema: PAGE }, async (request, reply) => renderList(request, reply, 200, {}));

    app.post<{ Body: Static<typeof ConversationsForm> }>(
      '/console/conversations',
      { config: { access: { permission: 'conversations:read', csrfToken: 'form-field' as const } }, schema: { hide: true, body: ConversationsForm } },
      async (request, reply) => {
        const form = request.body;
        const query = { tenant: form.tenant, phone: form.phone };
        try {
          let notice: string | undefined;
          if (form.action === 'reply') {
            // Sending needs its own permission, checked as the API's route checks it.
            if (!principalHas(request.principal!, 'messages:send')) throw forbidden('this needs the "messages:send" permission');
            const sent = await data.reply(request, { tenant: form.tenant, to: form.phone, body: form.body, idempotencyKey: form.idempotencyKey });
            notice = sent.duplicate ? 'This reply was already sent.' : 'Reply queued for sending.';
          }
          return renderList(request, reply, 200, { tenant: query.tenant, phone: query.phone, rows: await data.lookup(request, query), notice });
        } catch (error) {
          if (!(error instanceof RelayError) || error.code !== 'invalid-phone') throw error;
          return renderList(request, reply, 400, { tenant: query.tenant, error: 'That is not a phone number.' });
        }
      },
    );

    app.get<{ Params: Static<typeof IdParams> }>(
      '/console/conversations/:id',
      { config: { access: { permission: 'conversations:read' } }, schema: { hide: true, params: IdParams } },
      async (request, reply) => {
        const conversation = await data.open(request, request.params.id);
        return reply.view('conversation', { ...pageFrame(request, reply, 'Conversation'), conversation });
      },
    );

    async function renderList(
      request: FastifyRequest,
      reply: FastifyReply,
      status: number,
      view: { tenant?: string; phone?: string; rows?: ConversationRow[]; error?: string; notice?: string | undefined },
    ) {
      const tenants = (await data.tenants(request)).map((tenant) => ({ ...tenant, selected: tenant.slug === view.tenant }));
      // The reply form is offered once a contact was found; its key is new with every rendering.
      const replyTo = view.rows && view.rows.length > 0 && view.tenant && view.phone ? { tenant: view.tenant, phone: view.phone, idempotencyKey: randomUUID() } : null;
      return reply.code(status).view('conversations', { ...pageFrame(request, reply, 'Conversations'), tenants, rows: view.rows ?? null, replyTo, error: view.error, notice: view.notice });
    }
  };
}
