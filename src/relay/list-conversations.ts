import type { ConversationFilter, ConversationListItem } from '../domain/conversation.js';
import { inboundSenderOf } from '../domain/normalise.js';
import type { SealedFields } from '../seal/sealed-fields.js';
import { auditDone, tenantFor, type Caller } from './caller.js';
import { RelayError } from './errors.js';
import { formatListCursor, parseListCursor, type ListCursorScope } from './list-cursor.js';
import type { ConversationReadContext } from './read-conversations.js';

/**
 * A tenant's conversations, latest activity first, one page at a time: how an operator finds a
 * conversation without knowing the number, or with it (`phone`, through the contact's blind
 * index). A list shows no sealed content: ids, channel, times, the contact's flags and a masked
 * number (src/domain/contact-mask.ts). It is still a view of the tenant's contacts, so each page
 * is audited (`conversation.list`, or `conversation.lookup` for a search by number) before it is
 * returned. A confined caller naming another tenant is refused as if the tenant did not exist,
 * and the probe is audited.
 */

export interface ListConversationsRequest {
  tenant: string;
  phone?: string | undefined;
  filter: ConversationFilter;
  limit: number;
  /** `nextCursor` of the page before, for this tenant and these filters. */
  cursor?: string | undefined;
}

export interface ConversationPage {
  tenantSlug: string;
  conversations: ConversationListItem[];
  /** Null on the last page. */
  nextCursor: string | null;
}

export async function listConversations(
  context: ConversationReadContext & { fields: SealedFields },
  caller: Caller,
  request: ListConversationsRequest,
): Promise<ConversationPage> {
  const tenant = await tenantFor(context.db, caller, await context.tenants.bySlug(request.tenant), (probed) => ({
    target: { type: 'tenant', id: probed.id },
    details: { reason: 'other-tenant', deniedTenant: probed.id },
  }));
  // A phone number, or the sender as received when it is no number (a short code, an alphanumeric id).
  const phone = request.phone === undefined ? undefined : inboundSenderOf(request.phone)?.address;
  if (request.phone !== undefined && phone === undefined) throw new RelayError('invalid-phone', 'not a phone number or sender id', 'phone');
  const { since, until } = request.filter;
  if (since && until && since.getTime() >= until.getTime()) throw new RelayError('invalid-range', '`since` must be before `until`', 'since');
  const scope: ListCursorScope = { tenantId: tenant.id, filterKey: filterKey(request.filter, phone) };
  const after = request.cursor === undefined ? undefined : parseListCursor(context.fields, scope, request.cursor);
  if (request.cursor !== undefined && after === undefined) throw new RelayError('invalid-cursor', 'not a cursor this API gave out for this tenant and these filters', 'cursor');
  // One row more than the page: whether there is a next page is known without a second query.
  const rows = await context.conversations.list(tenant.id, { ...request.filter, ...(phone ? { phone } : {}) }, { limit: request.limit + 1, ...(after ? { after } : {}) });
  const page = rows.slice(0, request.limit);
  const last = page.at(-1);
  await auditDone(context.db, caller, {
    action: phone ? 'conversation.lookup' : 'conversation.list',
    tenantId: tenant.id,
    details: { found: page.length, ...(after ? { page: 'next' } : {}) },
  });
  return {
    tenantSlug: tenant.slug,
    conversations: page,
    nextCursor: rows.length > request.limit && last ? formatListCursor(context.fields, scope, { lastMessageAt: last.lastMessageAt, id: last.id }) : null,
  };
}

/** The filters in a fixed order: the list a cursor belongs to. */
function filterKey(filter: ConversationFilter, phone: string | undefined): string {
  return JSON.stringify([filter.channel ?? null, filter.since?.toISOString() ?? null, filter.until?.toISOString() ?? null, filter.aiPaused ?? null, filter.optedOut ?? null, phone ?? null]);
}
