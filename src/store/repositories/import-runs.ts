import { randomUUID } from 'node:crypto';
import { and, desc, eq, sql } from 'drizzle-orm';
import type { Db } from '../connection.js';
import { importRuns } from '../schema.js';

/**
 * The `import_runs` table: one row per `ciphergate import` run, written after every page (Airtable)
 * or every batch of conversations (jsonl), so an interrupted Airtable import resumes at the page it
 * had not finished and the operator can see how far any import got. Holds ids, counts and
 * Airtable's opaque page offset only, never data.
 */

export type ImportSource = 'airtable' | 'jsonl';

export interface ImportRun {
  id: string;
  tenantId: string;
  source: ImportSource;
  state: 'running' | 'done';
  /** Airtable's offset of the next page to read; null means "from the first page". */
  nextOffset: string | null;
  /** Messages stored by this run (so far). */
  imported: number;
  /** Rows or conversations found already imported. */
  skipped: number;
  startedAt: Date;
  updatedAt: Date;
}

export class ImportRuns {
  constructor(private readonly db: Db) {}

  /** The newest run of this tenant and source that never finished, to continue it. */
  async unfinished(tenantId: string, source: ImportSource): Promise<ImportRun | undefined> {
    const [row] = await this.db
      .select()
      .from(importRuns)
      .where(and(eq(importRuns.tenantId, tenantId), eq(importRuns.source, source), eq(importRuns.state, 'running')))
      .orderBy(desc(importRuns.startedAt))
      .limit(1);
    return row;
  }

  async start(tenantId: string, source: ImportSource, now = new Date()): Promise<ImportRun> {
    const run: ImportRun = { id: randomUUID(), tenantId, source, state: 'running', nextOffset: null, imported: 0, skipped: 0, startedAt: now, updatedAt: now };
    await this.db.insert(importRuns).values(run);
    return run;
  }

  /**
   * Records progress: counts are added to the stored ones, `nextOffset` replaces the stored one
   * (null: the next read starts from the first page), `done` ends the run.
   */
  async record(runId: string, progress: { imported: number; skipped: number; nextOffset?: string | null; done?: boolean }): Promise<void> {
    await this.db
      .update(importRuns)
      .set({
        imported: sql`${importRuns.imported} + ${progress.imported}`,
        skipped: sql`${importRuns.skipped} + ${progress.skipped}`,
        ...(progress.nextOffset !== undefined ? { nextOffset: progress.nextOffset } : {}),
        ...(progress.done ? { state: 'done' as const, nextOffset: null } : {}),
        updatedAt: new Date(),
      })
      .where(eq(importRuns.id, runId));
  }

  async find(runId: string): Promise<ImportRun | undefined> {
    const [row] = await this.db.select().from(importRuns).where(eq(importRuns.id, runId)).limit(1);
    return row;
  }

  /** Every run of a tenant, newest first (tests and operators looking back). */
  async list(tenantId: string): Promise<ImportRun[]> {
    return this.db.select().from(importRuns).where(eq(importRuns.tenantId, tenantId)).orderBy(desc(importRuns.startedAt));
  }
}
