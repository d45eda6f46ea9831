import { eq } from 'drizzle-orm';
import type { Db } from '../connection.js';
import { airtableCursors } from '../schema.js';

/**
 * The `airtable_cursors` table: per tenant, where the list of its Airtable webhook's payloads was
 * last read (Airtable's cursor is an integer), so the next `airtable-webhook` job continues there.
 */
export class AirtableCursors {
  constructor(private readonly db: Db) {}

  /** The cursor stored for this webhook; a new webhook (the operator replaced it) starts from its own beginning. */
  async find(tenantId: string, webhookId: string): Promise<number | undefined> {
    const [row] = await this.db.select().from(airtableCursors).where(eq(airtableCursors.tenantId, tenantId)).limit(1);
    return row && row.webhookId === webhookId ? row.cursor : undefined;
  }

  async save(tenantId: string, webhookId: string, cursor: number): Promise<void> {
    const updatedAt = new Date();
    await this.db
      .insert(airtableCursors)
      .values({ tenantId, webhookId, cursor, updatedAt })
      .onConflictDoUpdate({ target: airtableCursors.tenantId, set: { webhookId, cursor, updatedAt } });
  }
}
