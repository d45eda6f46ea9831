import { timingSafeEqual } from 'node:crypto';
import type { ConversationListPosition } from '../domain/conversation.js';
import { isUuid } from '../domain/ids.js';
import { isStorableInstant } from '../domain/instant.js';
import type { SealedFields } from '../seal/sealed-fields.js';

/**
 * The opaque cursor of a conversation list: the position (last activity and id of the last item
 * shown) and a MAC over the position, the tenant and the filters of the list it was made for.
 * A cursor edited by hand, taken to another tenant or to a list with other filters fails the MAC
 * and is refused; without the MAC a forged position would still be confined to the caller's
 * tenant, but the client would page through a list it never asked for without hearing so.
 *
 * The MAC is a keyed HMAC-SHA256 under a key derived from the tenant's data key for this purpose
 * alone (`conversations.list_cursor`, the blind-index derivation of src/seal/derive.ts), so it
 * needs no key of its own, verifies on every instance, and a cursor made before a key rotation
 * still verifies while the old version is active.
 */
export interface ListCursorScope {
  tenantId: string;
  /** The filters of the list, in a fixed order; a cursor is valid for exactly these. */
  filterKey: string;
}

export function formatListCursor(fields: SealedFields, scope: ListCursorScope, position: ConversationListPosition): string {
  const text = positionText(position);
  const mac = fields.sealer.blindIndex(macContext(scope), macInput(scope, text), MAC_OPTIONS);
  return `${Buffer.from(text).toString('base64url')}.${mac.toString('base64url')}`;
}

/** The position a cursor names, or undefined for anything this API did not give out for this tenant and filters. */
export function parseListCursor(fields: SealedFields, scope: ListCursorScope, cursor: string): ConversationListPosition | undefined {
  const match = /^([A-Za-z0-9_-]{1,200})\.([A-Za-z0-9_-]{1,64})$/.exec(cursor);
  if (!match) return undefined;
  const text = Buffer.from(match[1]!, 'base64url').toString('utf8');
  const mac = Buffer.from(match[2]!, 'base64url');
  const expected = fields.sealer.blindIndexAllVersions(macContext(scope), macInput(scope, text), MAC_OPTIONS);
  // Every version is compared, in constant time each, so the answer's timing says nothing of which one matched.
  const valid = expected.map((candidate) => candidate.length === mac.length && timingSafeEqual(candidate, mac)).includes(true);
  if (!valid) return undefined;
  const [at = '', id = '', ...rest] = text.split('|');
  const lastMessageAt = new Date(at);
  if (rest.length > 0 || !isStorableInstant(lastMessageAt) || lastMessageAt.toISOString() !== at || !isUuid(id)) return undefined;
  return { lastMessageAt, id };
}

const MAC_OPTIONS = { normaliser: 'exact', lengthBytes: 16 } as const;

function macContext(scope: ListCursorScope) {
  return { tenantId: scope.tenantId, table: 'conversations', column: 'list_cursor' };
}

function macInput(scope: ListCursorScope, positionText: string): string {
  return `v1|${scope.tenantId}|${scope.filterKey}|${positionText}`;
}

function positionText(position: ConversationListPosition): string {
  return `${position.lastMessageAt.toISOString()}|${position.id}`;
}
