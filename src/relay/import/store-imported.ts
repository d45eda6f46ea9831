import type { MessageAuthor } from '../../domain/conversation.js';
import { optChangeOf } from '../../domain/keywords.js';
import type { ImportedThread, ImportedThreadMessage } from '../../store/repositories/imported-conversations.js';
import type { ImportedConversation } from './mongo-export.js';

export type { ImportedThread, ImportedThreadMessage };

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

export function airtableDedupeKey(recordId: string): string {
  return `import:airtable:${recordId}`;
}

export function jsonlDedupeKey(conversationId: string, messageId: string): string {
  return `import:jsonl:${encodeURIComponent(conversationId)}:${encodeURIComponent(messageId)}`;
}

/**
 * A message of the history as the repository takes it. Who wrote a message the export does not
 * say is the contact for inbound and staff for outbound: calling an unattributed answer the AI's
 * would put words in the AI's mouth in the audit trail of the conversation, and the relay treats
 * both the same way once they are history. An opt-out or opt-in keyword from the contact counts,
 * as it would have live.
 */
export function historyMessage(message: Omit<ImportedThreadMessage, 'author' | 'optChange'> & { author?: MessageAuthor | undefined }): ImportedThreadMessage {
  const { author, ...rest } = message;
  const optChange = message.direction === 'inbound' ? optChangeOf(message.body) : undefined;
  return { ...rest, author: author ?? (message.direction === 'inbound' ? 'contact' : 'staff'), ...(optChange ? { optChange } : {}) };
}

/** A parsed mongoexport document as the repository takes it. */
export function threadOfExport(conversation: ImportedConversation): ImportedThread {
  return {
    phone: conversation.phone,
    name: conversation.name ?? null,
    messages: conversation.messages.map((message) =>
      historyMessage({
        dedupeKey: jsonlDedupeKey(conversation.externalId, message.externalId),
        direction: message.direction,
        author: message.author,
        body: message.body,
        createdAt: message.createdAt,
      }),
    ),
  };
}

