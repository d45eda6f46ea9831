import type { FastifyRequest } from 'fastify';
import type { Relay } from '../relay/relay.js';
import { callerOf } from '../http/caller.js';

/**
 * Everything the conversation pages read, in one place: when the relay's "a tenant's
 * conversations, latest first, with filters and a cursor" use case lands, the list switches here
 * and the pages stay as they are. Until then a list is the conversations of one contact, found by
 * phone number through the blind index (`relay.listConversations` with `phone`, audited as
 * `conversation.lookup`). Rows carry no sealed content: the number is masked, no body is read.
 */
export interface ConversationRow {
  id: string;
  channel: string;
  contact: string;
  createdAt: string;
  lastMessageAt: string;
}

export class ConversationData {
  constructor(private readonly relay: Relay) {}

  /** The tenants the caller may pick from: one for a client user, every tenant for staff. */
  async tenants(request: FastifyRequest): Promise<Array<{ slug: string; name: string }>> {
    return (await this.relay.listTenants(callerOf(request))).map((tenant) => ({ slug: tenant.slug, name: tenant.name }));
  }

  async lookup(request: FastifyRequest, query: { tenant: string; phone: string }): Promise<ConversationRow[]> {
    const found = await this.relay.listConversations(callerOf(request), { tenant: query.tenant, phone: query.phone, filter: {}, limit: 100 });
    return found.conversations.map((conversation) => ({
      id: conversation.id,
      channel: conversation.channel,
      contact: conversation.contactMasked,
      createdAt: conversation.createdAt.toISOString(),
      lastMessageAt: conversation.lastMessageAt.toISOString(),
    }));
  }

  /**
   * A reply through the same use case as POST /api/v1/messages. The key is the form's own
   * (made when the page was rendered), so a double click or a resubmitted form sends one message.
   */
  async reply(request: FastifyRequest, message: { tenant: string; to: string; body: string; idempotencyKey: string }): Promise<{ duplicate: boolean }> {
    const sent = await this.relay.sendMessage(callerOf(request), message);
    return { duplicate: sent.duplicate };
  }

  /**
   * Opening a conversation is a reveal: the relay opens the sealed bodies and records one
   * `conversation.read` audit entry (actor, tenant, conversation) before anything is returned.
   */
  async open(request: FastifyRequest, id: string) {
    const page = await this.relay.readConversation(callerOf(request), { id, limit: 100 });
    return {
      tenant: page.tenantSlug,
      channel: page.conversation.channel,
      messages: page.messages.map((message) => ({
        id: message.id,
        direction: message.direction,
        author: message.author,
        body: message.body,
        status: message.status,
        createdAt: message.createdAt.toISOString(),
      })),
      olderMessages: page.nextCursor !== null,
    };
  }
}
