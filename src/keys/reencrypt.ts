/**
 * Moves sealed values forward to their scope's current key version after a DEK rotation: open
 * with the version the envelope names, seal with the current one, and recompute blind indexes
 * under the current key. The same batching as encrypt-existing (walkBatches in
 * src/store/sealed-rows.ts): primary-key order, one transaction per batch, rows locked with
 * `select ... for update`, one write-back statement.
 *
 * A value the application rewrites meanwhile is never lost: if it was written first, the
 * locking select re-reads it, sees the current version and leaves it out; if the batch locked
 * it first, the application's write waits for the commit and then wins. A killed run leaves
 * committed batches on the new version and the rest on the old one, both readable, and the
 * next run carries on from what is still old.
 */

import { MissingKeyError, SealOpenError, type SealOpenFailure } from '../seal/errors.js';
import type { SealedFields } from '../seal/sealed-fields.js';
import {
  BatchWrites,
  countValues,
  valuesUnderOlderVersions,
  writeBatch,
  type ColumnWrite,
  type TableShape,
  type WalkedRow,
} from '../store/sealed-rows.js';
import type { MaintenanceOptions } from './maintenance-options.js';
import { reportColumns, runOverSealedTables, type TableRun } from './maintenance-run.js';

export interface ReencryptOptions extends MaintenanceOptions {
  /** Only this scope (a tenant id, or `system`); by default every scope with older values. */
  scope?: string;
}

export interface ReencryptColumnTotals {
  table: string;
  column: string;
  /** Values moved to their scope's current version by this run. */
  reencrypted: number;
  /** Values on an older version that could not be opened, left as they are (see `unreadableReasons`). */
  unreadable: number;
}

export interface ReencryptResult {
  columns: ReencryptColumnTotals[];
  reencrypted: number;
  unreadable: number;
  /**
   * Why values could not be opened: `unknown-key-version` means their key was destroyed
   * (shredded data, expected to stay); anything else is damage to investigate.
   */
  unreadableReasons: Partial<Record<SealOpenFailure, number>>;
  complete: boolean;
}

export async function reencrypt(options: ReencryptOptions): Promise<ReencryptResult> {
  // Another process may have rotated: current() must name the newest version there is.
  await options.fields.keyring.refresh?.();
  const result: ReencryptResult = { columns: [], reencrypted: 0, unreadable: 0, unreadableReasons: {}, complete: true };
  const scopeIsTenant = options.scope !== undefined && options.scope !== 'system';
  const { complete } = await runOverSealedTables(options, {
    table: (run) => reencryptTable(options, run, result),
    auditEvent: (outcome) => {
      result.reencrypted = result.columns.reduce((n, c) => n + c.reencrypted, 0);
      result.unreadable = result.columns.reduce((n, c) => n + c.unreadable, 0);
      return {
        actor: { type: 'system' },
        action: 'keys.reencrypt',
        tenantId: scopeIsTenant ? options.scope! : null,
        outcome,
        details: { reencrypted: result.reencrypted, unreadable: result.unreadable },
      };
    },
  });
  result.complete = complete;
  return result;
}

/** Returns false when stopped by the signal. */
async function reencryptTable(options: ReencryptOptions, { shape, walk }: TableRun, result: ReencryptResult): Promise<boolean> {
  const { db, fields } = options;
  const table = shape.declaration.name;

  // The current version of every scope that still has values below it. Only those scopes go
  // into the query, so a run after one tenant's rotation carries one entry, not every tenant.
  const counts = await countValues(db, shape, options.scope);
  const currentOf = new Map<string, number>();
  const totals = shape.fields.map((field) => {
    const entry: ReencryptColumnTotals = { table, column: field.sqlName, reencrypted: 0, unreadable: 0 };
    result.columns.push(entry);
    return { entry, total: 0 };
  });
  for (const count of counts) {
    if (count.kind <= 0) continue; // plaintext is encrypt-existing's work; damaged headers cannot be moved
    const current = currentVersion(fields, count.scope);
    if (current === undefined || count.kind >= current) continue;
    currentOf.set(count.scope, current);
    totals[shape.fields.findIndex((f) => f.sqlName === count.column)]!.total += count.values;
  }
  if (currentOf.size === 0) return true;

  const report = () =>
    reportColumns(
      options.onProgress,
      table,
      totals.map(({ entry, total }) => ({ column: entry.column, done: entry.reencrypted + entry.unreadable, total })),
    );
  report();

  return walk({
    selection: valuesUnderOlderVersions(shape, currentOf, options.scope),
    estimatedRows: Math.max(...totals.map((t) => t.total)),
    work: async (tx, rows) => {
      const moved = reencryptBatch(fields, shape, rows);
      await writeBatch(tx, shape, rows.map((row) => row.id), moved.writes);
      return moved;
    },
    committed: (moved) => {
      moved.reencrypted.forEach((n, index) => (totals[index]!.entry.reencrypted += n));
      moved.unreadable.forEach((n, index) => (totals[index]!.entry.unreadable += n));
      for (const [reason, n] of Object.entries(moved.reasons) as Array<[SealOpenFailure, number]>) {
        result.unreadableReasons[reason] = (result.unreadableReasons[reason] ?? 0) + n;
      }
      report();
    },
  });
}

function currentVersion(fields: SealedFields, scope: string): number | undefined {
  try {
    return fields.keyring.current(scope).version;
  } catch (error) {
    if (error instanceof MissingKeyError) return undefined;
    throw error;
  }
}

interface MovedBatch {
  writes: ColumnWrite[];
  reencrypted: number[];
  unreadable: number[];
  reasons: Partial<Record<SealOpenFailure, number>>;
}

function reencryptBatch(fields: SealedFields, shape: TableShape, rows: WalkedRow[]): MovedBatch {
  const declaration = shape.declaration;
  const batchWrites = new BatchWrites(shape, rows.length);
  const reencrypted = shape.fields.map(() => 0);
  const unreadable = shape.fields.map(() => 0);
  const reasons: Partial<Record<SealOpenFailure, number>> = {};

  rows.forEach((row, rowIndex) => {
    const plaintext: Record<string, string> = {};
    shape.fields.forEach((field, fieldIndex) => {
      const value = row.values[fieldIndex];
      if (value === null || value === undefined) return;
      try {
        plaintext[field.property] = fields.openRow(declaration, { scope: row.scope, id: row.id }, { [field.property]: value })[
          field.property
        ]!;
      } catch (error) {
        // Left as it is: re-sealing cannot repair it, and one bad value must not stop the
        // rest of the table from moving forward. Counted, so the operator sees it.
        if (!(error instanceof SealOpenError)) throw error;
        unreadable[fieldIndex]! += 1;
        reasons[error.reason] = (reasons[error.reason] ?? 0) + 1;
      }
    });
    if (Object.keys(plaintext).length === 0) return;
    const sealed = fields.sealRow(declaration, { scope: row.scope, id: row.id }, plaintext);
    batchWrites.place(rowIndex, sealed, (fieldIndex) => {
      reencrypted[fieldIndex]! += 1;
    });
  });
  return { writes: batchWrites.toWrites(), reencrypted, unreadable, reasons };
}
