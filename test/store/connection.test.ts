import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { sql } from 'drizzle-orm';
import { DatabaseUnavailableError } from '../../src/store/connect-with-backoff.js';
import { openDatabase, queryRows } from '../../src/store/connection.js';
import { DataDirLockedError } from '../../src/store/data-dir-lock.js';
import { migrate } from '../../src/store/migrate.js';
import { createTestDatabase, describeEachBackend } from '../helpers/database.js';

await describeEachBackend('migrations', (backend) => {
  test('apply once, and applying again changes nothing', async () => {
    const testDb = await createTestDatabase(backend, { migrated: false });
    try {
      await migrate(testDb.database);
      await migrate(testDb.database);
      const tables = await queryRows<{ table_name: string }>(
        testDb.database.db,
        sql`select table_name from information_schema.tables where table_schema = 'public' order by table_name`,
      );
      assert.ok(tables.some((row) => row.table_name === 'audit_events'));
      const applied = await queryRows<{ n: number }>(testDb.database.db, sql`select count(*)::int as n from drizzle.__drizzle_migrations`);
      assert.ok(applied[0]!.n >= 2);
    } finally {
      await testDb.cleanup();
    }
  });

  if (backend === 'postgres') {
    test('several instances migrating at once apply each migration exactly once', async () => {
      const testDb = await createTestDatabase('postgres', { migrated: false });
      const others = await Promise.all([1, 2, 3].map(() => openDatabase({ url: testDb.url!, maxConnections: 2 })));
      try {
        await Promise.all([testDb.database, ...others].map((database) => migrate(database)));
        const applied = await queryRows<{ hash: string; n: number }>(
          testDb.database.db,
          sql`select hash, count(*)::int as n from drizzle.__drizzle_migrations group by hash`,
        );
        assert.ok(applied.length >= 2);
        for (const row of applied) assert.equal(row.n, 1);
      } finally {
        await Promise.all(others.map((database) => database.close()));
        await testDb.cleanup();
      }
    });
  }
});

test('an unreachable PostgreSQL is retried with backoff, then refused with one clear line', async () => {
  // A port that accepts nothing: bind, note it, close.
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  const started = Date.now();
  await assert.rejects(openDatabase({ url: `postgres://user:hunter2@127.0.0.1:${port}/cg`, connectTimeoutSeconds: 2 }), (error: Error) => {
    assert.ok(error instanceof DatabaseUnavailableError);
    assert.equal(error.message, `database: could not reach PostgreSQL at 127.0.0.1:${port}/cg within 2s (ECONNREFUSED)`);
    return true;
  });
  const elapsed = Date.now() - started;
  assert.ok(elapsed >= 1_900 && elapsed < 8_000, `waited ${elapsed} ms`);
});

test('a PostgreSQL that comes up during the wait is used', async () => {
  // A TCP proxy that refuses at first, then forwards to the real server.
  const { ADMIN_DATABASE_URL, postgresUnavailableReason } = await import('../helpers/database.js');
  if (await postgresUnavailableReason()) return; // covered by the PostgreSQL suites' own gate
  const target = new URL(ADMIN_DATABASE_URL);
  const { connect } = await import('node:net');
  let accepting = false;
  const proxy = createServer((socket) => {
    if (!accepting) return socket.destroy();
    const upstream = connect(Number(target.port || 5432), target.hostname);
    socket.pipe(upstream).pipe(socket);
    socket.on('error', () => upstream.destroy());
    upstream.on('error', () => socket.destroy());
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const port = (proxy.address() as { port: number }).port;
  setTimeout(() => (accepting = true), 800);
  const url = new URL(ADMIN_DATABASE_URL);
  url.host = `127.0.0.1:${port}`;
  const database = await openDatabase({ url: url.toString(), connectTimeoutSeconds: 10 });
  await database.ping();
  await database.close();
  proxy.close();
});

test('the embedded database folder takes one process; a stale lock is taken over', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'cg-lock-'));
  const first = await openDatabase({ dataDir });
  const { DataDirLock } = await import('../../src/store/data-dir-lock.js');
  // Same folder from "another process": simulate by writing a live foreign pid (our parent).
  await first.close();
  const { writeFileSync } = await import('node:fs');
  writeFileSync(join(dataDir, 'ciphergate.pid'), String(process.ppid));
  assert.throws(() => DataDirLock.acquire(dataDir), (error: Error) => error instanceof DataDirLockedError && error.message.includes(`in use by process ${process.ppid}`));
  writeFileSync(join(dataDir, 'ciphergate.pid'), '999999999');
  const second = await openDatabase({ dataDir });
  await migrate(second);
  await second.close();
});
