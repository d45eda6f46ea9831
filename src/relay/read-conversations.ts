import type { ConversationSummary, OpenedMessage } from '../domain/conversation.js';
import { isUuid } from '../domain/ids.js';
import { isStorableInstant } from '../domain/instant.js';
import { inboundSenderOf } from '../domain/normalise.js';
import type { Db } from '../store/connection.js';
import type { ConversationRepository } from '../store/repositories/conversations.js';
import { auditDenied, auditDone, tenantFor, type Caller } from './caller.js';
import { RelayError } from './errors.js';
import type { TenantDirectory } from './tenant-directory.js';

/**
 * Reading conversations. A lookup by phone goes through the contact's blind index (no row is
 * opened to find it); reading messages opens sealed bodies, so every read is an audit event
 * naming who read which conversation, written before anything is returned: a read that cannot
 * be recorded is not served. Another tenant's conversation reads as absent.
 */

export interface ConversationReadContext {
  db: Db;
  tenants: TenantDirectory;
  conversations: ConversationRepository;
}

/**
 * The conversations of the contact with this phone number, or with this sender as it was received
 * when it is no valid number (a short code `12345`, an alphanumeric id `ACME`, a 555 number).
 */
export async function findConversations(
  context: ConversationReadContext,
  caller: Caller,
  request: { tenant: string; phone: string },
): Promise<{ tenantSlug: string; conversations: ConversationSummary[] }> {
  const tenant = await tenantFor(context.db, caller, await context.tenants.bySlug(request.tenant), otherTenant);
  const sender = inboundSenderOf(request.phone);
  if (sender === undefined) throw new RelayError('invalid-phone', 'not a phone number or sender id', 'phone');
  const found = await context.conversations.findByPhone(tenant.id, sender.address);
  await auditDone(context.db, caller, { action: 'conversation.lookup', tenantId: tenant.id, details: { found: found.length } });
  return { tenantSlug: tenant.slug, conversations: found };
}

/**
 * One page of a conversation's messages, opened, oldest first; the newest page first, and
 * `nextCursor` (when the page is full) names the page before it.
 */
export async function readConversation(
  context: ConversationReadContext,
  caller: Caller,
  request: { id: string; limit: number; before?: string | undefined },
): Promise<{ conversation: ConversationSummary; tenantSlug: string; messages: OpenedMessage[]; nextCursor: string | null }> {
  const conversation = await context.conversations.findConversation(request.id);
  if (!conversation || !caller.mayAccessTenant(conversation.tenantId)) {
    if (conversation) {
      await auditDenied(context.db, caller, { target: { type: 'conversation', id: conversation.id }, details: { reason: 'other-tenant', deniedTenant: conversation.tenantId } });
    }
    throw new RelayError('conversation-not-found', 'no such conversation');
  }
  const before = request.before === undefined ? undefined : parseCursor(request.before);
  const page = await context.conversations.messagesPage({ id: conversation.id, tenantId: conversation.tenantId }, { limit: request.limit, ...(before ? { before } : {}) });
  await auditDone(context.db, caller, { action: 'conversation.read', target: { type: 'conversation', id: conversation.id }, tenantId: conversation.tenantId, details: { messages: page.length } });
  const oldest = page[0];
  const tenant = await context.tenants.byId(conversation.tenantId);
  return {
    conversation,
    tenantSlug: tenant?.slug ?? '',
    messages: page,
    nextCursor: page.length === request.limit && oldest ? formatCursor(oldest.createdAt, oldest.id) : null,
  };
}

/** A confined caller's probe of another tenant, as `access.denied` records it. */
function otherTenant(tenant: { id: string }) {
  return { target: { type: 'tenant', id: tenant.id }, details: { reason: 'other-tenant', deniedTenant: tenant.id } };
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
