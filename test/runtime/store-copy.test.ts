import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { sql } from 'drizzle-orm';
import pg from 'pg';
import { appendAuditEvent, verifyAuditChain } from '../../src/store/audit-trail.js';
import { openDatabase, queryRows, type Database } from '../../src/store/connection.js';
import { countRows, tablesInDependencyOrder, tablesWithRows } from '../../src/store/table-copy.js';
import { migrate } from '../../src/store/migrate.js';
import { loadConfig } from '../../src/config/load.js';
import { copyStore, StoreCopyError } from '../../src/runtime/store-copy.js';
import { assertNoLeaks, canary, dumpTables, findLeakingLines, needlesFor, phoneNeedles, type Needle } from '../helpers/canaries.js';
import { startChildServe, type ChildServe } from '../helpers/child-serve.js';
import { assertOneLine, runCliProcess, spawnCli, stopChildren } from '../helpers/cli.js';
import { ADMIN_DATABASE_URL, createPostgresDatabase, dropPostgresDatabase, postgresUnavailableReason } from '../helpers/database.js';
import { signInOverHttp } from '../helpers/http-sign-in.js';
import { freePort } from '../helpers/ports.js';
import { PUBLIC_URL, randomPhone, TENANT_FROM_NUMBER } from '../helpers/relay.js';
import { serviceGate } from '../helpers/services.js';
import { deliverTwilioSms } from '../helpers/twilio-delivery.js';
import { readMessagesOf } from '../helpers/read-messages.js';

/**
 * `ciphergate store copy --to postgres://…` the way docs/operations.md tells an operator to
 * move off the embedded store: a PGlite data dir with real traffic (a tenant, an admin, an API
 * key, signed webhook deliveries, audit entries) is copied into a new PostgreSQL database,
 * then `serve` on that database with the same key reads every message back and the admin
 * signs in. Each target is a throwaway database, dropped at the end.
 */
after(stopChildren);

const gate = serviceGate('PostgreSQL', await postgresUnavailableReason());
const SLUG = 'store-copy';
const ACCOUNT_SID = `AC${randomBytes(16).toString('hex')}`;
const AUTH_TOKEN = `twilio-token-${randomBytes(12).toString('hex')}`;
const ADMIN_EMAIL = 'copy-admin@example.com';
const ADMIN_PASSWORD = `Copy-to-postgres-${randomBytes(4).toString('hex')}`;
/** Audit entries added to the source so that the first table copied takes many pages. */
const EXTRA_AUDIT_ENTRIES = 1500;
const TIMEOUT_MS = 300_000;

describe('ciphergate store copy: the embedded store into an empty PostgreSQL', { skip: gate.skip, timeout: 1_200_000 }, () => {
  const root = mkdtempSync(join(tmpdir(), 'cg-store-copy-'));
  const live = join(root, 'live');
  const liveData = join(live, 'data');
  const env = { CIPHERGATE_DATA_DIR: liveData, CIPHERGATE_PUBLIC_URL: PUBLIC_URL, CIPHERGATE_LOG_LEVEL: 'warn' };
  const phones = [randomPhone(), randomPhone()];
  const bodies = [`Please move me to Tuesday ${canary()}`, `My policy number is ${canary()}`];
  const sourceMessages = new Map<string, string[]>();
  const databases: string[] = [];
  let apiKey: string;
  let needles: Needle[];
  let busyTarget: string;

  async function newTarget(): Promise<string> {
    const name = `cg_copy_${randomBytes(6).toString('hex')}`;
    databases.push(name);
    return createPostgresDatabase(name);
  }

  const copy = (to: string, extra: string[] = [], environment: Record<string, string> = env) =>
    runCliProcess(['store', 'copy', '--to', to, ...extra], { env: environment, cwd: live, timeoutMs: TIMEOUT_MS });

  before(async () => {
    mkdirSync(live);
    const tenant = JSON.stringify({ name: 'Store Copy Clinic', twilio: { accountSid: ACCOUNT_SID, authToken: AUTH_TOKEN, fromNumber: TENANT_FROM_NUMBER }, allowIps: { twilio: [], airtable: [], podium: [] } });
    const put = await runCliProcess(['tenants', 'put', SLUG], { env, cwd: live, stdin: tenant, timeoutMs: TIMEOUT_MS });
    assert.equal(put.code, 0, put.stderr);
    const created = await runCliProcess(['api-keys', 'create', '--tenant', SLUG, '--scope', 'conversations:read', '--name', 'copy-test'], { env, cwd: live, timeoutMs: TIMEOUT_MS });
    assert.equal(created.code, 0, created.stderr);
    apiKey = created.stdout.trim();
    const admin = await runCliProcess(['users', 'create', '--email', ADMIN_EMAIL, '--role', 'admin', '--password-stdin'], { env, cwd: live, stdin: `${ADMIN_PASSWORD}\n`, timeoutMs: TIMEOUT_MS });
    assert.equal(admin.code, 0, admin.stderr);

    const server = await startChildServe({ cwd: live, args: ['--no-workers'], env });
    try {
      for (const [index, body] of bodies.entries()) {
        const delivered = await deliverTwilioSms(server.url, { slug: SLUG, accountSid: ACCOUNT_SID, authToken: AUTH_TOKEN }, phones[index]!, body);
        assert.equal(delivered.status, 200, delivered.text);
      }
      for (const phone of phones) sourceMessages.set(phone, await readMessagesOf(server.url, apiKey, SLUG, phone));
      // A copy needs a still store: with the server running it is refused before the target is touched.
      busyTarget = await newTarget();
      const refused = await copy(busyTarget);
      assert.equal(refused.code, 1, refused.stdout + refused.stderr);
      assertOneLine(refused.stderr);
      assert.match(refused.stderr, new RegExp(`^ciphergate: the embedded store in ${liveData} is in use by process ${server.pid}; stop the server first\\n$`));
    } finally {
      assert.equal(await server.stop(), 0, server.tail());
    }

    const source = await openDatabase({ dataDir: liveData });
    try {
      for (let index = 0; index < EXTRA_AUDIT_ENTRIES; index += 1) {
        await appendAuditEvent(source.db, { actor: { type: 'system' }, action: 'keys.rotate', outcome: 'success', details: { index } });
      }
    } finally {
      await source.close();
    }
    needles = [
      ...phones.flatMap((phone, index) => phoneNeedles(`phone #${index + 1}`, phone)),
      ...bodies.flatMap((body, index) => needlesFor(`body #${index + 1}`, body)),
      ...needlesFor('twilio auth token', AUTH_TOKEN),
      ...needlesFor('api key', apiKey),
      ...needlesFor('admin email', ADMIN_EMAIL),
    ];
  });

  after(async () => {
    for (const name of databases) await dropPostgresDatabase(name);
    rmSync(root, { recursive: true, force: true });
  });

  
  /** Row counts of every table of the schema, source and target side by side. */
  async function assertSameCounts(targetUrl: string): Promise<void> {
    const source = await openDatabase({ dataDir: liveData });
    const target = await openDatabase({ url: targetUrl, maxConnections: 1 });
    try {
      for (const table of await tablesInDependencyOrder(source.db)) {
        assert.equal(await countRows(target.db, table.name), await countRows(source.db, table.name), `rows of ${table.name}`);
      }
      assert.equal(await countRows(target.db, 'audit_events') > EXTRA_AUDIT_ENTRIES, true);
      assert.equal((await verifyAuditChain(target.db)).intact, true);
      assert.equal(await markerPresent(target), false, 'the resume marker is removed after a verified copy');
    } finally {
      await target.close();
      await source.close();
    }
  }

  test('a server that holds the store refused the copy, and the target stayed untouched', async () => {
    const target = await openDatabase({ url: busyTarget, maxConnections: 1 });
    try {
      assert.deepEqual(await tablesWithRows(target.db), []);
      assert.equal(await markerPresent(target), false);
      const [tables] = await queryRows<{ n: number }>(target.db, sql`select count(*)::int as n from pg_tables where schemaname = 'public'`);
      assert.equal(tables!.n, 0, 'nothing was migrated into the target');
    } finally {
      await target.close();
    }
  });

  test('copies every table with ciphertext as is; serve on PostgreSQL with the same key reads the messages and the admin signs in', async () => {
    const to = await newTarget();
    const copied = await copy(to);
    assert.equal(copied.code, 0, copied.stderr);
    const password = new URL(to).password;
    assert.match(copied.stdout, /^finished the copy to postgres:\/\/[^:]+:\*\*\*@[^ ]+: \d+ tables, \d+ rows, row counts equal, audit chain intact \(\d+ entries\)\nnext steps:\n/);
    assert.ok(copied.stdout.includes(`CIPHERGATE_MASTER_KEY_FILE=${join(liveData, 'master.key')}`), copied.stdout);
    assert.match(copied.stderr, /^store copy: messages 2\/2$/m);
    assert.match(copied.stderr, new RegExp(`^store copy: audit_events \\d+/\\d+$`, 'm'));
    if (password) assert.ok(!(copied.stdout + copied.stderr).includes(`:${password}@`), 'the password is masked');
    assertNoLeaks(findLeakingLines(copied.stdout + copied.stderr, needles), 'the copy\u2019s output');
    await assertSameCounts(to);

    const target = await openDatabase({ url: to, maxConnections: 1 });
    try {
      assertNoLeaks(findLeakingLines((await dumpTables(target.db)).text, needles), 'the PostgreSQL copy');
    } finally {
      await target.close();
    }

    const serverData = join(root, 'postgres-server');
    mkdirSync(serverData, { mode: 0o700 });
    const server = await startChildServe({
      cwd: live,
      args: ['--no-workers'],
      env: { CIPHERGATE_DATA_DIR: serverData, CIPHERGATE_DATABASE_URL: to, CIPHERGATE_MASTER_KEY_FILE: join(liveData, 'master.key'), CIPHERGATE_PUBLIC_URL: PUBLIC_URL },
    });
    try {
      for (const phone of phones) assert.deepEqual(await readMessagesOf(server.url, apiKey, SLUG, phone), sourceMessages.get(phone), `messages of ${phone} on PostgreSQL`);
      const signedIn = await signInOverHttp(server.url, ADMIN_EMAIL, ADMIN_PASSWORD);
      assert.ok(signedIn.accessToken.length > 20);
    } finally {
      assert.equal(await server.stop(), 0, server.tail());
    }
    assertNoLeaks(findLeakingLines(server.logs(), needles), 'the PostgreSQL server\u2019s logs');
  });

  test('interrupted by kill -9 in the middle, the same command resumes and ends with no duplicate and no missing row', async () => {
    const to = await newTarget();
    const child = spawnCli(['store', 'copy', '--to', to, '--batch-size', '5'], { env, cwd: live });
    const probe = new pg.Client({ connectionString: to });
    await probe.connect();
    try {
      const deadline = Date.now() + TIMEOUT_MS;
      for (;;) {
        assert.equal(child.exitCode, null, `the copy ended before it was interrupted: ${child.output.stderr}`);
        assert.ok(Date.now() < deadline, 'the copy never got under way');
        const progress = await probe
          .query<{ copied: string }>(`select copied::text as copied from ciphergate_store_copy.progress where table_name = 'audit_events' and not done`)
          .catch(() => ({ rows: [] as Array<{ copied: string }> }));
        if (Number(progress.rows[0]?.copied ?? 0) >= 50) break;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      child.kill('SIGKILL');
      await new Promise((resolve) => child.once('exit', resolve));
      const [partial] = (await probe.query<{ n: number }>('select count(*)::int as n from audit_events')).rows;
      assert.ok(partial!.n > 0 && partial!.n < EXTRA_AUDIT_ENTRIES, `a part was copied: ${partial!.n}`);
    } finally {
      await probe.end();
    }

    const resumed = await copy(to);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stdout, /^resumed and finished the copy to /);
    await assertSameCounts(to);
  });

  test('a non-empty target is refused in one line and left as it was', async () => {
    const to = await newTarget();
    const client = new pg.Client({ connectionString: to });
    await client.connect();
    try {
      await client.query('create table keep_me (id int primary key); insert into keep_me values (1)');
      const refused = await copy(to);
      assert.equal(refused.code, 1, refused.stdout + refused.stderr);
      assertOneLine(refused.stderr);
      assert.match(refused.stderr, /^ciphergate: the target postgres:\/\/.* is not empty \(rows in keep_me\); copy into a new, empty database\n$/);
      const { rows } = await client.query<{ tablename: string }>(`select tablename from pg_tables where schemaname not in ('pg_catalog', 'information_schema')`);
      assert.deepEqual(
        rows.map((row) => row.tablename),
        ['keep_me'],
      );
    } finally {
      await client.end();
    }
  });

  test('a target holding an unfinished copy of another store is refused, not resumed', async () => {
    const to = await newTarget();
    const client = new pg.Client({ connectionString: to });
    await client.connect();
    try {
      await client.query(`create schema ciphergate_store_copy; create table ciphergate_store_copy.source (identity text primary key, started_at timestamptz not null default now());
        create table ciphergate_store_copy.progress (table_name text primary key, last_key text[], copied bigint not null, done boolean not null);
        insert into ciphergate_store_copy.source (identity) values ('pglite:1')`);
      const refused = await copy(to);
      assert.equal(refused.code, 1, refused.stdout + refused.stderr);
      assertOneLine(refused.stderr);
      assert.match(refused.stderr, /holds an unfinished copy of another store; copy into a new, empty database\n$/);
    } finally {
      await client.end();
    }
  });

  test('an unreachable target or a wrong password is one line naming the target with its password masked', async () => {
    const unreachable = `postgres://copier:unreachable-pw-${randomBytes(4).toString('hex')}@127.0.0.1:${await freePort()}/nowhere`;
    const wrongPassword = new URL(ADMIN_DATABASE_URL);
    wrongPassword.username = 'cg_no_such_role';
    wrongPassword.password = `wrong-pw-${randomBytes(4).toString('hex')}`;
    for (const to of [unreachable, wrongPassword.toString()]) {
      const refused = await copy(to);
      assert.equal(refused.code, 1, refused.stdout + refused.stderr);
      assertOneLine(refused.stderr);
      assert.match(refused.stderr, /^ciphergate: cannot open the target postgres:\/\/[^:]+:\*\*\*@/);
      assert.ok(!refused.stderr.includes(new URL(to).password), `password shown: ${refused.stderr}`);
    }
    const mysql = new URL('mysql://127.0.0.1/x');
    mysql.username = 'root';
    mysql.password = `not-postgres-${randomBytes(4).toString('hex')}`;
    const notPostgres = await copy(mysql.toString());
    assert.equal(notPostgres.code, 2, notPostgres.stderr);
    assertOneLine(notPostgres.stderr);
    assert.match(notPostgres.stderr, /^ciphergate: --to: expected a postgres:\/\/… URL, got mysql:\/\/root:\*\*\*@127\.0\.0\.1\/x\n$/);
    assert.ok(!notPostgres.stderr.includes(mysql.password), notPostgres.stderr);
  });

  test('a data dir without an embedded store is one line, and nothing is created there', async () => {
    const missing = join(root, 'no-such-data-dir');
    const refused = await copy(await newTarget(), [], { ...env, CIPHERGATE_DATA_DIR: missing });
    assert.equal(refused.code, 1, refused.stdout + refused.stderr);
    assertOneLine(refused.stderr);
    assert.equal(refused.stderr, `ciphergate: no embedded store in ${missing} (set CIPHERGATE_DATA_DIR to the data dir to copy)\n`);
    assert.equal(existsSync(missing), false);
  });
});

describe('store copy refuses a store at another migration level than this version', { skip: gate.skip, timeout: 300_000 }, () => {
  const root = mkdtempSync(join(tmpdir(), 'cg-store-copy-level-'));
  const dataDir = join(root, 'data');
  let target: string;
  const name = `cg_copy_${randomBytes(6).toString('hex')}`;

  before(async () => {
    const store = await openDatabase({ dataDir });
    try {
      await migrate(store);
    } finally {
      await store.close();
    }
    target = await createPostgresDatabase(name);
  });
  after(async () => {
    await dropPostgresDatabase(name);
    rmSync(root, { recursive: true, force: true });
  });

  /** Runs `change` on the store's migration journal, copies, and puts the journal back. */
  async function copyWithJournal(change: string[], undo: string[]): Promise<unknown> {
    const store = await openDatabase({ dataDir });
    for (const statement of change) await store.db.execute(sql.raw(statement));
    await store.close();
    try {
      return await copyStore({ config: loadConfig({ CIPHERGATE_DATA_DIR: dataDir }, root), targetUrl: target }).then(
        () => assert.fail('the copy should be refused'),
        (error: unknown) => error,
      );
    } finally {
      const again = await openDatabase({ dataDir });
      for (const statement of undo) await again.db.execute(sql.raw(statement));
      await again.close();
    }
  }

  test('behind: one line that says to migrate first', async () => {
    const refused = await copyWithJournal(
      [
        'create table drizzle.journal_aside as select * from drizzle.__drizzle_migrations where created_at = (select max(created_at) from drizzle.__drizzle_migrations)',
        'delete from drizzle.__drizzle_migrations where created_at = (select max(created_at) from drizzle.__drizzle_migrations)',
      ],
      ['insert into drizzle.__drizzle_migrations select * from drizzle.journal_aside', 'drop table drizzle.journal_aside'],
    );
    assert.ok(refused instanceof StoreCopyError);
    assert.equal(refused.code, 'migration-level');
    assert.match(refused.message, /^the embedded store is at migration (\d+) of (\d+); run ciphergate migrate first$/);
  });

  test('ahead: one line that says to copy with the version that migrated it; the target is not touched', async () => {
    const refused = await copyWithJournal(
      [`insert into drizzle.__drizzle_migrations (hash, created_at) values ('from-a-newer-version', 9999999999999)`],
      [`delete from drizzle.__drizzle_migrations where hash = 'from-a-newer-version'`],
    );
    assert.ok(refused instanceof StoreCopyError);
    assert.match(refused.message, /^the embedded store is at migration \d+, ahead of this Ciphergate's \d+; copy it with the version that migrated it$/);
    const client = new pg.Client({ connectionString: target });
    await client.connect();
    try {
      const { rows } = await client.query<{ n: number }>(`select count(*)::int as n from pg_tables where schemaname not in ('pg_catalog', 'information_schema')`);
      assert.equal(rows[0]!.n, 0, 'nothing was written to the target');
    } finally {
      await client.end();
    }
  });
});

async function markerPresent(database: Database): Promise<boolean> {
  const [row] = await queryRows<{ found: boolean }>(database.db, sql`select to_regnamespace('ciphergate_store_copy') is not null as found`);
  return row!.found;
}
