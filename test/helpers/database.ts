import { randomBytes } from 'node:crypto';
import { describe } from 'node:test';
import { sql } from 'drizzle-orm';
import pg from 'pg';
import { openDatabase, queryRows, type Database, type Db } from '../../src/store/connection.js';
import { migrate } from '../../src/store/migrate.js';
import { serviceGate } from './services.js';

export type Backend = 'pglite' | 'postgres';

/** The server tests create their databases on; a superuser (CREATE/DROP DATABASE). */
export const ADMIN_DATABASE_URL = process.env.CIPHERGATE_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

let postgresProbe: Promise<string | undefined> | undefined;

/** undefined when PostgreSQL answers, else the reason it does not. */
export function postgresUnavailableReason(): Promise<string | undefined> {
  postgresProbe ??= (async () => {
    const client = new pg.Client({ connectionString: ADMIN_DATABASE_URL, connectionTimeoutMillis: 3000 });
    try {
      await client.connect();
      await client.query('select 1');
      return undefined;
    } catch (error) {
      return `cannot reach ${new URL(ADMIN_DATABASE_URL).host} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`;
    } finally {
      await client.end().catch(() => undefined);
    }
  })();
  return postgresProbe;
}

export interface TestDatabase {
  backend: Backend;
  database: Database;
  /** The URL of the fresh PostgreSQL database, for child processes; undefined on PGlite. */
  url?: string;
  cleanup(): Promise<void>;
}

/** A fresh, migrated, isolated database: in-memory PGlite, or a new PostgreSQL database. */
export async function createTestDatabase(backend: Backend, options: { migrated?: boolean } = {}): Promise<TestDatabase> {
  if (backend === 'pglite') {
    const database = await openDatabase({ dataDir: 'memory://' });
    if (options.migrated !== false) await migrate(database);
    return { backend, database, cleanup: () => database.close() };
  }
  const name = `cg_test_${randomBytes(6).toString('hex')}`;
  const url = await createPostgresDatabase(name);
  const database = await openDatabase({ url, connectTimeoutSeconds: 5, maxConnections: 5 });
  if (options.migrated !== false) await migrate(database);
  return {
    backend,
    database,
    url,
    async cleanup() {
      await database.close();
      await dropPostgresDatabase(name);
    },
  };
}

export async function createPostgresDatabase(name: string): Promise<string> {
  const admin = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
  await admin.connect();
  try {
    await admin.query(`create database "${name}"`);
  } finally {
    await admin.end();
  }
  const url = new URL(ADMIN_DATABASE_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

export async function dropPostgresDatabase(name: string): Promise<void> {
  const admin = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
  await admin.connect();
  try {
    await admin.query(`drop database if exists "${name}" with (force)`);
  } finally {
    await admin.end();
  }
}

/**
 * Declares the same suite once per storage backend, so every storage behaviour is proven on
 * the embedded default and on PostgreSQL.
 */
export async function describeEachBackend(title: string, body: (backend: Backend) => void): Promise<void> {
  describe(`${title} [pglite]`, () => body('pglite'));
  const gate = serviceGate('PostgreSQL', await postgresUnavailableReason());
  describe(`${title} [postgres]`, { skip: gate.skip }, () => body('postgres'));
}

/**
 * The rows of `tables` (each ordered by id) as one string, to compare before and after a step
 * that must change nothing. `last_used_at` is left out: reads touch it.
 */
export async function tablesState(source: { db: Db }, tables: readonly string[]): Promise<string> {
  const parts: string[] = [];
  for (const table of tables) {
    const rows = await queryRows<Record<string, unknown>>(source.db, sql.raw(`select * from ${table} order by id`));
    parts.push(JSON.stringify(rows.map(({ last_used_at: _used, ...rest }) => rest)));
  }
  return parts.join('\n');
}
