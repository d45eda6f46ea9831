/**
 * The resume marker of `ciphergate store copy`, kept in the target database itself: which source
 * is being copied and, per table, the primary key of the last row copied. It is written before
 * anything else and each page of rows commits together with its progress row, so after a crash
 * the copy continues exactly after the last committed page: no row twice, none missed. It lives
 * in a schema of its own, so it is never mistaken for application data, and is dropped when
 * the copy has been verified.
 */
import { sql } from 'drizzle-orm';
import { queryRows, type Db } from './connection.js';

const MARKER_SCHEMA = 'ciphergate_store_copy';

export interface CopyMarker {
  /** Identifies the source store (see runtime/store-copy.ts). */
  sourceIdentity: string;
  /** Per table: the last key copied (text form) and how many rows so far; absent: not started. */
  progress: Map<string, { lastKey: string[] | undefined; copied: number; done: boolean }>;
}

/** The marker of an unfinished copy in `db`, or undefined when there is none. */
export async function readCopyMarker(db: Db): Promise<CopyMarker | undefined> {
  const [exists] = await queryRows<{ found: boolean }>(db, sql`select to_regclass(${`${MARKER_SCHEMA}.source`}) is not null as found`);
  if (!exists?.found) return undefined;
  const [source] = await queryRows<{ identity: string }>(db, sql`select identity from ${sql.identifier(MARKER_SCHEMA)}.source limit 1`);
  const rows = await queryRows<{ table_name: string; last_key: string[] | null; copied: string; done: boolean }>(
    db,
    sql`select table_name, last_key, copied::text as copied, done from ${sql.identifier(MARKER_SCHEMA)}.progress`,
  );
  return {
    sourceIdentity: source?.identity ?? '',
    progress: new Map(rows.map((row) => [row.table_name, { lastKey: row.last_key ?? undefined, copied: Number(row.copied), done: row.done }])),
  };
}

/** Writes the marker: the first thing a new copy puts into its target. */
export async function createCopyMarker(db: Db, sourceIdentity: string): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.execute(sql`create schema ${sql.identifier(MARKER_SCHEMA)}`);
    await tx.execute(sql`create table ${sql.identifier(MARKER_SCHEMA)}.source (identity text primary key, started_at timestamptz not null default now())`);
    await tx.execute(
      sql`create table ${sql.identifier(MARKER_SCHEMA)}.progress (table_name text primary key, last_key text[], copied bigint not null, done boolean not null)`,
    );
    await tx.execute(sql`insert into ${sql.identifier(MARKER_SCHEMA)}.source (identity) values (${sourceIdentity})`);
  });
}

/** Records a page as copied; call it in the transaction that inserted the page. */
export async function recordCopyProgress(tx: Db, table: string, progress: { lastKey: string[] | undefined; copied: number; done: boolean }): Promise<void> {
  const lastKey = progress.lastKey ? sql`array[${sql.join(progress.lastKey.map((part) => sql`${part}`), sql`, `)}]::text[]` : sql`null`;
  await tx.execute(
    sql`insert into ${sql.identifier(MARKER_SCHEMA)}.progress (table_name, last_key, copied, done) values (${table}, ${lastKey}, ${progress.copied}, ${progress.done})
        on conflict (table_name) do update set last_key = excluded.last_key, copied = excluded.copied, done = excluded.done`,
  );
}

/** Drops the marker once the copy is verified. */
export async function removeCopyMarker(db: Db): Promise<void> {
  await db.execute(sql`drop schema if exists ${sql.identifier(MARKER_SCHEMA)} cascade`);
}
