import { randomUUID } from 'node:crypto';
import { and, eq, inArray, lt, sql } from 'drizzle-orm';
import type { MessageAuthor } from '../../domain/conversation.js';
import type { OptChange } from '../../domain/keywords.js';
import { INBOUND_STATUS, statusRank } from '../../domain/message-status.js';
import type { SealedFields } from '../../seal/sealed-fields.js';
import type { Db } from '../connection.js';
import { messagesSealed } from '../sealed-tables.js';
import { contacts, conversations, messages } from '../schema.js';
import { contactFor, conversationFor } from './threads.js';

/** A message of an imported conversation, in plain text: sealed before it is written. */
export interface ImportedThreadMessage {
  dedupeKey: string;
  direction: 'inbound' | 'outbound';
  author: MessageAuthor;
  body: string;
  createdAt: Date;
  /** The Airtable row the message came from. */
  airtableRecordId?: string;
  /** The contact opted out or back in with this message (a carrier keyword). */
  optChange?: OptChange;
}

/** Messages with one contact, ready to store sealed. */
export interface ImportedThread {
  /** E.164. */
  phone: string;
  name: string | null;
  messages: ImportedThreadMessage[];
}

export interface StoredImport {
  contactId: string;
  conversationId: string;
  conversationCreated: boolean;
  /** In the order given. */
  messages: Array<{ dedupeKey: string; messageId: string; inserted: boolean }>;
}

/**
 * Stores a conversation brought in by `ciphergate import` (src/relay/import/): the contact
 * (found through the blind index, created when new), its SMS conversation and every message,
 * sealed, in one transaction. Each message's dedupe key (`import:…`) makes a re-run land on the
 * row already there; every message comes back with its id, new or not. Inbound messages are
 * `received`, outbound `delivered`, with `createdAt` from the export.
 *
 * No job is enqueued, and the messages are not due for the Airtable sync: history must never
 * trigger an AI reply, a send or an Airtable write. `airtableRecordId` links a message imported
 * from an Airtable row to that row.
 * Opt-outs and opt-ins in the history (`optChange`) are honoured, erring towards silence: when
 * the newest one imported is an opt-out, the contact is opted out (unless already); when it is an
 * opt-in, it lifts only an opt-out recorded before it.
 */
export async function storeImportedThread(
  db: Db,
  fields: SealedFields,
  tenantId: string,
  thread: ImportedThread,
): Promise<StoredImport> {
  const times = thread.messages.map((message) => message.createdAt.getTime());
  const earliest = times.length > 0 ? new Date(Math.min(...times)) : new Date();
  return db.transaction(async (tx) => {
    const contactId = await contactFor(tx, fields, tenantId, thread.phone, thread.name, earliest);
    const [existingConversation] = await tx
      .select({ id: conversations.id })
      .from(conversations)
      .where(and(eq(conversations.tenantId, tenantId), eq(conversations.contactId, contactId), eq(conversations.channel, 'sms')))
      .limit(1);
    const conversationId = existingConversation?.id ?? (await conversationFor(tx, tenantId, contactId, 'sms', null, earliest));

    const idByKey = new Map<string, string>();
    const insertedKeys = new Set<string>();
    // Batches keep each statement well under PostgreSQL's 65,535 bind parameters.
    const BATCH = 500;
    for (let start = 0; start < thread.messages.length; start += BATCH) {
      const rows = thread.messages.slice(start, start + BATCH).map((message) => {
        const id = randomUUID();
        const status = message.direction === 'inbound' ? INBOUND_STATUS : 'delivered';
        return {
          id,
          tenantId,
          contactId,
          conversationId,
          direction: message.direction,
          author: message.author,
          ...fields.sealRow(messagesSealed, { scope: tenantId, id }, { body: message.body }),
          dedupeKey: message.dedupeKey,
          status,
          statusRank: statusRank(status),
          airtableRecordId: message.airtableRecordId ?? null,
          // History is not due for the Airtable sync: a row imported from Airtable is already
          // there (the import rewrites it), and an export's history is not pushed into the table.
          airtableSyncedAt: message.createdAt,
          createdAt: message.createdAt,
          updatedAt: message.createdAt,
        };
      });
      const inserted = await tx
        .insert(messages)
        .values(rows)
        .onConflictDoNothing({ target: [messages.tenantId, messages.dedupeKey] })
        .returning({ id: messages.id, dedupeKey: messages.dedupeKey });
      for (const row of inserted) {
        idByKey.set(row.dedupeKey, row.id);
        insertedKeys.add(row.dedupeKey);
      }
      const present = rows.map((row) => row.dedupeKey).filter((key) => !idByKey.has(key));
      if (present.length > 0) {
        const existing = await tx
          .select({ id: messages.id, dedupeKey: messages.dedupeKey })
          .from(messages)
          .where(and(eq(messages.tenantId, tenantId), inArray(messages.dedupeKey, present)));
        for (const row of existing) idByKey.set(row.dedupeKey, row.id);
      }
    }

    const newMessages = thread.messages.filter((message) => insertedKeys.has(message.dedupeKey));
    if (newMessages.length > 0) {
      const latest = new Date(Math.max(...newMessages.map((message) => message.createdAt.getTime())));
      await tx
        .update(conversations)
        .set({ lastMessageAt: sql`greatest(${conversations.lastMessageAt}, ${latest.toISOString()}::timestamptz)` })
        .where(eq(conversations.id, conversationId));
      const keywordMessages = newMessages
        .filter((message) => message.direction === 'inbound' && message.optChange !== undefined)
        .map((message) => ({ at: message.createdAt, keyword: message.optChange }))
        .sort((a, b) => a.at.getTime() - b.at.getTime());
      const newest = keywordMessages[keywordMessages.length - 1];
      if (newest?.keyword === 'opt-out') {
        await tx
          .update(contacts)
          .set({ optedOutAt: sql`coalesce(${contacts.optedOutAt}, ${newest.at.toISOString()}::timestamptz)` })
          .where(eq(contacts.id, contactId));
      } else if (newest?.keyword === 'opt-in') {
        await tx
          .update(contacts)
          .set({ optedOutAt: null })
          .where(and(eq(contacts.id, contactId), lt(contacts.optedOutAt, newest.at)));
      }
    }

    return {
      contactId,
      conversationId,
      conversationCreated: existingConversation === undefined,
      messages: thread.messages.map((message) => ({
        dedupeKey: message.dedupeKey,
        messageId: idByKey.get(message.dedupeKey)!,
        inserted: insertedKeys.has(message.dedupeKey),
      })),
    };
  });
}
