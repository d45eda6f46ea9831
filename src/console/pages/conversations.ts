import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { TENANT_SLUG_PATTERN } from '../../domain/ids.js';
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

const LookupForm = Type.Object(
  {
    [CSRF_FORM_FIELD]: Type.String({ maxLength: 256 }),
    tenant: Type.String({ pattern: TENANT_SLUG_PATTERN.source }),
    phone: Type.String({ minLength: 3, maxLength: 32 }),
  },
  { additionalProperties: false },
);
const IdParams = Type.Object({ id: Type.String({ format: 'uuid' }) });

export function conversationPages(relay: Relay) {
  const data = new ConversationData(relay);

  return async function register(app: FastifyInstance): Promise<void> {
    app.get('/console/conversations', { config: { access: { permission: 'conversations:read' } }, schema: PAGE }, async (request, reply) => renderList(request, reply, 200, {}));

    app.post<{ Body: Static<typeof LookupForm> }>(
      '/console/conversations',
      { config: { access: { permission: 'conversations:read', csrfToken: 'form-field' as const } }, schema: { hide: true, body: LookupForm } },
      async (request, reply) => {
        const query = { tenant: request.body.tenant, phone: request.body.phone };
        try {
          return renderList(request, reply, 200, { tenant: query.tenant, rows: await data.lookup(request, query) });
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

    async function renderList(request: FastifyRequest, reply: FastifyReply, status: number, view: { tenant?: string; rows?: ConversationRow[]; error?: string }) {
      const tenants = (await data.tenants(request)).map((tenant) => ({ ...tenant, selected: tenant.slug === view.tenant }));
      return reply.code(status).view('conversations', { ...pageFrame(request, reply, 'Conversations'), tenants, rows: view.rows ?? null, error: view.error });
    }
  };
}
