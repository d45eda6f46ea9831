import type { ConversationRepository } from '../../store/repositories/conversations.js';
import type { MessageAuthor } from '../../store/schema.js';
import type { ImportedConversation } from './mongo-export.js';

/**
 * What both importers hand to the repository, and the dedupe keys that make every import
 * idempotent. The keys name the source so that a MongoDB id and an Airtable record id can never
 * meet on the same key:
 *
 *   import:airtable:<record id>                       a row of the tenant's Airtable table
 *   import:jsonl:<conversation _id>:<message _id>     a message of a mongoexport document; each
 *                                                     part URI-encoded, so an id holding `:`
 *                                                     cannot be read as two
 *
 * The conversation's `_id` is part of the jsonl key because only ObjectIds are unique across a
 * collection: exports that number messages 1, 2, 3 inside each conversation are common.
 */

export interface ImportedThreadMessage {
  dedupeKey: string;
  direction: 'inbound' | 'outbound';
  author: MessageAuthor;
  body: string;
  createdAt: Date;
  /** The Airtable row the message came from. */
  airtableRecordId?: string;
}

/** Messages with one contact, ready to store sealed. */
export interface ImportedThread {
  /** E.164. */
  phone: string;
  name: string | null;
  messages: ImportedThreadMessage[];
}

export type StoredImport = Awaited<ReturnType<ConversationRepository['storeImported']>>;

export function airtableDedupeKey(recordId: string): string {
  return `import:airtable:${recordId}`;
}

export function jsonlDedupeKey(conversationId: string, messageId: string): string {
  return `import:jsonl:${encodeURIComponent(conversationId)}:${encodeURIComponent(messageId)}`;
}

/**
 * Who wrote a message the export does not say: the contact for inbound; for outbound, staff.
 * Calling an unattributed answer the AI's would put words in the AI's mouth in the audit trail of
 * the conversation, and the relay treats both the same way once they are history.
 */
export function defaultAuthor(direction: 'inbound' | 'outbound', author?: MessageAuthor): MessageAuthor {
  return author ?? (direction === 'inbound' ? 'contact' : 'staff');
}

/** A parsed mongoexport document as the repository takes it. */
export function threadOfExport(conversation: ImportedConversation): ImportedThread {
  return {
    phone: conversation.phone,
    name: conversation.name ?? null,
    messages: conversation.messages.map((message) => ({
      dedupeKey: jsonlDedupeKey(conversation.externalId, message.externalId),
      direction: message.direction,
      author: defaultAuthor(message.direction, message.author),
      body: message.body,
      createdAt: message.createdAt,
    })),
  };
}

