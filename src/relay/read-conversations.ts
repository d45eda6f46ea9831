import type { ConversationSummary, OpenedContact, OpenedMessage } from '../domain/conversation.js';
import { isUuid } from '../domain/ids.js';
import { isStorableInstant } from '../domain/instant.js';
import type { Db } from '../store/connection.js';
import type { ConversationRepository } from '../store/repositories/conversations.js';
import { auditDenied, auditDone, type Caller } from './caller.js';
import { RelayError } from './errors.js';
import type { TenantDirectory } from './tenant-directory.js';

/**
 * Reading a conversation: its messages' sealed bodies and its contact's sealed number and name
 * are opened, so every read is one audit event naming who read which conversation of which
 * tenant, written before anything is returned: a read that cannot be recorded is not served.
 * Another tenant's conversation reads as absent. Lists (list-conversations.ts) open nothing they show.
 */

export interface ConversationReadContext {
  db: Db;
  tenants: TenantDirectory;
  conversations: ConversationRepository;
}

/**
 * One page of a conversation's messages, opened, oldest first; the newest page first, and
 * `nextCursor` (when the page is full) names the page before it.
 */
export async function readConversation(
  context: ConversationReadContext,
  caller: Caller,
  request: { id: string; limit: number; before?: string | undefined },
): Promise<{ conversation: ConversationSummary; tenantSlug: string; contact: OpenedContact; messages: OpenedMessage[]; nextCursor: string | null }> {
  const conversation = await context.conversations.findConversation(request.id);
  if (!conversation || !caller.mayAccessTenant(conversation.tenantId)) {
    if (conversation) {
      await auditDenied(context.db, caller, { target: { type: 'conversation', id: conversation.id }, details: { reason: 'other-tenant', deniedTenant: conversation.tenantId } });
    }
    throw new RelayError('conversation-not-found', 'no such conversation');
  }
  const before = request.before === undefined ? undefined : parseCursor(request.before);
  const page = await context.conversations.messagesPage({ id: conversation.id, tenantId: conversation.tenantId }, { limit: request.limit, ...(before ? { before } : {}) });
  const contact = await context.conversations.openContact({ id: conversation.contactId, tenantId: conversation.tenantId });
  // The one entry covers everything this read opened: the bodies and the contact alike.
  await auditDone(context.db, caller, { action: 'conversation.read', target: { type: 'conversation', id: conversation.id }, tenantId: conversation.tenantId, details: { messages: page.length, contact: true } });
  const oldest = page[0];
  const tenant = await context.tenants.byId(conversation.tenantId);
  return {
    conversation,
    tenantSlug: tenant?.slug ?? '',
    contact: { id: conversation.contactId, ...contact },
    messages: page,
    nextCursor: page.length === request.limit && oldest ? formatCursor(oldest.createdAt, oldest.id) : null,
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
  if (!exact) throw new RelayError('invalid-cursor', 'not a cursor this API gave out', 'before');
  return { createdAt, id };
}
