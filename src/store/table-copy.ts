/**
 * Table copying between two databases of the same schema, read from the catalog so that a new
 * table or column is copied without anyone listing it (used by `ciphergate store copy`).
 *
 * Every value travels as PostgreSQL's own text form (`col::text` out, `$n::type` in), the form
 * COPY uses: bytea, jsonb, arrays and microsecond timestamps come out exactly as they went in,
 * with no JavaScript type in between that could round or re-encode them. Sealed columns are
 * ciphertext like any other bytea: nothing is opened.
 */
import { sql, type SQL } from 'drizzle-orm';
import { queryRows, type Db } from './connection.js';

/** The schema our migrations create tables in. */
const SCHEMA = 'public';

export interface CopiedTable {
  name: string;
  /** Insertable columns (generated ones are left to the target) with their SQL types. */
  columns: Array<{ name: string; type: string }>;
  /** Primary-key columns in key order: the keyset the copy pages by. */
  primaryKey: string[];
}

export class TableCopyError extends Error {
  override readonly name = 'TableCopyError';
}

/**
 * Every table of the schema, parents before children (foreign keys from the catalog), ties by
 * name so the order is stable. A table without a primary key or a cycle of foreign keys cannot
 * be paged or ordered, and is refused rather than copied wrongly.
 */
export async function tablesInDependencyOrder(db: Db): Promise<CopiedTable[]> {
  const columnRows = await queryRows<{ table_name: string; column_name: string; column_type: string }>(
    db,
    sql`select c.relname as table_name, a.attname as column_name, format_type(a.atttypid, a.atttypmod) as column_type
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        join pg_attribute a on a.attrelid = c.oid
        where n.nspname = ${SCHEMA} and c.relkind in ('r', 'p') and a.attnum > 0 and not a.attisdropped and a.attgenerated = ''
        order by c.relname, a.attnum`,
  );
  const keyRows = await queryRows<{ table_name: string; column_name: string }>(
    db,
    sql`select c.relname as table_name, a.attname as column_name
        from pg_constraint k join pg_class c on c.oid = k.conrelid join pg_namespace n on n.oid = c.relnamespace
        cross join lateral unnest(k.conkey) with ordinality as key(attnum, position)
        join pg_attribute a on a.attrelid = c.oid and a.attnum = key.attnum
        where n.nspname = ${SCHEMA} and k.contype = 'p'
        order by c.relname, key.position`,
  );
  const foreignKeyRows = await queryRows<{ child: string; parent: string }>(
    db,
    sql`select distinct c.relname as child, p.relname as parent
        from pg_constraint k join pg_class c on c.oid = k.conrelid join pg_class p on p.oid = k.confrelid
        join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = ${SCHEMA} and k.contype = 'f'`,
  );
  const tables = new Map<string, CopiedTable>();
  for (const row of columnRows) {
    const table = tables.get(row.table_name) ?? { name: row.table_name, columns: [], primaryKey: [] };
    table.columns.push({ name: row.column_name, type: row.column_type });
    tables.set(row.table_name, table);
  }
  for (const row of keyRows) tables.get(row.table_name)?.primaryKey.push(row.column_name);
  for (const table of tables.values()) {
    if (table.primaryKey.length === 0) throw new TableCopyError(`table ${table.name} has no primary key, so it cannot be copied in pages`);
  }
  const parents = new Map<string, Set<string>>([...tables.keys()].map((name) => [name, new Set<string>()]));
  // A self-reference orders nothing between tables; rows of such a table would need their own order.
  for (const { child, parent } of foreignKeyRows) if (child !== parent) parents.get(child)?.add(parent);
  const ordered: CopiedTable[] = [];
  const placed = new Set<string>();
  while (placed.size < tables.size) {
    const ready = [...tables.keys()].filter((name) => !placed.has(name) && [...parents.get(name)!].every((parent) => placed.has(parent))).sort();
    if (ready.length === 0) {
      const left = [...tables.keys()].filter((name) => !placed.has(name)).sort();
      throw new TableCopyError(`the foreign keys of ${left.join(', ')} form a cycle, so no copy order exists`);
    }
    for (const name of ready) {
      placed.add(name);
      ordered.push(tables.get(name)!);
    }
  }
  return ordered;
}

export async function countRows(db: Db, table: string): Promise<number> {
  const [row] = await queryRows<{ count: string | number }>(db, sql`select count(*)::text as count from ${sql.identifier(table)}`);
  return Number(row!.count);
}

/** One page of a table: every value in its text form (null stays null), and the key of the last row. */
export interface RowBatch {
  rows: Array<Array<string | null>>;
  /** The primary key of the last row, in text form; the `after` of the next page. */
  lastKey: string[] | undefined;
}

/** The rows after `after` (a primary key in text form, or from the start), in key order. */
export async function readBatch(db: Db, table: CopiedTable, after: readonly string[] | undefined, limit: number): Promise<RowBatch> {
  const values = table.columns.map((column) => sql`${sql.identifier(column.name)}::text`);
  const keyIndexes = table.primaryKey.map((key) => table.columns.findIndex((column) => column.name === key));
  const keyColumns = sql.join(
    table.primaryKey.map((key) => sql.identifier(key)),
    sql`, `,
  );
  const where = after ? sql`where (${keyColumns}) > (${sql.join(keyValues(table, after), sql`, `)})` : sql``;
  const rows = await queryRows<{ row: Array<string | null> }>(
    db,
    sql`select array[${sql.join(values, sql`, `)}] as row from ${sql.identifier(table.name)} ${where} order by ${keyColumns} limit ${limit}`,
  );
  const last = rows.at(-1)?.row;
  return { rows: rows.map((row) => row.row), lastKey: last ? keyIndexes.map((index) => last[index]!) : undefined };
}

/** Inserts rows read by `readBatch` from the same table of the same schema. */
export async function insertBatch(db: Db, table: CopiedTable, rows: ReadonlyArray<ReadonlyArray<string | null>>): Promise<void> {
  if (rows.length === 0) return;
  const columns = sql.join(
    table.columns.map((column) => sql.identifier(column.name)),
    sql`, `,
  );
  const tuples = rows.map((row) => sql`(${sql.join(row.map((value, index) => castTo(value, table.columns[index]!.type)), sql`, `)})`);
  // OVERRIDING SYSTEM VALUE: identity columns keep the source's values (a no-op for other tables).
  await db.execute(sql`insert into ${sql.identifier(table.name)} (${columns}) overriding system value values ${sql.join(tuples, sql`, `)}`);
}

/** How many rows fit one insert: PostgreSQL takes at most 65535 parameters per statement. */
export function rowsPerInsert(table: CopiedTable, wanted: number): number {
  return Math.max(1, Math.min(wanted, Math.floor(60_000 / table.columns.length)));
}

export interface SequenceState {
  name: string;
  /** null: never used (the next value is the start). */
  lastValue: string | null;
}

/** The sequences of the schema (serial and identity columns' included) and where each stands. */
export async function sequenceStates(db: Db): Promise<SequenceState[]> {
  const rows = await queryRows<{ name: string; last_value: string | null }>(
    db,
    sql`select sequencename as name, last_value::text as last_value from pg_sequences where schemaname = ${SCHEMA} order by sequencename`,
  );
  return rows.map((row) => ({ name: row.name, lastValue: row.last_value }));
}

/** Sets each sequence where the source's stood, so the next id the target hands out is the source's next. */
export async function applySequenceStates(db: Db, states: readonly SequenceState[]): Promise<void> {
  for (const state of states) {
    const sequence = sql`format('%I.%I', ${SCHEMA}::text, ${state.name}::text)::regclass`;
    if (state.lastValue === null) {
      await db.execute(sql`select setval(${sequence}, (select start_value from pg_sequences where schemaname = ${SCHEMA} and sequencename = ${state.name}), false)`);
    } else {
      await db.execute(sql`select setval(${sequence}, ${state.lastValue}::bigint, true)`);
    }
  }
}

/** Tables of any user schema holding at least one row; drizzle's own migration journal does not count. */
export async function tablesWithRows(db: Db): Promise<string[]> {
  const tables = await queryRows<{ schema_name: string; table_name: string }>(
    db,
    sql`select n.nspname as schema_name, c.relname as table_name from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where c.relkind in ('r', 'p') and n.nspname not in ('pg_catalog', 'information_schema', 'drizzle') and n.nspname not like 'pg\_%'
        order by n.nspname, c.relname`,
  );
  const withRows: string[] = [];
  for (const table of tables) {
    const [row] = await queryRows<{ found: boolean }>(
      db,
      sql`select exists (select 1 from ${sql.identifier(table.schema_name)}.${sql.identifier(table.table_name)}) as found`,
    );
    if (row?.found) withRows.push(table.schema_name === SCHEMA ? table.table_name : `${table.schema_name}.${table.table_name}`);
  }
  return withRows;
}

function keyValues(table: CopiedTable, key: readonly string[]): SQL[] {
  return table.primaryKey.map((name, index) => castTo(key[index]!, table.columns.find((column) => column.name === name)!.type));
}

function castTo(value: string | null, type: string): SQL {
  return sql`${value}::${sql.raw(type)}`;
}
