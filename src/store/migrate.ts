import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { migrate as migrateNodePg } from 'drizzle-orm/node-postgres/migrator';
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator';
import type { NodePgDatabase } from 'drizzle-orm/node-postgres';
import type { PgliteDatabase } from 'drizzle-orm/pglite';
import type { Database } from './connection.js';

/** drizzle/ sits at the package root; src/store and dist/store are both two levels below it. */
export const MIGRATIONS_FOLDER = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'drizzle');

/** Arbitrary but fixed: every Ciphergate process agrees on it, nothing else uses it. */
const MIGRATION_LOCK_KEY = 0x43474d49n; // "CGMI"

/**
 * Applies pending migrations. Several instances starting at once take the advisory lock in
 * turn; the later ones find nothing left to apply.
 */
export async function migrate(database: Database): Promise<void> {
  await database.withSessionLock(MIGRATION_LOCK_KEY, async (db) => {
    if (database.kind === 'postgres') {
      await migrateNodePg(db as unknown as NodePgDatabase, { migrationsFolder: MIGRATIONS_FOLDER });
    } else {
      await migratePglite(db as unknown as PgliteDatabase, { migrationsFolder: MIGRATIONS_FOLDER });
    }
  });
}
