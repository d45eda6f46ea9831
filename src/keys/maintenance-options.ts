import type { SealedFields } from '../seal/sealed-fields.js';
import type { Db } from '../store/connection.js';
import type { DeclaredSealedTable } from '../store/sealed-tables.js';
import type { Progress } from './progress.js';

/** What every maintenance job (encrypt-existing, re-encryption) takes. */
export interface MaintenanceOptions {
  db: Db;
  fields: SealedFields;
  /** Defaults to every declared sealed table. */
  tables?: DeclaredSealedTable[];
  /** Rows per transaction (default 1000). */
  batchSize?: number;
  /**
   * Key ranges of a table worked on at once, each on its own connection (default 2). On
   * PostgreSQL the row updates, not the sealing, bound the speed, and two backends do them
   * nearly twice as fast; on PGlite, which has one session, batches simply take turns.
   */
  concurrency?: number;
  onProgress?: (progress: Progress) => void;
  /** Stops after the batches in flight have committed; the result then says `complete: false`. */
  signal?: AbortSignal;
}

/** Validates a batch size option; large batches hold row locks longer and cost memory. */
export function checkBatchSize(batchSize: number | undefined, fallback: number): number {
  const size = batchSize ?? fallback;
  if (!Number.isInteger(size) || size < 1 || size > 100_000) throw new RangeError('batchSize must be an integer from 1 to 100000');
  return size;
}

export function checkConcurrency(concurrency: number | undefined, fallback: number): number {
  const value = concurrency ?? fallback;
  if (!Number.isInteger(value) || value < 1 || value > 16) throw new RangeError('concurrency must be an integer from 1 to 16');
  return value;
}
