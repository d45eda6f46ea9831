/**
 * Seals values that an older version (or an import) left in plaintext in sealed columns.
 *
 * Rows are taken in primary-key order, a batch at a time, each batch in one transaction: the
 * rows are locked (`select ... for update`), sealed in memory, written back with one statement
 * and committed (see walkBatches in src/store/sealed-rows.ts). A process killed mid-batch
 * therefore loses nothing and leaves nothing half done; the next run finds the same plaintext
 * by its header and carries on. A value that already starts with the envelope marker is never touched, so
 * running twice seals nothing twice. Memory is bounded by one batch per range walked at once,
 * whatever the size of the table.
 */

import { NormaliseError } from '../domain/normalise.js';
import { MissingKeyError } from '../seal/errors.js';
import type { SealedFields } from '../seal/sealed-fields.js';
import type { BlindIndexValue, SealedValue } from '../seal/sealed-value.js';
import {
  BatchWrites,
  PLAINTEXT_KIND,
  countValues,
  plaintextValues,
  writeBatch,
  type ColumnWrite,
  type TableShape,
  type WalkedRow,
} from '../store/sealed-rows.js';
import type { MaintenanceOptions } from './maintenance-options.js';
import { reportColumns, runOverSealedTables, type TableRun } from './maintenance-run.js';

export interface EncryptExistingOptions extends MaintenanceOptions {
  /**
   * @internal Fault injection for tests: awaited inside each batch's transaction after the
   * write and before the commit, so a test can kill the process with a batch written but
   * not committed.
   */
  beforeCommit?: (batch: { table: string; number: number; rows: number }) => Promise<void>;
}

export interface ColumnTotals {
  table: string;
  column: string;
  /** Values sealed by this run. */
  sealed: number;
  /** Values that were sealed already when the run reached the table. */
  alreadySealed: number;
}

export interface EncryptExistingResult {
  columns: ColumnTotals[];
  sealed: number;
  alreadySealed: number;
  /** False when stopped by the signal before every table was done. */
  complete: boolean;
}

/** A value that cannot be sealed as it is; names the row (an id, never the value) to fix. */
export class EncryptExistingError extends Error {
  override readonly name = 'EncryptExistingError';
  constructor(
    readonly table: string,
    readonly column: string,
    readonly rowId: string,
    reason: string,
  ) {
    super(`encrypt-existing: ${table}.${column} of row ${rowId}: ${reason}; fix that value and run again (finished batches stay sealed)`);
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

export async function encryptExisting(options: EncryptExistingOptions): Promise<EncryptExistingResult> {
  const columns: ColumnTotals[] = [];
  const sealed = () => sum(columns.map((c) => c.sealed));
  const alreadySealed = () => sum(columns.map((c) => c.alreadySealed));
  const { complete } = await runOverSealedTables(options, {
    table: (run) => encryptTable(options, run, columns),
    auditEvent: (outcome) => ({
      actor: { type: 'system' },
      action: 'keys.encrypt-existing',
      outcome,
      details: { sealed: sealed(), alreadySealed: alreadySealed(), tables: new Set(columns.map((c) => c.table)).size },
    }),
  });
  return { columns, sealed: sealed(), alreadySealed: alreadySealed(), complete };
}

/** Returns false when stopped by the signal. */
async function encryptTable(options: EncryptExistingOptions, { shape, walk }: TableRun, out: ColumnTotals[]): Promise<boolean> {
  const { db, fields } = options;
  const table = shape.declaration.name;
  const counts = await countValues(db, shape);
  const totals = shape.fields.map((field) => {
    const ofColumn = counts.filter((c) => c.column === field.sqlName);
    const entry: ColumnTotals = {
      table,
      column: field.sqlName,
      sealed: 0,
      alreadySealed: sum(ofColumn.filter((c) => c.kind !== PLAINTEXT_KIND).map((c) => c.values)),
    };
    out.push(entry);
    return { entry, total: sum(ofColumn.filter((c) => c.kind === PLAINTEXT_KIND).map((c) => c.values)) };
  });
  const report = () => reportColumns(options.onProgress, table, totals.map(({ entry, total }) => ({ column: entry.column, done: entry.sealed, total })));

  // Keys first, outside any batch transaction: creating a DEK takes its own transaction, and
  // on PGlite (one session) that cannot run while a batch transaction is open.
  const scopes = new Set(counts.filter((c) => c.kind === PLAINTEXT_KIND).map((c) => c.scope));
  for (const scope of scopes) await ensureKey(fields, scope);
  const triedScopes = new Set<string>();
  if (scopes.size === 0) return true;
  report();

  return walk({
    // Only plaintext values travel to this process; sealed ones in the same row stay put.
    selection: plaintextValues(shape),
    estimatedRows: Math.max(...totals.map((t) => t.total)),
    work: async (tx, rows, number) => {
      const sealedNow = sealBatch(fields, shape, rows);
      await writeBatch(tx, shape, rows.map((row) => row.id), sealedNow.writes);
      await options.beforeCommit?.({ table, number, rows: rows.length });
      return sealedNow.perField;
    },
    committed: (perField) => {
      perField.forEach((n, index) => (totals[index]!.entry.sealed += n));
      report();
    },
    retryAfterRollback: (error) => makeMissingKey(fields, error, triedScopes),
  });
}

interface SealedBatch {
  writes: ColumnWrite[];
  perField: number[];
}

function sealBatch(fields: SealedFields, shape: TableShape, rows: WalkedRow[]): SealedBatch {
  const declaration = shape.declaration;
  const batchWrites = new BatchWrites(shape, rows.length);
  const perField = shape.fields.map(() => 0);

  rows.forEach((row, rowIndex) => {
    const plaintext: Record<string, string> = {};
    const raw: Buffer[] = [];
    let sealed: Partial<Record<string, SealedValue | BlindIndexValue | null>>;
    try {
      shape.fields.forEach((field, fieldIndex) => {
        const bytes = row.values[fieldIndex];
        if (bytes === null || bytes === undefined) return;
        raw.push(bytes);
        try {
          // Strict: bytes that are not UTF-8 would come back as U+FFFD, silently changed.
          plaintext[field.property] = utf8.decode(bytes);
        } catch {
          throw new EncryptExistingError(declaration.name, field.sqlName, row.id, 'the stored bytes are not valid UTF-8 text');
        }
      });
      // The one sealing path (SealedFields), so envelope, binding and blind index are exactly
      // what a repository would have written.
      sealed = fields.sealRow(declaration, { scope: row.scope, id: row.id }, plaintext);
    } catch (error) {
      if (error instanceof NormaliseError) {
        const field = shape.fields.find((f) => f.blindIndex?.normaliser === error.normaliser && plaintext[f.property] !== undefined);
        throw new EncryptExistingError(declaration.name, field?.sqlName ?? '?', row.id, `cannot build its blind index (${error.message})`);
      }
      throw error;
    } finally {
      for (const bytes of raw) bytes.fill(0);
    }
    batchWrites.place(rowIndex, sealed, (fieldIndex) => {
      perField[fieldIndex]! += 1;
    });
  });
  return { writes: batchWrites.toWrites(), perField };
}

type EnsureScope = { ensureScope?: (scope: string) => Promise<void> };

async function ensureKey(fields: SealedFields, scope: string): Promise<void> {
  const keyring = fields.keyring as typeof fields.keyring & EnsureScope;
  if (typeof keyring.ensureScope === 'function') await keyring.ensureScope(scope);
}

/**
 * A row of a scope that had no key when the table was counted (a tenant added meanwhile) makes
 * sealRow throw MissingKeyError. The batch has rolled back by now; the key is made and the
 * batch runs again, once per scope, so a keyring that cannot make keys fails instead of looping.
 */
async function makeMissingKey(fields: SealedFields, error: unknown, tried: Set<string>): Promise<boolean> {
  const keyring = fields.keyring as typeof fields.keyring & EnsureScope;
  if (!(error instanceof MissingKeyError) || typeof keyring.ensureScope !== 'function' || tried.has(error.scope)) return false;
  tried.add(error.scope);
  await keyring.ensureScope(error.scope);
  return true;
}

function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}
