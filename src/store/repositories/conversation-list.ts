import { and, desc, eq, gte, inArray, isNotNull, isNull, lt, or, type SQL } from 'drizzle-orm';
import { maskContactNumber } from '../../domain/contact-mask.js';
import type { ConversationFilter, ConversationListItem, ConversationListPosition } from '../../domain/conversation.js';
import type { SealedFields } from '../../seal/sealed-fields.js';
import type { Db } from '../connection.js';
import { contactsSealed } from '../sealed-tables.js';
import { contacts, conversations } from '../schema.js';

/** A conversation as ConversationSummary shows it: nothing sealed. */
export const conversationSummaryColumns = {
  id: conversations.id,
  tenantId: conversations.tenantId,
  channel: conversations.channel,
  contactId: conversations.contactId,
  createdAt: conversations.createdAt,
  lastMessageAt: conversations.lastMessageAt,
};

/**
 * A tenant's conversations, latest activity first, for a list: no row is opened for the filters
 * (they are plain columns, and a phone number goes through its blind index), and the one sealed
 * value a list shows, the contact's number, is opened here and leaves this function masked only,
 * so the plaintext never reaches the use case above.
 *
 * Keyset paging on (last_message_at, id): stable while new messages arrive, and served by
 * `conversations_tenant_recent_idx`.
 */
export async function listConversations(
  db: Db,
  fields: SealedFields,
  tenantId: string,
  filter: ConversationFilter & { phone?: string },
  page: { limit: number; after?: ConversationListPosition },
): Promise<ConversationListItem[]> {
  const conditions: SQL[] = [eq(conversations.tenantId, tenantId)];
  if (filter.channel) conditions.push(eq(conversations.channel, filter.channel));
  if (filter.since) conditions.push(gte(conversations.lastMessageAt, filter.since));
  if (filter.until) conditions.push(lt(conversations.lastMessageAt, filter.until));
  if (filter.aiPaused !== undefined) conditions.push(eq(contacts.aiPaused, filter.aiPaused));
  if (filter.optedOut !== undefined) conditions.push(filter.optedOut ? isNotNull(contacts.optedOutAt) : isNull(contacts.optedOutAt));
  if (filter.phone !== undefined) conditions.push(inArray(contacts.phoneIndex, fields.lookupIndexes(contactsSealed, 'phone', tenantId, filter.phone)));
  if (page.after) {
    const { lastMessageAt, id } = page.after;
    conditions.push(or(lt(conversations.lastMessageAt, lastMessageAt), and(eq(conversations.lastMessageAt, lastMessageAt), lt(conversations.id, id)))!);
  }
  const rows = await db
    .select({
      ...conversationSummaryColumns,
      aiPaused: contacts.aiPaused,
      optedOutAt: contacts.optedOutAt,
      phone: contacts.phone,
    })
    .from(conversations)
    .innerJoin(contacts, eq(contacts.id, conversations.contactId))
    .where(and(...conditions))
    .orderBy(desc(conversations.lastMessageAt), desc(conversations.id))
    .limit(page.limit);
  return Promise.all(
    rows.map(async ({ phone, optedOutAt, ...row }) => ({
      ...row,
      optedOut: optedOutAt !== null,
      contactMasked: maskContactNumber(await fields.openFresh({ scope: tenantId, table: contactsSealed.name, column: 'phone', rowId: row.contactId }, phone)),
    })),
  );
}
