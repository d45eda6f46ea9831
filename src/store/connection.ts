import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { drizzle as drizzleNodePg } from 'drizzle-orm/node-postgres';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import type { SQL } from 'drizzle-orm';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import pg from 'pg';
import { PRIVATE_DIR_MODE, refuseSharedPath, restrictTree } from '../config/private-paths.js';
import type { Logger } from '../log/logger.js';
import { DataDirLock } from './data-dir-lock.js';
import { connectWithBackoff } from './connect-with-backoff.js';
import { DatabaseOutageLog } from './connection-errors.js';
import * as schema from './schema.js';

export type Schema = typeof schema;
/** The query builder both backends share; a transaction (`tx`) is one of these too. */
export type Db = PgDatabase<PgQueryResultHKT, Schema>;

/**
 * One connection type for both backends. Callers never branch on `kind`; it exists for logs,
 * `/readyz` details and the few operations (advisory locks across processes) whose meaning
 * differs.
 */
export interface Database {
  readonly kind: 'pglite' | 'postgres';
  readonly db: Db;
  /** Runs `fn` holding a session-level advisory lock, on one connection, across processes. */
  withSessionLock<T>(lockKey: bigint, fn: (db: Db) => Promise<T>): Promise<T>;
  /** Cheap round trip used by `/readyz`. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export interface OpenDatabaseOptions {
  /** A PostgreSQL URL; without it PGlite is used. */
  url?: string;
  /** PGlite data folder, or `memory://` for an in-memory database (tests). */
  dataDir?: string;
  connectTimeoutSeconds?: number;
  /** Pool size for PostgreSQL. */
  maxConnections?: number;
  logger?: Logger;
}

export async function openDatabase(options: OpenDatabaseOptions): Promise<Database> {
  if (options.url) return openPostgres(options.url, options);
  return openPglite(options.dataDir ?? 'memory://');
}

async function openPostgres(url: string, options: OpenDatabaseOptions): Promise<Database> {
  const pool = new pg.Pool({
    connectionString: url,
    max: options.maxConnections ?? 10,
    connectionTimeoutMillis: 5_000,
    application_name: 'ciphergate',
  });
  const outage = new DatabaseOutageLog(options.logger, describePostgres(url));
  observeConnections(pool, outage);
  await connectWithBackoff(
    async () => {
      await pool.query('select 1');
    },
    { timeoutSeconds: options.connectTimeoutSeconds ?? 30, what: describePostgres(url), logger: options.logger },
  ).catch(async (error: unknown) => {
    await pool.end().catch(() => undefined);
    throw error;
  });
  const db: Db = drizzleNodePg({ client: pool, schema });
  let closed = false;
  return {
    kind: 'postgres',
    db,
    async withSessionLock(lockKey, fn) {
      const client = await pool.connect();
      try {
        await client.query('select pg_advisory_lock($1)', [lockKey.toString()]);
        try {
          return await fn(drizzleNodePg({ client, schema }));
        } finally {
          await client.query('select pg_advisory_unlock($1)', [lockKey.toString()]);
        }
      } finally {
        client.release();
      }
    },
    async ping() {
      try {
        await pool.query('select 1');
      } catch (error) {
        outage.failed(error);
        throw error;
      }
      outage.succeeded();
    },
    async close() {
      if (closed) return;
      closed = true;
      await pool.end();
    },
  };
}

async function openPglite(dataDir: string): Promise<Database> {
  const inMemory = dataDir.startsWith('memory://');
  let lock: DataDirLock | undefined;
  let location = dataDir;
  if (!inMemory) {
    // A folder others can open exposes everything in it, whatever the files' own modes: the
    // operator made it so (or an old version did), and only the operator should loosen it.
    refuseSharedPath(dataDir, 'data directory');
    mkdirSync(dataDir, { recursive: true, mode: PRIVATE_DIR_MODE });
    // PGlite is single-process: two processes on one folder would corrupt it, so the second
    // one is refused with a clear message instead.
    lock = DataDirLock.acquire(dataDir);
    location = join(dataDir, 'pgdata');
    mkdirSync(location, { recursive: true, mode: PRIVATE_DIR_MODE });
  }
  let client: PGlite;
  try {
    client = await PGlite.create(location);
  } catch (error) {
    lock?.release();
    throw error;
  }
  // PGlite's file system (emscripten NODEFS) writes its files 0666 whatever the umask: made
  // private here at open (which also repairs a folder written before this check) and again at
  // close for the files it made while running.
  if (!inMemory) {
    try {
      restrictTree(location);
    } catch (error) {
      await client.close().catch(() => undefined);
      lock?.release();
      throw error;
    }
  }
  const db: Db = drizzlePglite({ client, schema });
  const sessionLocks = new Map<bigint, Promise<void>>();
  let closed = false;
  return {
    kind: 'pglite',
    db,
    // One process owns the data folder and PGlite has a single session, in which advisory
    // locks are re-entrant; so the lock is an in-process queue per key instead.
    async withSessionLock(lockKey, fn) {
      const previous = sessionLocks.get(lockKey) ?? Promise.resolve();
      const run = previous.then(() => fn(db));
      const settled = run.then(
        () => undefined,
        () => undefined,
      );
      sessionLocks.set(lockKey, settled);
      try {
        return await run;
      } finally {
        if (sessionLocks.get(lockKey) === settled) sessionLocks.delete(lockKey);
      }
    },
    async ping() {
      if (closed) throw new Error('database is closed');
      await client.query('select 1');
    },
    async close() {
      if (closed) return;
      closed = true;
      try {
        await client.close();
        if (!inMemory) restrictTree(location);
      } finally {
        lock?.release();
      }
    },
  };
}

/**
 * Keeps a lost connection from ending the process and from leaking, and feeds the outage log.
 *
 * - node-postgres emits 'error' on a client whose server goes away (57P01 on a restart). The
 *   pool listens only while the client is idle; one checked out (a transaction, a session lock)
 *   has no listener, and an unhandled 'error' ends the process. Every client gets one for life.
 * - Drizzle's `transaction()` checks a client out and sends BEGIN before its try/finally: when
 *   BEGIN fails on a dead connection the client is never released, and the pool runs dry. A
 *   checked-out client whose connection ends is therefore released (as broken, so the pool
 *   drops it), and a later release by its borrower is ignored instead of throwing.
 */
function observeConnections(pool: pg.Pool, outage: DatabaseOutageLog): void {
  pool.on('error', (error) => outage.failed(error));
  pool.on('connect', (client) => {
    client.on('error', (error) => outage.failed(error));
    outage.connectionOpened();
  });
  type Release = (error?: Error | boolean) => void;
  const connect = pool.connect.bind(pool) as (callback?: (error: Error | undefined, client: pg.PoolClient | undefined, done: Release) => void) => Promise<pg.PoolClient> | void;
  const observed = (callback?: (error: Error | undefined, client: pg.PoolClient | undefined, done: Release) => void) => {
    // The callback form is pool.query's own: it releases on every path already.
    if (callback) {
      return connect((error, client, done) => {
        if (error) outage.failed(error);
        callback(error, client, done);
      });
    }
    return (connect() as Promise<pg.PoolClient>).then(
      (client) => releaseWhenLost(client),
      (error: unknown) => {
        outage.failed(error);
        throw error;
      },
    );
  };
  pool.connect = observed as typeof pool.connect;
}

function releaseWhenLost(client: pg.PoolClient): pg.PoolClient {
  const release = client.release.bind(client) as (error?: Error | boolean) => void;
  let released = false;
  const onEnd = () => client.release(new Error('the database connection ended while checked out'));
  client.once('end', onEnd);
  client.release = (error?: Error | boolean) => {
    if (released) return;
    released = true;
    client.removeListener('end', onEnd);
    release(error);
  };
  return client;
}

/** host:port/database, never the password. */
export function describePostgres(url: string): string {
  try {
    const parsed = new URL(url);
    return `PostgreSQL at ${parsed.hostname}:${parsed.port || '5432'}${parsed.pathname}`;
  } catch {
    return 'PostgreSQL';
  }
}

/** Rows of a raw SQL statement; both drivers answer `{ rows }`, which Drizzle's shared type hides. */
export async function queryRows<Row>(db: Db, statement: SQL): Promise<Row[]> {
  const result = (await db.execute(statement)) as unknown as { rows: Row[] };
  return result.rows;
}
