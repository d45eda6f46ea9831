import { randomUUID } from 'node:crypto';
import { and, asc, desc, eq, inArray, lt, or, sql } from 'drizzle-orm';
import type { Channel, ConversationFilter, ConversationListItem, ConversationListPosition, ConversationSummary, MessageAuthor, OpenedMessage } from '../../domain/conversation.js';
import type { OptChange } from '../../domain/keywords.js';
import type { SenderKind } from '../../domain/normalise.js';
import { INBOUND_STATUS, OUTBOUND_INITIAL_STATUS, statusRank } from '../../domain/message-status.js';
import type { SealedFields } from '../../seal/sealed-fields.js';
import type { Db } from '../connection.js';
import { enqueueJobs, type JobSpec } from '../job-queue.js';
import { contactsSealed, messagesSealed } from '../sealed-tables.js';
import { contacts, conversations, messages } from '../schema.js';
import { conversationSummaryColumns, listConversations } from './conversation-list.js';
import { storeImportedThread, type ImportedThread, type StoredImport } from './imported-conversations.js';
import { contactFor, conversationFor } from './threads.js';

export type { Channel, ConversationSummary, MessageAuthor, OpenedMessage } from '../../domain/conversation.js';

/**
 * Contacts, conversations and messages: the only code that writes or opens their sealed
 * columns. Every write that a job must follow commits together with the job.
 *
 * Over 400 lines on purpose: it is one aggregate (a message is never written without its
 * contact and conversation, nor opened without them), and keeping every sealed read and write of
 * the three tables in one class is what makes "only the repository touches sealed columns" easy
 * to check. Threads (find-or-create) and imports live beside it in threads.ts and
 * imported-conversations.ts.
 */

export interface InboundMessage {
  tenantId: string;
  channel: Channel;
  /** `twilio:<MessageSid>`, `podium:<uid>`: the provider's id, so a redelivery is recognised. */
  dedupeKey: string;
  providerMessageId: string;
  /** The sender: E.164, or as received when it is no valid number (`senderKind` says which). */
  phone: string;
  /** Absent means `e164`; see src/domain/normalise.ts (`inboundSenderOf`). */
  senderKind?: SenderKind;
  name?: string | null;
  body: string;
  providerConversationId?: string | null;
  receivedAt?: Date;
  /** The contact opts out or back in with this message (a carrier keyword, `optChangeOf`). */
  optChange?: OptChange;
}

export interface StoredMessageIds {
  messageId: string;
  contactId: string;
  conversationId: string;
}

export interface OutboundMessage {
  tenantId: string;
  conversationId: string;
  contactId: string;
  author: Exclude<MessageAuthor, 'contact'>;
  body: string;
  dedupeKey: string;
  inReplyTo?: string | null;
}

/** A message as a job sees it before opening anything. */
export interface MessageForJob {
  id: string;
  tenantId: string;
  contactId: string;
  conversationId: string;
  channel: Channel;
  providerConversationId: string | null;
  direction: 'inbound' | 'outbound';
  author: MessageAuthor;
  status: string;
  providerMessageId: string | null;
  sendStartedAt: Date | null;
  airtableRecordId: string | null;
  createdAt: Date;
  contactAiPaused: boolean;
  contactOptedOut: boolean;
}

/** A message with its conversation's channel: what every job reads before opening anything. */
const messageJobColumns = {
  id: messages.id,
  tenantId: messages.tenantId,
  contactId: messages.contactId,
  conversationId: messages.conversationId,
  channel: conversations.channel,
  providerConversationId: conversations.providerConversationId,
  direction: messages.direction,
  author: messages.author,
  status: messages.status,
  providerMessageId: messages.providerMessageId,
  sendStartedAt: messages.sendStartedAt,
  airtableRecordId: messages.airtableRecordId,
  createdAt: messages.createdAt,
};

export class ConversationRepository {
  constructor(
    private readonly db: Db,
    private readonly fields: SealedFields,
  ) {}

  /**
   * Stores an inbound message with its contact and conversation, and the jobs `followUps`
   * names, in one transaction. A delivery seen before (same dedupe key) changes nothing and
   * reports `duplicate`. An opt-out or opt-in (`optChange`) updates the contact in the same
   * commit, so no AI job can run between the keyword and the flag.
   */
  async storeInbound(inbound: InboundMessage, followUps: (stored: StoredMessageIds) => JobSpec[]): Promise<StoredMessageIds & { duplicate: boolean }> {
    const receivedAt = inbound.receivedAt ?? new Date();
    return this.db.transaction(async (tx) => {
      const contactId = await contactFor(tx, this.fields, inbound.tenantId, inbound.phone, inbound.name ?? null, receivedAt, inbound.senderKind);
      const conversationId = await conversationFor(tx, inbound.tenantId, contactId, inbound.channel, inbound.providerConversationId ?? null, receivedAt);
      const messageId = randomUUID();
      const stored = await this.insertMessage(tx, {
        id: messageId,
        tenantId: inbound.tenantId,
        contactId,
        conversationId,
        direction: 'inbound',
        author: 'contact',
        ...this.fields.sealRow(messagesSealed, { scope: inbound.tenantId, id: messageId }, { body: inbound.body }),
        dedupeKey: inbound.dedupeKey,
        providerMessageId: inbound.providerMessageId,
        status: INBOUND_STATUS,
        statusRank: statusRank(INBOUND_STATUS),
        createdAt: receivedAt,
        updatedAt: receivedAt,
      });
      if (stored.duplicate) return { duplicate: true, messageId: stored.id, contactId, conversationId };
      await tx.update(conversations).set({ lastMessageAt: receivedAt }).where(eq(conversations.id, conversationId));
      if (inbound.optChange === 'opt-out') await tx.update(contacts).set({ optedOutAt: receivedAt }).where(eq(contacts.id, contactId));
      if (inbound.optChange === 'opt-in') await tx.update(contacts).set({ optedOutAt: null }).where(eq(contacts.id, contactId));
      const ids = { messageId, contactId, conversationId };
      await enqueueJobs(tx, followUps(ids));
      return { duplicate: false, ...ids };
    });
  }

  /**
   * Stores a message we are about to send (AI answer, staff reply, API send) with its jobs. The
   * dedupe key makes a retried job or a repeated API call land on the row already there.
   */
  async storeOutbound(outbound: OutboundMessage, followUps: (messageId: string) => JobSpec[], db: Db = this.db): Promise<{ messageId: string; duplicate: boolean }> {
    return db.transaction(async (tx) => this.insertOutbound(tx, outbound, followUps));
  }

  /**
   * An outbound message to a phone number (an API send): its contact and conversation (made when
   * the number is new), the message and its jobs, in one transaction. A dedupe key that is taken
   * already (a retried call, or the same key reused for another message) writes nothing, not even
   * the contact of a number never texted before: the caller compares and may refuse.
   */
  async storeOutboundToPhone(
    outbound: Omit<OutboundMessage, 'contactId' | 'conversationId'> & { phone: string; channel: Channel },
    followUps: (messageId: string) => JobSpec[],
  ): Promise<{ messageId: string; duplicate: true } | { messageId: string; conversationId: string; duplicate: false }> {
    const taken = await this.idByDedupeKey(outbound.tenantId, outbound.dedupeKey);
    if (taken !== undefined) return { messageId: taken, duplicate: true };
    try {
      return await this.db.transaction(async (tx) => {
        const now = new Date();
        const contactId = await contactFor(tx, this.fields, outbound.tenantId, outbound.phone, null, now);
        const conversationId = await conversationFor(tx, outbound.tenantId, contactId, outbound.channel, null, now);
        const stored = await this.insertOutbound(tx, { ...outbound, contactId, conversationId }, followUps);
        // A concurrent call took the key between the look-up and the insert: roll back the
        // contact and conversation this one made.
        if (stored.duplicate) throw new DedupeKeyTaken(stored.messageId);
        return { messageId: stored.messageId, conversationId, duplicate: false as const };
      });
    } catch (error) {
      if (error instanceof DedupeKeyTaken) return { messageId: error.messageId, duplicate: true };
      throw error;
    }
  }

  /** A conversation with a phone number (E.164) for an outbound message that starts one. */
  async conversationForPhone(tenantId: string, phone: string, channel: Channel): Promise<{ contactId: string; conversationId: string }> {
    return this.db.transaction(async (tx) => {
      const now = new Date();
      const contactId = await contactFor(tx, this.fields, tenantId, phone, null, now);
      const conversationId = await conversationFor(tx, tenantId, contactId, channel, null, now);
      return { contactId, conversationId };
    });
  }

  async messageForJob(messageId: string): Promise<MessageForJob | undefined> {
    const [row] = await this.db
      .select({
        ...messageJobColumns,
        contactAiPaused: contacts.aiPaused,
        contactOptedOutAt: contacts.optedOutAt,
      })
      .from(messages)
      .innerJoin(conversations, eq(conversations.id, messages.conversationId))
      .innerJoin(contacts, eq(contacts.id, messages.contactId))
      .where(eq(messages.id, messageId))
      .limit(1);
    if (!row) return undefined;
    const { contactOptedOutAt, ...rest } = row;
    return { ...rest, contactOptedOut: contactOptedOutAt !== null };
  }

  async openBody(message: { id: string; tenantId: string }): Promise<string> {
    const [row] = await this.db.select({ body: messages.body }).from(messages).where(eq(messages.id, message.id)).limit(1);
    if (!row) throw new Error(`message ${message.id} does not exist`);
    return this.fields.openFresh({ scope: message.tenantId, table: messagesSealed.name, column: 'body', rowId: message.id }, row.body);
  }

  async openContact(contact: { id: string; tenantId: string }): Promise<{ phone: string; name: string | null }> {
    const [row] = await this.db.select({ phone: contacts.phone, name: contacts.name }).from(contacts).where(eq(contacts.id, contact.id)).limit(1);
    if (!row) throw new Error(`contact ${contact.id} does not exist`);
    const context = { scope: contact.tenantId, table: contactsSealed.name, rowId: contact.id };
    return {
      phone: await this.fields.openFresh({ ...context, column: 'phone' }, row.phone),
      name: row.name === null ? null : await this.fields.openFresh({ ...context, column: 'name' }, row.name),
    };
  }

  /** The newest `limit` messages of a conversation, opened, oldest first. */
  async recentHistory(conversation: { id: string; tenantId: string }, limit: number): Promise<OpenedMessage[]> {
    const rows = await this.db
      .select()
      .from(messages)
      .where(eq(messages.conversationId, conversation.id))
      .orderBy(desc(messages.createdAt), desc(messages.id))
      .limit(limit);
    return Promise.all(rows.reverse().map((row) => this.opened(row)));
  }

  /** The message stored under a dedupe key, if any (an AI answer already made, an API send already taken). */
  async idByDedupeKey(tenantId: string, dedupeKey: string): Promise<string | undefined> {
    const [row] = await this.db
      .select({ id: messages.id })
      .from(messages)
      .where(and(eq(messages.tenantId, tenantId), eq(messages.dedupeKey, dedupeKey)))
      .limit(1);
    return row?.id;
  }

  /** The id of the newest inbound message, to let only the latest of a burst be answered. */
  async latestInboundId(conversationId: string): Promise<string | undefined> {
    const [row] = await this.db
      .select({ id: messages.id })
      .from(messages)
      .where(and(eq(messages.conversationId, conversationId), eq(messages.direction, 'inbound')))
      .orderBy(desc(messages.createdAt), desc(messages.id))
      .limit(1);
    return row?.id;
  }

  /** Provider ids recorded on the contact's other outbound messages (reconciliation must not pick them). */
  async providerIdsSentTo(contactId: string, exceptMessageId: string): Promise<string[]> {
    const rows = await this.db
      .select({ providerMessageId: messages.providerMessageId })
      .from(messages)
      .where(and(eq(messages.contactId, contactId), eq(messages.direction, 'outbound'), sql`${messages.providerMessageId} is not null`, sql`${messages.id} <> ${exceptMessageId}`));
    return rows.map((row) => row.providerMessageId!);
  }

  /** Written and committed before the provider is called: a later attempt that sees it looks before sending again. */
  async markSendStarted(messageId: string, at: Date): Promise<void> {
    await this.db.update(messages).set({ sendStartedAt: at, updatedAt: at }).where(eq(messages.id, messageId));
  }

  /** The provider accepted the message: its id and first status, with the follow-up jobs. */
  async recordSent(messageId: string, providerMessageId: string, status: string, followUps: JobSpec[]): Promise<void> {
    await this.db.transaction(async (tx) => {
      await tx
        .update(messages)
        .set({ providerMessageId, updatedAt: new Date() })
        .where(eq(messages.id, messageId));
      await this.applyStatusIn(tx, eq(messages.id, messageId), status, null);
      await enqueueJobs(tx, followUps);
    });
  }

  /**
   * A status from a callback or a send result. Applied only when it ranks above the stored one.
   * Returns the message it moved forward (for the follow-up sync), or undefined.
   */
  async applyStatus(
    tenantId: string,
    which: { messageId: string } | { providerMessageId: string },
    status: string,
    errorCode: string | null,
    followUps: (messageId: string) => JobSpec[] = () => [],
  ): Promise<string | undefined> {
    return this.db.transaction(async (tx) => {
      const match = 'messageId' in which ? eq(messages.id, which.messageId) : eq(messages.providerMessageId, which.providerMessageId);
      const moved = await this.applyStatusIn(tx, and(eq(messages.tenantId, tenantId), match)!, status, errorCode);
      if (moved) await enqueueJobs(tx, followUps(moved));
      return moved;
    });
  }

  /** Messages of a tenant changed since they were last written to Airtable, oldest change first. */
  async dueForAirtable(tenantId: string, limit: number): Promise<Array<Omit<MessageForJob, 'contactAiPaused' | 'contactOptedOut'> & { updatedAt: Date }>> {
    return this.db
      .select({
        ...messageJobColumns,
        updatedAt: messages.updatedAt,
      })
      .from(messages)
      .innerJoin(conversations, eq(conversations.id, messages.conversationId))
      .where(and(eq(messages.tenantId, tenantId), sql`(${messages.airtableSyncedAt} is null or ${messages.airtableSyncedAt} < ${messages.updatedAt})`))
      .orderBy(asc(messages.updatedAt))
      .limit(limit);
  }

  /**
   * Records that the message's state as of `updatedAt` is in Airtable. A change made since (a
   * status callback during the write) keeps `updated_at` ahead, so the row stays due.
   */
  async markAirtableSynced(messageId: string, updatedAt: Date, recordId: string | undefined): Promise<void> {
    await this.db
      .update(messages)
      .set({ airtableSyncedAt: updatedAt, ...(recordId ? { airtableRecordId: recordId } : {}) })
      .where(eq(messages.id, messageId));
  }

  async setAiPaused(contactId: string, paused: boolean): Promise<void> {
    await this.db.update(contacts).set({ aiPaused: paused }).where(eq(contacts.id, contactId));
  }

  /** Conversations of the contact with this phone number: found through the blind index, never by opening rows. */
  async findByPhone(tenantId: string, phone: string): Promise<ConversationSummary[]> {
    const indexes = this.fields.lookupIndexes(contactsSealed, 'phone', tenantId, phone);
    return this.db
      .select(conversationSummaryColumns)
      .from(conversations)
      .innerJoin(contacts, eq(contacts.id, conversations.contactId))
      .where(and(eq(contacts.tenantId, tenantId), inArray(contacts.phoneIndex, indexes)))
      .orderBy(desc(conversations.lastMessageAt));
  }

  /** A tenant's conversations for a list, latest activity first, the number masked (conversation-list.ts). */
  list(tenantId: string, filter: ConversationFilter & { phone?: string }, page: { limit: number; after?: ConversationListPosition }): Promise<ConversationListItem[]> {
    return listConversations(this.db, this.fields, tenantId, filter, page);
  }

  async findConversation(id: string): Promise<ConversationSummary | undefined> {
    const [row] = await this.db
      .select(conversationSummaryColumns)
      .from(conversations)
      .where(eq(conversations.id, id))
      .limit(1);
    return row;
  }

  /** One page of a conversation's messages, opened, oldest first; `before` is the cursor of the previous page. */
  async messagesPage(conversation: { id: string; tenantId: string }, page: { limit: number; before?: { createdAt: Date; id: string } }): Promise<OpenedMessage[]> {
    const conditions = [eq(messages.conversationId, conversation.id)];
    if (page.before) {
      conditions.push(or(lt(messages.createdAt, page.before.createdAt), and(eq(messages.createdAt, page.before.createdAt), lt(messages.id, page.before.id)))!);
    }
    const rows = await this.db
      .select()
      .from(messages)
      .where(and(...conditions))
      .orderBy(desc(messages.createdAt), desc(messages.id))
      .limit(page.limit);
    return Promise.all(rows.reverse().map((row) => this.opened(row)));
  }

  /** Message ids in a conversation with their dedupe keys, oldest first (for tests and import checks; opens nothing). */
  async messageIds(conversationId: string): Promise<Array<{ id: string; dedupeKey: string; direction: string }>> {
    return this.db
      .select({ id: messages.id, dedupeKey: messages.dedupeKey, direction: messages.direction })
      .from(messages)
      .where(eq(messages.conversationId, conversationId))
      .orderBy(asc(messages.createdAt));
  }

  /** The row of a message we are about to send, with its jobs, inside the caller's transaction. */
  private async insertOutbound(tx: Db, outbound: OutboundMessage, followUps: (messageId: string) => JobSpec[]): Promise<{ messageId: string; duplicate: boolean }> {
    const messageId = randomUUID();
    const now = new Date();
    const stored = await this.insertMessage(tx, {
      id: messageId,
      tenantId: outbound.tenantId,
      contactId: outbound.contactId,
      conversationId: outbound.conversationId,
      direction: 'outbound',
      author: outbound.author,
      ...this.fields.sealRow(messagesSealed, { scope: outbound.tenantId, id: messageId }, { body: outbound.body }),
      dedupeKey: outbound.dedupeKey,
      status: OUTBOUND_INITIAL_STATUS,
      statusRank: statusRank(OUTBOUND_INITIAL_STATUS),
      inReplyTo: outbound.inReplyTo ?? null,
      createdAt: now,
      updatedAt: now,
    });
    if (stored.duplicate) return { messageId: stored.id, duplicate: true };
    await tx.update(conversations).set({ lastMessageAt: now }).where(eq(conversations.id, outbound.conversationId));
    await enqueueJobs(tx, followUps(messageId));
    return { messageId, duplicate: false };
  }

  /**
   * Inserts a message unless its dedupe key is taken in the tenant; then answers the id already
   * there. The unique key decides, so two concurrent deliveries of one message store one row.
   */
  private async insertMessage(tx: Db, row: typeof messages.$inferInsert): Promise<{ id: string; duplicate: boolean }> {
    const inserted = await tx
      .insert(messages)
      .values(row)
      .onConflictDoNothing({ target: [messages.tenantId, messages.dedupeKey] })
      .returning({ id: messages.id });
    if (inserted[0]) return { id: inserted[0].id, duplicate: false };
    const [existing] = await tx
      .select({ id: messages.id })
      .from(messages)
      .where(and(eq(messages.tenantId, row.tenantId), eq(messages.dedupeKey, row.dedupeKey)));
    return { id: existing!.id, duplicate: true };
  }

  private async opened(row: typeof messages.$inferSelect): Promise<OpenedMessage> {
    return {
      id: row.id,
      direction: row.direction,
      author: row.author,
      status: row.status,
      createdAt: row.createdAt,
      body: await this.fields.openFresh({ scope: row.tenantId, table: messagesSealed.name, column: 'body', rowId: row.id }, row.body),
    };
  }

  private async applyStatusIn(tx: Db, match: ReturnType<typeof eq>, status: string, errorCode: string | null): Promise<string | undefined> {
    const rank = statusRank(status);
    const updated = await tx
      .update(messages)
      .set({ status, statusRank: rank, errorCode, updatedAt: new Date() })
      .where(and(match, eq(messages.direction, 'outbound'), lt(messages.statusRank, rank)))
      .returning({ id: messages.id });
    return updated[0]?.id;
  }

  /** A conversation brought in by `ciphergate import` (see imported-conversations.ts). */
  storeImported(tenantId: string, thread: ImportedThread): Promise<StoredImport> {
    return storeImportedThread(this.db, this.fields, tenantId, thread);
  }
}

/** Thrown inside storeOutboundToPhone's transaction to roll it back when its dedupe key turns out taken. */
class DedupeKeyTaken extends Error {
  constructor(readonly messageId: string) {
    super('dedupe key taken');
  }
}
