import { randomUUID } from 'node:crypto';
import { and, eq, inArray, sql } from 'drizzle-orm';
import type { Channel } from '../../domain/conversation.js';
import type { SenderKind } from '../../domain/normalise.js';
import type { SealedFields } from '../../seal/sealed-fields.js';
import type { Db } from '../connection.js';
import { contactsSealed } from '../sealed-tables.js';
import { contacts, conversations } from '../schema.js';

/**
 * Finding or creating the contact and conversation a message belongs to, inside the caller's
 * transaction. Shared by live ingest (conversations.ts) and imports (imported-conversations.ts).
 */

/**
 * The contact with this number, created when new. Concurrent first messages from one number meet
 * on the unique index. `senderKind` is recorded when the contact is made (a number is one kind
 * for good: the blind index already tells the kinds apart).
 */
export async function contactFor(tx: Db, fields: SealedFields, tenantId: string, phone: string, name: string | null, now: Date, senderKind: SenderKind = 'e164'): Promise<string> {
  const indexes = fields.lookupIndexes(contactsSealed, 'phone', tenantId, phone);
  const find = async () => {
    const [row] = await tx
      .select({ id: contacts.id, hasName: sql<boolean>`${contacts.name} is not null` })
      .from(contacts)
      .where(and(eq(contacts.tenantId, tenantId), inArray(contacts.phoneIndex, indexes)))
      .limit(1);
    return row;
  };
  let existing = await find();
  if (!existing) {
    const id = randomUUID();
    const inserted = await tx
      .insert(contacts)
      .values({ id, tenantId, ...fields.sealRow(contactsSealed, { scope: tenantId, id }, { phone, name }), senderKind, createdAt: now })
      .onConflictDoNothing()
      .returning({ id: contacts.id });
    if (inserted[0]) return inserted[0].id;
    existing = await find();
  }
  if (!existing) throw new Error('contact vanished while it was being created');
  if (name && !existing.hasName) {
    await tx
      .update(contacts)
      .set(fields.sealRow(contactsSealed, { scope: tenantId, id: existing.id }, { name }))
      .where(eq(contacts.id, existing.id));
  }
  return existing.id;
}

export async function conversationFor(tx: Db, tenantId: string, contactId: string, channel: Channel, providerConversationId: string | null, now: Date): Promise<string> {
  const id = randomUUID();
  const inserted = await tx
    .insert(conversations)
    .values({ id, tenantId, contactId, channel, providerConversationId, createdAt: now, lastMessageAt: now })
    .onConflictDoNothing()
    .returning({ id: conversations.id });
  if (inserted[0]) return inserted[0].id;
  const [row] = await tx
    .select({ id: conversations.id, providerConversationId: conversations.providerConversationId })
    .from(conversations)
    .where(and(eq(conversations.tenantId, tenantId), eq(conversations.contactId, contactId), eq(conversations.channel, channel)))
    .limit(1);
  if (providerConversationId && row!.providerConversationId !== providerConversationId) {
    await tx.update(conversations).set({ providerConversationId }).where(eq(conversations.id, row!.id));
  }
  return row!.id;
}
