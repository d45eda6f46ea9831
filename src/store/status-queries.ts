import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { desc, isNull, sql } from 'drizzle-orm';
import { queryRows, type Db } from './connection.js';
import { MIGRATIONS_FOLDER } from './migrate.js';
import { signingKeys } from './schema.js';

/** Where the schema stands: migrations this build ships, and how many the database has applied. */
export interface MigrationLevel {
  applied: number;
  available: number;
  /** The tag of the newest migration this build ships (e.g. `0004_relay`). */
  latest: string;
}

export async function migrationLevel(db: Db): Promise<MigrationLevel> {
  const journal = JSON.parse(readFileSync(join(MIGRATIONS_FOLDER, 'meta', '_journal.json'), 'utf8')) as { entries: Array<{ tag: string }> };
  // Drizzle's own bookkeeping table; absent before the first migration.
  const [present] = await queryRows<{ exists: boolean }>(db, sql`select to_regclass('drizzle.__drizzle_migrations') is not null as exists`);
  const applied = present?.exists ? Number((await queryRows<{ count: string }>(db, sql`select count(*) as count from drizzle.__drizzle_migrations`))[0]?.count ?? 0) : 0;
  return { applied, available: journal.entries.length, latest: journal.entries.at(-1)?.tag ?? '' };
}

/** The token-signing key that signs now (kid and age), read without opening its sealed half. */
export async function activeSigningKey(db: Db): Promise<{ kid: string; createdAt: Date } | undefined> {
  const [row] = await db
    .select({ kid: signingKeys.kid, createdAt: signingKeys.createdAt })
    .from(signingKeys)
    .where(isNull(signingKeys.retiredAt))
    .orderBy(desc(signingKeys.createdAt))
    .limit(1);
  return row;
}
