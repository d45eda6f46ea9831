import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { openDatabase } from '../../src/store/connection.js';
import { assertOneLine, logLines, runCliProcess, spawnCli, stopChildren, waitForOutput } from '../helpers/cli.js';
import { createTestDatabase, postgresUnavailableReason } from '../helpers/database.js';
import { serviceGate } from '../helpers/services.js';

after(stopChildren);

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'cg-cli-'));
}

describe('usage', () => {
  test('--help lists the commands and exits 0', async () => {
    const result = await runCliProcess(['--help'], { env: {}, cwd: tempDir() });
    assert.equal(result.code, 0);
    for (const command of ['serve', 'migrate', 'audit']) assert.match(result.stdout, new RegExp(`\\b${command}\\b`));
  });

  test('--help works on subcommands', async () => {
    const result = await runCliProcess(['audit', 'verify', '--help'], { env: {}, cwd: tempDir() });
    assert.equal(result.code, 0);
    assert.match(result.stdout, /--expect-entry/);
  });

  test('no command, an unknown command or an unknown option exit 2', async () => {
    const cwd = tempDir();
    assert.equal((await runCliProcess([], { env: {}, cwd })).code, 2);
    const unknown = await runCliProcess(['launch'], { env: {}, cwd });
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown command 'launch'/);
    const badOption = await runCliProcess(['serve', '--bogus'], { env: {}, cwd });
    assert.equal(badOption.code, 2);
    assert.match(badOption.stderr, /unknown option '--bogus'/);
    const badValue = await runCliProcess(['audit', 'verify', '--expect-entry', 'xyz'], { env: {}, cwd });
    assert.equal(badValue.code, 2);
    assert.equal(badValue.stderr, 'ciphergate: --expect-entry: expected 64 lower-case hex characters\n');
  });

  test('bad configuration exits 1 with one line naming the variable', async () => {
    const result = await runCliProcess(['migrate'], { env: { CIPHERGATE_PORT: 'abc' }, cwd: tempDir() });
    assert.equal(result.code, 1);
    assert.equal(result.stderr, 'ciphergate: CIPHERGATE_PORT: expected an integer 0-65535, got "abc"\n');
    const serve = await runCliProcess(['serve'], { env: { CIPHERGATE_KEY_PROVIDER: 'vault' }, cwd: tempDir() });
    assert.equal(serve.code, 1);
    assert.equal(serve.stderr, 'ciphergate: CIPHERGATE_KEY_PROVIDER: expected one of local, pkcs11, got "vault"\n');
  });
});

describe('migrate and audit verify on the embedded database', () => {
  test('migrate creates the database; verify reports an intact chain, then the first broken entry', async () => {
    const cwd = tempDir();
    const migrated = await runCliProcess(['migrate'], { env: {}, cwd });
    assert.equal(migrated.code, 0, migrated.stderr);
    assert.equal(migrated.stdout, 'migrations applied (pglite)\n');

    const database = await openDatabase({ dataDir: join(cwd, '.ciphergate') });
    const { appendAuditEvent } = await import('../../src/store/audit-trail.js');
    for (let index = 0; index < 3; index += 1) {
      await appendAuditEvent(database.db, { actor: { type: 'system' }, action: 'job.retry', outcome: 'success', details: { index } });
    }
    await database.close();

    const intact = await runCliProcess(['audit', 'verify'], { env: {}, cwd });
    assert.equal(intact.code, 0, intact.stderr);
    const head = /head ([0-9a-f]{64})/.exec(intact.stdout)?.[1];
    assert.match(intact.stdout, /^audit chain intact: 3 entries, head [0-9a-f]{64}\n$/);
    assert.equal((await runCliProcess(['audit', 'verify', '--expect-entry', head!], { env: {}, cwd })).code, 0);

    const tampered = await openDatabase({ dataDir: join(cwd, '.ciphergate') });
    await tampered.db.transaction(async (tx) => {
      await tx.execute(sql`set local session_replication_role = replica`);
      await tx.execute(sql`update audit_events set outcome = 'failure' where seq = 2`);
    });
    await tampered.close();
    const broken = await runCliProcess(['audit', 'verify'], { env: {}, cwd });
    assert.equal(broken.code, 1);
    assertOneLine(broken.stderr);
    assert.match(broken.stderr, /^ciphergate: audit chain broken at entry seq 2 \(id [0-9a-f-]{36}\): its content does not match its hash/);
  });

  test('a head recorded earlier that is no longer in the chain fails verify', async () => {
    const cwd = tempDir();
    assert.equal((await runCliProcess(['migrate'], { env: {}, cwd })).code, 0);
    const result = await runCliProcess(['audit', 'verify', '--expect-entry', 'a'.repeat(64)], { env: {}, cwd });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /no longer contains entry a{64}: entries were cut off the end/);
  });
});

describe('serve', () => {
  async function startServe(env: Record<string, string>, cwd: string) {
    const child = spawnCli(['serve'], { env: { CIPHERGATE_PORT: '0', ...env }, cwd });
    // Start-up time is measured by bench/http-healthz.bench.ts, not asserted here: a loaded CI
    // machine must not turn a timing into a failure.
    await waitForOutput(child, (output) => output.stdout.includes('"msg":"ciphergate listening"'), 60_000);
    const listening = logLines(child.output.stdout).find((line) => line.msg === 'ciphergate listening')!;
    return { child, base: `http://127.0.0.1:${listening.port as number}` };
  }

  async function stop(child: ReturnType<typeof spawnCli>): Promise<number | null> {
    child.kill('SIGTERM');
    const [code] = (await once(child, 'exit')) as [number | null];
    return code;
  }

  test('starts on the embedded database, answers probes, drains on SIGTERM, and reopens the same data', async () => {
    const cwd = tempDir();
    const first = await startServe({}, cwd);
    assert.equal((await fetch(`${first.base}/healthz`)).status, 200);
    const ready = await fetch(`${first.base}/readyz`);
    assert.equal(ready.status, 200);
    assert.deepEqual(await ready.json(), {
      status: 'ready',
      checks: { database: 'ok', keys: 'ok', queue: 'ok' },
      details: { queue: { pending: 0, due: 0, running: 0, dead: 0, oldestDueSeconds: 0 } },
    });
    assert.equal(await stop(first.child), 0);
    assert.match(first.child.output.stdout, /"msg":"stopped cleanly"/);

    const second = await startServe({}, cwd);
    assert.equal((await fetch(`${second.base}/healthz`)).status, 200);
    assert.equal(await stop(second.child), 0);

    // Both runs wrote start and stop events into the same, intact chain.
    const verify = await runCliProcess(['audit', 'verify'], { env: {}, cwd });
    assert.equal(verify.code, 0, verify.stderr);
    assert.match(verify.stdout, /intact: 4 entries/);
  });

  test('a second process on the same embedded database is refused with one line', async () => {
    const cwd = tempDir();
    const first = await startServe({}, cwd);
    try {
      const second = await runCliProcess(['serve'], { env: { CIPHERGATE_PORT: '0' }, cwd });
      assert.equal(second.code, 1);
      assertOneLine(second.stderr);
      assert.match(second.stderr, new RegExp(`^ciphergate: database: .* is in use by process ${first.child.pid}`));
    } finally {
      assert.equal(await stop(first.child), 0);
    }
  });

  test('nothing secret reaches stdout or stderr when starting with secrets set', async () => {
    const cwd = tempDir();
    const masterKey = Buffer.alloc(32, 9).toString('base64');
    const run = await startServe({ CIPHERGATE_MASTER_KEY: masterKey, CIPHERGATE_LOG_LEVEL: 'trace' }, cwd);
    await fetch(`${run.base}/healthz?token=canary-token-123`, { headers: { authorization: 'Bearer canary-bearer-456' } });
    assert.equal(await stop(run.child), 0);
    const everything = run.child.output.stdout + run.child.output.stderr;
    for (const secret of [masterKey, 'canary-token-123', 'canary-bearer-456']) assert.equal(everything.includes(secret), false, secret);
  });
});

describe('serve on PostgreSQL', async () => {
  const gate = serviceGate('PostgreSQL', await postgresUnavailableReason());

  test('the same command runs on PostgreSQL with the same migrations', { skip: gate.skip }, async () => {
    const testDb = await createTestDatabase('postgres', { migrated: false });
    await testDb.database.close();
    try {
      const cwd = tempDir();
      const masterKey = Buffer.alloc(32, 3).toString('base64');
      const child = spawnCli(['serve'], { env: { CIPHERGATE_PORT: '0', CIPHERGATE_DATABASE_URL: testDb.url!, CIPHERGATE_MASTER_KEY: masterKey }, cwd });
      await waitForOutput(child, (output) => output.stdout.includes('"msg":"ciphergate listening"'));
      const port = logLines(child.output.stdout).find((line) => line.msg === 'ciphergate listening')!.port as number;
      assert.equal((await fetch(`http://127.0.0.1:${port}/readyz`)).status, 200);
      child.kill('SIGTERM');
      assert.equal(((await once(child, 'exit')) as [number])[0], 0);
      const verify = await runCliProcess(['audit', 'verify'], { env: { CIPHERGATE_DATABASE_URL: testDb.url! }, cwd });
      assert.equal(verify.code, 0, verify.stderr);
      assert.match(verify.stdout, /intact: 2 entries/);
    } finally {
      await testDb.cleanup();
    }
  });

  test('a server deployment without a master key is refused instead of generating one', { skip: gate.skip }, async () => {
    const testDb = await createTestDatabase('postgres', { migrated: false });
    await testDb.database.close();
    try {
      const result = await runCliProcess(['serve'], { env: { CIPHERGATE_PORT: '0', CIPHERGATE_DATABASE_URL: testDb.url! }, cwd: tempDir() });
      assert.equal(result.code, 1);
      assert.equal(result.stderr, 'ciphergate: no master key: set CIPHERGATE_MASTER_KEY or CIPHERGATE_MASTER_KEY_FILE\n');
    } finally {
      await testDb.cleanup();
    }
  });

  test('an unreachable PostgreSQL stops start-up with exit 1 and one line, without the password', async () => {
    const result = await runCliProcess(['serve'], {
      env: { CIPHERGATE_DATABASE_URL: 'postgres://cg:hunter2@127.0.0.1:1/cg', CIPHERGATE_DATABASE_CONNECT_TIMEOUT_SECONDS: '1' },
      cwd: tempDir(),
    });
    assert.equal(result.code, 1);
    assert.equal(result.stderr.split('\n').filter((line) => line.startsWith('ciphergate:')).length, 1);
    assert.match(result.stderr, /ciphergate: database: could not reach PostgreSQL at 127\.0\.0\.1:1\/cg within 1s \(ECONNREFUSED\)/);
    assert.equal((result.stdout + result.stderr).includes('hunter2'), false);
  });
});
