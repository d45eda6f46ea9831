import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import type { SealedFields } from '../../src/seal/sealed-fields.js';
import { queryRows, type Db } from '../../src/store/connection.js';
import { messagesSealed } from '../../src/store/sealed-tables.js';

/**
 * Rows written and read with raw SQL, beside the repositories: as an older version or an import
 * left them, or sealed exactly as a repository writes them, so the key maintenance tests can
 * set up and inspect what is stored byte for byte.
 */

/** A tenant's `settings` with no IP allowlist, as `tenants put` stores it by default. */
export const TENANT_SETTINGS = JSON.stringify({ allowIps: { twilio: [], airtable: [], podium: [] } });

/** PGlite answers bytea as Uint8Array, node-postgres as Buffer. */
export function asBuffer(value: Uint8Array): Buffer {
  return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

/**
 * The SMS conversation of (tenant, contact), created on first use. Every message row belongs to
 * one (messages.conversation_id is NOT NULL), so tests that write message rows with raw SQL get
 * its id here.
 */
export async function ensureConversation(db: Db, tenantId: string, contactId: string): Promise<string> {
  await db.execute(sql`insert into conversations (id, tenant_id, contact_id, channel, created_at, last_message_at)
    values (${randomUUID()}, ${tenantId}, ${contactId}, 'sms', now(), now()) on conflict do nothing`);
  const [conversation] = await queryRows<{ id: string }>(
    db,
    sql`select id::text from conversations where tenant_id = ${tenantId} and contact_id = ${contactId} and channel = 'sms'`,
  );
  return conversation!.id;
}

/** A message sealed the way a repository writes it. */
export async function insertSealedMessage(db: Db, fields: SealedFields, tenantId: string, contactId: string, body: string): Promise<string> {
  const id = randomUUID();
  const sealed = fields.sealRow(messagesSealed, { scope: tenantId, id }, { body });
  const conversationId = await ensureConversation(db, tenantId, contactId);
  await db.execute(sql`insert into messages (id, tenant_id, contact_id, conversation_id, direction, author, body, dedupe_key, status, status_rank, created_at, updated_at)
    values (${id}, ${tenantId}, ${contactId}, ${conversationId}, 'inbound', 'contact', ${sealed.body!}, ${`test:${id}`}, 'received', 0, now(), now())`);
  return id;
}

/** Every message row as stored, ordered by id. */
export async function storedMessages(db: Db): Promise<Array<{ id: string; tenant_id: string; body: Buffer }>> {
  const rows = await queryRows<{ id: string; tenant_id: string; body: Uint8Array }>(db, sql`select id::text, tenant_id::text, body from messages order by id`);
  return rows.map((row) => ({ ...row, body: asBuffer(row.body) }));
}
