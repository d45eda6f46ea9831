/**
 * The frame that the maintenance jobs over sealed columns (encrypt-existing, re-encryption) run
 * in; each job brings only what it selects and what it does to a batch. The frame checks the
 * batch options, takes the declared sealed tables one at a time until the signal stops it, walks
 * each table's batches with the options given, reports progress per column, and writes one audit
 * event for the run whatever happened: what was committed before a failure stays committed, and
 * the operator sees a run that failed.
 */

import { appendAuditEvent, type AuditEventInput } from '../store/audit-trail.js';
import { shapeOf, walkBatches, type BatchWalk, type TableShape } from '../store/sealed-rows.js';
import { sealedTables } from '../store/sealed-tables.js';
import { checkBatchSize, checkConcurrency, type MaintenanceOptions } from './maintenance-options.js';

/** Rows per transaction by default: few enough for short row locks, many enough for one statement to pay off. */
const DEFAULT_BATCH_SIZE = 1000;
/** Key ranges walked at once by default (see MaintenanceOptions.concurrency). */
const DEFAULT_CONCURRENCY = 2;

/** One table of a run: its shape, and its batches walked with the run's options. */
export interface TableRun {
  shape: TableShape;
  /** walkBatches with the run's database, batch size, concurrency and signal. Returns false when stopped by the signal. */
  walk<Result>(walk: Omit<BatchWalk<Result>, 'db' | 'shape' | 'batchSize' | 'concurrency' | 'signal'>): Promise<boolean>;
}

export interface RunOverSealedTables {
  /** Does one table; returns false when stopped by the signal. */
  table(run: TableRun): Promise<boolean>;
  /** The run's audit event, given how it ended; called once, after the last table or the failure. */
  auditEvent(outcome: 'success' | 'failure'): AuditEventInput;
}

/** Runs a maintenance job over the sealed tables; `complete` is false when the signal stopped it. Rethrows a table's failure after auditing it. */
export async function runOverSealedTables(options: MaintenanceOptions, job: RunOverSealedTables): Promise<{ complete: boolean }> {
  const batchSize = checkBatchSize(options.batchSize, DEFAULT_BATCH_SIZE);
  const concurrency = checkConcurrency(options.concurrency, DEFAULT_CONCURRENCY);
  let complete = true;
  let failure: unknown;
  try {
    for (const declaration of options.tables ?? sealedTables) {
      const shape = shapeOf(declaration);
      const walk: TableRun['walk'] = (batches) =>
        walkBatches({ ...batches, db: options.db, shape, batchSize, concurrency, ...(options.signal ? { signal: options.signal } : {}) });
      if (options.signal?.aborted || !(await job.table({ shape, walk }))) {
        complete = false;
        break;
      }
    }
  } catch (error) {
    failure = error;
  }
  await appendAuditEvent(options.db, job.auditEvent(failure === undefined && complete ? 'success' : 'failure'));
  if (failure !== undefined) throw failure;
  return { complete };
}

/**
 * Reports each column of a table that has work (counted at the start, or done since) to
 * `onProgress`; a total counted at the start is raised to what was done when more turned up.
 */
export function reportColumns(
  onProgress: MaintenanceOptions['onProgress'],
  table: string,
  columns: ReadonlyArray<{ column: string; done: number; total: number }>,
): void {
  for (const { column, done, total } of columns) {
    if (total === 0 && done === 0) continue;
    onProgress?.({ table, column, done, total: Math.max(total, done) });
  }
}
