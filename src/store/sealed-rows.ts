/**
 * Sealed rows in bulk, for the key maintenance jobs (src/keys/: encrypt-existing, re-encryption,
 * key status). They walk every sealed table generically, by the declarations in
 * ./sealed-tables.ts, rather than through one repository, so the SQL is built here from each
 * declaration's column names.
 *
 * Plaintext and ciphertext are told apart by the envelope header only (docs/sealing.md): a
 * value whose first byte is the envelope marker is sealed, anything else (the empty value
 * included) is legacy plaintext. Nothing here guesses from content, and nothing here restates
 * the layout: every offset, length and byte value below comes from src/seal/envelope.ts.
 *
 * Over 400 lines on purpose: counting, selecting, walking and writing back all share the table
 * alias, the column helpers and the layout predicates, which a split would have to export for
 * no other user.
 */

import { getTableColumns, sql, type SQL } from 'drizzle-orm';
import type { PgColumn } from 'drizzle-orm/pg-core';
import { SYSTEM_SCOPE } from '../seal/binding.js';
import { ENVELOPE_FORMAT_V1, ENVELOPE_MARKER, FORMAT_OFFSET, HEADER_BYTES, KEY_VERSION_BYTES, KEY_VERSION_OFFSET, MARKER_OFFSET } from '../seal/envelope.js';
import { resolveFields, sqlNameOf, type ResolvedField, type SealedTable } from '../seal/sealed-fields.js';
import type { DeclaredSealedTable } from './sealed-tables.js';
import type { BlindIndexValue, SealedValue } from '../seal/sealed-value.js';
import { queryRows, type Db } from './connection.js';

/** A constant of the envelope layout as a SQL literal (they are small integers, never input). */
function literal(value: number): SQL {
  if (!Number.isSafeInteger(value)) throw new Error(`not an integer: ${value}`);
  return sql.raw(String(value));
}

/**
 * The marker as a one-byte bytea. `decode()` rather than a `'\x..'` literal: the literal's
 * meaning depends on standard_conforming_strings, and the function is folded to a constant at
 * plan time anyway.
 */
const MARKER = sql.raw(`decode('${ENVELOPE_MARKER.toString(16).padStart(2, '0')}', 'hex')`);

/** Alias the table gets in every statement here, so column references are never ambiguous. */
const T = sql.raw('t');

function column(name: string): SQL {
  return sql`${T}.${sql.identifier(name)}`;
}

function tableRef(declaration: SealedTable): SQL {
  return sql`${sql.identifier(declaration.name)} as ${T}`;
}

/** True for a value still in plaintext (isSealed's negation). `substr` instead of `get_byte`, which fails on an empty value. */
function isPlaintext(value: SQL): SQL {
  return sql`(${value} is not null and substr(${value}, ${literal(MARKER_OFFSET + 1)}, 1) <> ${MARKER})`;
}

/**
 * The key version a well-formed header names, else null (plaintext, or a damaged header), as
 * readEnvelopeHeader reads it. CASE is the one construct whose evaluation order PostgreSQL
 * guarantees, so `get_byte` never runs on a value too short for it. bigint, because versions
 * are uint32; the bytes are big-endian.
 */
function keyVersion(value: SQL): SQL {
  const bytes = Array.from({ length: KEY_VERSION_BYTES }, (_, index) => {
    const shift = 8 * (KEY_VERSION_BYTES - 1 - index);
    return sql`(get_byte(${value}, ${literal(KEY_VERSION_OFFSET + index)})::bigint << ${literal(shift)})`;
  });
  return sql`(case
    when octet_length(${value}) < ${literal(HEADER_BYTES)} then null
    when get_byte(${value}, ${literal(MARKER_OFFSET)}) <> ${literal(ENVELOPE_MARKER)} or get_byte(${value}, ${literal(FORMAT_OFFSET)}) <> ${literal(ENVELOPE_FORMAT_V1)} then null
    else ${sql.join(bytes, sql` | `)}
  end)`;
}

/** What valueKind answers besides a key version: plaintext, or an envelope whose header is unreadable. */
export const PLAINTEXT_KIND = 0;
export const DAMAGED_KIND = -1;

/**
 * For a non-null value: PLAINTEXT_KIND, DAMAGED_KIND (starts like an envelope but its header
 * cannot be read: readEnvelopeHeader would throw), else the key version it names.
 */
export function valueKind(value: SQL): SQL {
  return sql`(case
    when substr(${value}, ${literal(MARKER_OFFSET + 1)}, 1) <> ${MARKER} then ${literal(PLAINTEXT_KIND)}::bigint
    else coalesce(${keyVersion(value)}, ${literal(DAMAGED_KIND)}::bigint)
  end)`;
}

/** The scope (tenant id or `system`) a row's values are sealed under, as text. */
function scopeOf(declaration: SealedTable): SQL {
  if (declaration.scope === 'system') return sql`${SYSTEM_SCOPE}::text`;
  if (declaration.scope === 'self') return sql`${column(sqlNameOf(declaration, declaration.idProperty))}::text`;
  return sql`${column(sqlNameOf(declaration, declaration.scope.property))}::text`;
}

/** A sealed table as the walks see it: its declaration, its sealed columns in order, its key. */
export interface TableShape {
  declaration: DeclaredSealedTable;
  fields: ResolvedField[];
  idColumn: string;
  /** SQL type of the primary key, for casting the id array in write-backs (`uuid`). */
  idType: string;
}

export function shapeOf(declaration: DeclaredSealedTable): TableShape {
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

/**
 * Which rows a walk visits and which of their values it brings along; made by the functions
 * below, passed to walkBatches as it is.
 */
export interface RowSelection {
  /** Rows that still need work; re-checked on every batch, so finished rows drop out. */
  readonly needsWork: SQL;
  /** One select-list entry per field of the shape, aliased c0, c1, …: the value, or null when it has nothing to do. */
  readonly values: SQL;
}

/** Rows with a value still in plaintext; only plaintext values travel, sealed ones in the same row come as null. */
export function plaintextValues(shape: TableShape): RowSelection {
  return {
    needsWork: sql.join(
      shape.fields.map((field) => isPlaintext(column(field.sqlName))),
      sql` or `,
    ),
    values: selectEach(shape, (value) => sql`case when ${isPlaintext(value)} then ${value} end`),
  };
}

/**
 * Rows with a value sealed under an older key version than the current version of its scope
 * (`currentVersions`, by scope; a scope missing from it is left alone), optionally of one scope
 * only; only those values travel.
 */
export function valuesUnderOlderVersions(shape: TableShape, currentVersions: ReadonlyMap<string, number>, scope?: string): RowSelection {
  const versions = sql`${JSON.stringify(Object.fromEntries(currentVersions))}::jsonb`;
  // A scalar lookup rather than a join: the batch query stays a walk of the primary key.
  const currentForRow = sql`coalesce((${versions} ->> ${scopeOf(shape.declaration)})::bigint, 0)`;
  const isOld = (value: SQL) => sql`${keyVersion(value)} < ${currentForRow}`;
  const scopeFilter = scope === undefined ? sql`` : sql`${scopeOf(shape.declaration)} = ${scope} and `;
  const anyOld = sql.join(
    shape.fields.map((field) => isOld(column(field.sqlName))),
    sql` or `,
  );
  return {
    needsWork: sql`${scopeFilter}(${anyOld})`,
    values: selectEach(shape, (value) => sql`case when ${isOld(value)} then ${value} end`),
  };
}

/** Every row with every value: the encrypt-existing benchmark's baseline walk, which seals nothing. */
export function everyValue(shape: TableShape): RowSelection {
  return { needsWork: sql`true`, values: selectEach(shape, (value) => value) };
}

function selectEach(shape: TableShape, valueOf: (value: SQL) => SQL): SQL {
  return sql.join(
    shape.fields.map((field, index) => sql`${valueOf(column(field.sqlName))} as ${sql.raw(`c${index}`)}`),
    sql`, `,
  );
}

/** PGlite answers bytea as Uint8Array, node-postgres as Buffer. */
function toBuffer(value: Uint8Array): Buffer {
  return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

declare const storedBrand: unique symbol;

/**
 * Bytes as a walk read them from a sealed column, plaintext or sealed. Only walkBatches makes
 * them, so rewriteUnchanged can take nothing else.
 */
export type StoredBytes = Buffer & { readonly [storedBrand]: true };

/** A row of a walk: its id, its scope, and its selected values in the order of the shape's fields. */
export interface WalkedRow {
  id: string;
  scope: string;
  /** As stored (plaintext or sealed), or null where the selection brought nothing. */
  values: Array<StoredBytes | null>;
}

/** One column of a write-back: what the seal layer made, one entry per id; null keeps the stored value. */
export interface ColumnWrite {
  sqlName: string;
  values: Array<SealedValue | BlindIndexValue | null>;
}

/**
 * Writes a batch back in one statement. `coalesce` keeps the stored value where the batch has
 * nothing for a column, so a row touched for one column leaves its others as they are (and no
 * sealed column is ever set to null by this path). The `= any(ids)` is for the planner: with
 * only the join to go by it may hash the whole table for every batch; with it, it looks the
 * batch's rows up in the primary key. Only values made by the seal layer are accepted (the
 * types are branded), as for every other write of a sealed column.
 */
export async function writeBatch(db: Db, shape: TableShape, ids: string[], writes: ColumnWrite[]): Promise<void> {
  await writeColumns(db, shape, ids, writes);
}

/**
 * Writes walked rows back exactly as they were read, by the statement writeBatch uses: the
 * encrypt-existing benchmark's baseline, which is everything encrypt-existing does but the
 * sealing. Each value goes back to the row and column it came from, and only bytes a walk read
 * are accepted, so nothing new reaches a sealed column this way.
 */
export async function rewriteUnchanged(db: Db, shape: TableShape, rows: WalkedRow[]): Promise<void> {
  const writes = shape.fields.map((field, index) => ({ sqlName: field.sqlName, values: rows.map((row) => row.values[index] ?? null) }));
  await writeColumns(db, shape, rows.map((row) => row.id), writes);
}

async function writeColumns(db: Db, shape: TableShape, ids: string[], writes: Array<{ sqlName: string; values: Array<Buffer | null> }>): Promise<void> {
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

export interface BatchWalk<Result> {
  db: Db;
  shape: TableShape;
  /** Which rows and values (plaintextValues, valuesUnderOlderVersions, everyValue). */
  selection: RowSelection;
  batchSize: number;
  /** Ranges of the primary key walked at once, each on its own connection. */
  concurrency: number;
  /** Estimated rows to do; below two batches per range, one range is enough. */
  estimatedRows: number;
  signal?: AbortSignal;
  /** Runs inside the batch's transaction with the locked rows; its writes commit or roll back with them. */
  work(tx: Db, rows: WalkedRow[], batchNumber: number): Promise<Result>;
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
  const aliases = shape.fields.map((_, index) => `c${index}`);

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
        const selected = await queryRows<Record<string, Uint8Array | null> & { id: string; scope: string }>(
          tx,
          sql`select ${id}::text as id, ${scopeOf(shape.declaration)} as scope, ${walk.selection.values}
              from ${tableRef(shape.declaration)}
              where ${lower}${upper}(${walk.selection.needsWork})
              order by ${id}
              limit ${walk.batchSize}
              for update of t`,
        );
        if (selected.length === 0) return undefined;
        const rows = selected.map((row) => walkedRow(row, aliases));
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

/** A selected row as a WalkedRow; a plain loop, since it runs for every row of a maintenance run. */
function walkedRow(row: Record<string, Uint8Array | null> & { id: string; scope: string }, aliases: string[]): WalkedRow {
  const values = new Array<StoredBytes | null>(aliases.length);
  for (let index = 0; index < aliases.length; index += 1) {
    const value = row[aliases[index]!];
    values[index] = value === null || value === undefined ? null : (toBuffer(value) as StoredBytes);
  }
  return { id: row.id, scope: row.scope, values };
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
        from (select ${id} as id, row_number() over (order by ${id}) as n from ${tableRef(walk.shape.declaration)} where ${walk.selection.needsWork}) as s
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

/**
 * The column writes of one batch: each sealed field and its blind index get one array of new
 * values by row, null where a row keeps its value. Shared by encrypt-existing and
 * re-encryption; writeBatch takes `toWrites()`.
 */
export class BatchWrites {
  private readonly valueWrites: ColumnWrite[];
  private readonly indexWrites: Array<ColumnWrite | undefined>;

  constructor(
    private readonly shape: TableShape,
    rowCount: number,
  ) {
    const emptyWrite = (sqlName: string): ColumnWrite => ({ sqlName, values: new Array<SealedValue | BlindIndexValue | null>(rowCount).fill(null) });
    this.valueWrites = shape.fields.map((field) => emptyWrite(field.sqlName));
    this.indexWrites = shape.fields.map((field) => (field.blindIndex ? emptyWrite(field.blindIndex.sqlName) : undefined));
  }

  /** Places one row's freshly sealed values (sealRow's answer); calls `counted` for each field that got one. */
  place(rowIndex: number, sealed: Partial<Record<string, SealedValue | BlindIndexValue | null>>, counted: (fieldIndex: number) => void): void {
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
