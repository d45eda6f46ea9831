/**
 * SQL shared by the maintenance jobs (encrypt-existing, re-encryption, key status). They work
 * on raw column names from the declarations in src/store/sealed-tables.ts, because they walk
 * every sealed table generically rather than through one repository.
 *
 * Plaintext and ciphertext are told apart by the envelope header only (docs/sealing.md): a
 * value whose first byte is 0xC1 is sealed, anything else (the empty value included) is
 * legacy plaintext. Nothing here guesses from content.
 */

import { sql, type SQL } from 'drizzle-orm';
import type { PgColumn } from 'drizzle-orm/pg-core';
import { getTableColumns } from 'drizzle-orm';
import { SYSTEM_SCOPE } from '../binding.js';
import { resolveFields, sqlNameOf, type ResolvedField, type SealedFields, type SealedTable } from '../sealed-fields.js';
import type { Progress } from './progress.js';
import { queryRows, type Db } from '../../store/connection.js';

/**
 * `decode()` rather than a `'\xc1'` literal: the literal's meaning depends on
 * standard_conforming_strings, and the function is folded to a constant at plan time anyway.
 */
const MARKER = sql.raw(`decode('c1', 'hex')`);

/** Alias the table gets in every statement here, so column references are never ambiguous. */
export const T = sql.raw('t');

export function column(name: string): SQL {
  return sql`${T}.${sql.identifier(name)}`;
}

export function tableRef(declaration: SealedTable): SQL {
  return sql`${sql.identifier(declaration.name)} as ${T}`;
}

/** True for a value still in plaintext. `substr` instead of `get_byte`, which fails on an empty value. */
export function isPlaintext(value: SQL): SQL {
  return sql`(${value} is not null and substr(${value}, 1, 1) <> ${MARKER})`;
}

/**
 * The key version a well-formed v1 header names, else null (plaintext, or a damaged header).
 * CASE is the one construct whose evaluation order PostgreSQL guarantees, so `get_byte` never
 * runs on a value too short for it. bigint, because versions are uint32.
 */
export function keyVersion(value: SQL): SQL {
  return sql`(case
    when octet_length(${value}) < 6 then null
    when get_byte(${value}, 0) <> 193 or get_byte(${value}, 1) <> 1 then null
    else (get_byte(${value}, 2)::bigint << 24) | (get_byte(${value}, 3)::bigint << 16) | (get_byte(${value}, 4)::bigint << 8) | get_byte(${value}, 5)::bigint
  end)`;
}

/** 0 = plaintext, -1 = starts like an envelope but its header is unreadable, else the key version. */
export const PLAINTEXT_KIND = 0;
export const DAMAGED_KIND = -1;

function valueKind(value: SQL): SQL {
  return sql`(case
    when substr(${value}, 1, 1) <> ${MARKER} then ${sql.raw(String(PLAINTEXT_KIND))}::bigint
    else coalesce(${keyVersion(value)}, ${sql.raw(String(DAMAGED_KIND))}::bigint)
  end)`;
}

/** The scope (tenant id or `system`) a row's values are sealed under, as text. */
export function scopeOf(declaration: SealedTable): SQL {
  if (declaration.scope === 'system') return sql`${SYSTEM_SCOPE}::text`;
  if (declaration.scope === 'self') return sql`${column(sqlNameOf(declaration, declaration.idProperty))}::text`;
  return sql`${column(sqlNameOf(declaration, declaration.scope.property))}::text`;
}

export interface TableShape {
  declaration: SealedTable;
  fields: ResolvedField[];
  idColumn: string;
  /** SQL type of the primary key, for casting the id array in write-backs (`uuid`). */
  idType: string;
}

export function shapeOf(declaration: SealedTable): TableShape {
  const idColumn = sqlNameOf(declaration, declaration.idProperty);
  const idType = (getTableColumns(declaration.table) as Record<string, PgColumn>)[declaration.idProperty]!.getSQLType();
  return { declaration, fields: resolveFields(declaration), idColumn, idType };
}

export interface ValueCount {
  /** SQL column name. */
  column: string;
  scope: string;
  /** PLAINTEXT_KIND, DAMAGED_KIND or a key version. */
  kind: number;
  values: number;
}

/**
 * Non-null values of every sealed column of a table, counted by (column, scope, key version)
 * in one scan. The answer has one row per combination that occurs, so it stays small however
 * large the table is.
 */
export async function countValues(db: Db, shape: TableShape, scope?: string): Promise<ValueCount[]> {
  if (shape.fields.length === 0) return [];
  const pairs = sql.join(
    shape.fields.map((field) => sql`(${field.sqlName}::text, ${column(field.sqlName)})`),
    sql`, `,
  );
  const scopeFilter = scope === undefined ? sql`` : sql` and ${scopeOf(shape.declaration)} = ${scope}`;
  const rows = await queryRows<{ column: string; scope: string; kind: number | string | bigint; values: number | string | bigint }>(
    db,
    sql`select v.col as "column", ${scopeOf(shape.declaration)} as scope, ${valueKind(sql`v.val`)} as kind, count(*) as "values"
        from ${tableRef(shape.declaration)} cross join lateral (values ${pairs}) as v(col, val)
        where v.val is not null${scopeFilter}
        group by 1, 2, 3`,
  );
  return rows.map((row) => ({ column: row.column, scope: row.scope, kind: Number(row.kind), values: Number(row.values) }));
}

/** PGlite answers bytea as Uint8Array, node-postgres as Buffer. */
export function toBuffer(value: Uint8Array): Buffer {
  return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

export interface ColumnWrite {
  sqlName: string;
  /** One entry per id; null keeps the stored value. */
  values: Array<Buffer | null>;
}

/**
 * Writes a batch back in one statement. `coalesce` keeps the stored value where the batch has
 * nothing for a column, so a row touched for one column leaves its others as they are (and no
 * sealed column is ever set to null by this path). The `= any(ids)` is for the planner: with
 * only the join to go by it may hash the whole table for every batch; with it, it looks the
 * batch's rows up in the primary key.
 */
export async function writeBatch(db: Db, shape: TableShape, ids: string[], writes: ColumnWrite[]): Promise<void> {
  if (ids.length === 0 || writes.length === 0) return;
  const idArray = () => sql`${sql.param(ids)}::${sql.raw(shape.idType)}[]`;
  const arrays = sql.join([idArray(), ...writes.map((write) => sql`${sql.param(write.values)}::bytea[]`)], sql`, `);
  const aliases = sql.raw(['id', ...writes.map((_, index) => `c${index}`)].join(', '));
  const assignments = sql.join(
    writes.map((write, index) => sql`${sql.identifier(write.sqlName)} = coalesce(u.${sql.raw(`c${index}`)}, ${column(write.sqlName)})`),
    sql`, `,
  );
  await db.execute(
    sql`update ${tableRef(shape.declaration)} set ${assignments}
        from unnest(${arrays}) as u(${aliases})
        where ${column(shape.idColumn)} = u.id and ${column(shape.idColumn)} = any(${idArray()})`,
  );
}

export type BatchRow = Record<string, unknown> & { id: string; scope: string };

export interface BatchWalk<Result> {
  db: Db;
  shape: TableShape;
  /** Rows that still need work; re-checked on every batch, so finished rows drop out. */
  needsWork: SQL;
  /** Select-list entries after `id` and `scope`. */
  columns: SQL;
  batchSize: number;
  /** Ranges of the primary key walked at once, each on its own connection. */
  concurrency: number;
  /** Estimated rows to do; below two batches per range, one range is enough. */
  estimatedRows: number;
  signal?: AbortSignal;
  /** Runs inside the batch's transaction with the locked rows; its writes commit or roll back with them. */
  work(tx: Db, rows: BatchRow[], batchNumber: number): Promise<Result>;
  /** Called after each commit, in commit order. */
  committed(result: Result): void;
  /**
   * Called with an error from a batch after its transaction rolled back; resolving true runs
   * the same batch again (e.g. once a missing key has been made, which cannot happen inside
   * the batch: on PGlite a second transaction would wait for the first).
   */
  retryAfterRollback?(error: unknown): Promise<boolean>;
}

/**
 * Walks the rows that need work in primary-key order (keyset pagination, never OFFSET), one
 * transaction per batch: `select ... for update` locks the batch, `work` computes and writes,
 * the commit publishes the batch whole. Returns false when stopped by the signal.
 *
 * With concurrency > 1 the key space is cut into ranges holding about equal shares of the
 * rows to do, and each range is walked by its own loop; on PostgreSQL the update work is then
 * spread over several backends. The first range starts below every key and the last ends
 * above every key, so rows added meanwhile are still inside some range.
 */
export async function walkBatches<Result>(walk: BatchWalk<Result>): Promise<boolean> {
  const { db, shape } = walk;
  const id = column(shape.idColumn);
  const idType = sql.raw(shape.idType);
  const ranges = await splitKeys(walk);
  let batchNumber = 0;
  let failed = false;
  const stopped = () => failed || walk.signal?.aborted === true;

  const walkRange = async (from: string | undefined, to: string | undefined) => {
    let lastId: string | undefined;
    while (!stopped()) {
      const lower =
        lastId !== undefined ? sql`${id} > ${lastId}::${idType} and ` : from !== undefined ? sql`${id} >= ${from}::${idType} and ` : sql``;
      const upper = to === undefined ? sql`` : sql`${id} < ${to}::${idType} and `;
      const number = (batchNumber += 1);
      const runBatch = () => db.transaction(async (tx) => {
        // A batch lost in a server crash after its commit was acknowledged is simply redone
        // by the next run (its rows are found again by their header), so it need not wait
        // for the WAL flush. Any later durable commit, such as the run's audit event, flushes
        // it anyway.
        await tx.execute(sql`set local synchronous_commit = off`);
        const rows = await queryRows<BatchRow>(
          tx,
          sql`select ${id}::text as id, ${scopeOf(shape.declaration)} as scope, ${walk.columns}
              from ${tableRef(shape.declaration)}
              where ${lower}${upper}(${walk.needsWork})
              order by ${id}
              limit ${walk.batchSize}
              for update of t`,
        );
        if (rows.length === 0) return undefined;
        return { lastId: rows[rows.length - 1]!.id, result: await walk.work(tx, rows, number) };
      });
      let batch: Awaited<ReturnType<typeof runBatch>>;
      for (;;) {
        try {
          batch = await runBatch();
          break;
        } catch (error) {
          if (!(await walk.retryAfterRollback?.(error))) throw error;
        }
      }
      // Only an empty batch ends a range: it proves nothing is left in it.
      if (batch === undefined) return;
      lastId = batch.lastId;
      walk.committed(batch.result);
    }
  };

  const outcomes = await Promise.allSettled(
    ranges.map(async (range) => {
      try {
        await walkRange(range.from, range.to);
      } catch (error) {
        failed = true; // the other ranges stop after their batch in flight
        throw error;
      }
    }),
  );
  const failure = outcomes.find((outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected');
  if (failure) throw failure.reason;
  return walk.signal?.aborted !== true;
}

async function splitKeys(walk: BatchWalk<unknown>): Promise<Array<{ from?: string; to?: string }>> {
  const parts = Math.min(walk.concurrency, Math.floor(walk.estimatedRows / (2 * walk.batchSize)));
  if (parts <= 1) return [{}];
  const id = column(walk.shape.idColumn);
  const step = Math.ceil(walk.estimatedRows / parts);
  // One pass over the rows to do in key order (a streaming window, nothing held): every
  // step-th key starts a range.
  const starts = await queryRows<{ start: string }>(
    walk.db,
    sql`select s.id::text as start
        from (select ${id} as id, row_number() over (order by ${id}) as n from ${tableRef(walk.shape.declaration)} where ${walk.needsWork}) as s
        where s.n % ${step} = 1 and s.n > 1
        order by s.id
        limit ${parts - 1}`,
  );
  const bounds = starts.map((row) => row.start);
  return [undefined, ...bounds].map((from, index) => ({
    ...(from !== undefined ? { from } : {}),
    ...(bounds[index] !== undefined ? { to: bounds[index] } : {}),
  }));
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

/** What every maintenance job (encrypt-existing, re-encryption) takes. */
export interface MaintenanceOptions {
  db: Db;
  fields: SealedFields;
  /** Defaults to every declared sealed table. */
  tables?: SealedTable[];
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

/**
 * The column writes of one batch: each sealed field and its blind index get one array of new
 * values by row, null where a row keeps its value. Shared by encrypt-existing and re-encryption.
 */
export class BatchWrites {
  private readonly valueWrites: ColumnWrite[];
  private readonly indexWrites: Array<ColumnWrite | undefined>;

  constructor(
    private readonly shape: TableShape,
    rowCount: number,
  ) {
    const emptyWrite = (sqlName: string): ColumnWrite => ({ sqlName, values: new Array<Buffer | null>(rowCount).fill(null) });
    this.valueWrites = shape.fields.map((field) => emptyWrite(field.sqlName));
    this.indexWrites = shape.fields.map((field) => (field.blindIndex ? emptyWrite(field.blindIndex.sqlName) : undefined));
  }

  /** Places one row's freshly sealed values; calls `counted` for each field that got one. */
  place(rowIndex: number, sealed: Record<string, Buffer | null>, counted: (fieldIndex: number) => void): void {
    this.shape.fields.forEach((field, fieldIndex) => {
      const value = sealed[field.property];
      if (value === undefined || value === null) return;
      this.valueWrites[fieldIndex]!.values[rowIndex] = value;
      counted(fieldIndex);
      const indexWrite = this.indexWrites[fieldIndex];
      if (indexWrite && field.blindIndex) indexWrite.values[rowIndex] = sealed[field.blindIndex.property] ?? null;
    });
  }

  /** The writes that change at least one row. */
  toWrites(): ColumnWrite[] {
    const writes = [...this.valueWrites, ...this.indexWrites.filter((write): write is ColumnWrite => write !== undefined)];
    return writes.filter((write) => write.values.some((value) => value !== null));
  }
}
