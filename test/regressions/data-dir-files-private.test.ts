import assert from 'node:assert/strict';
import { chmodSync, lstatSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { openDatabase } from '../../src/store/connection.js';
import { assertOneLine, runCliProcess, stopChildren } from '../helpers/cli.js';

// The embedded database and its generated KEK live in CIPHERGATE_DATA_DIR. PGlite wrote its
// files 0666 into a data dir that already existed, so anyone on the host could copy the
// database; and a data dir or key file others could open was used anyway.

after(stopChildren);
const root = mkdtempSync(join(tmpdir(), 'cg-private-data-'));
after(() => rmSync(root, { recursive: true, force: true }));

let dirs = 0;
/** An existing folder (as an operator or a volume mount makes it) with the given mode. */
function existingDir(mode: number): string {
  dirs += 1;
  const dir = mkdtempSync(join(root, `data-${dirs}-`));
  chmodSync(dir, mode);
  return dir;
}

/** Every path under `dir` (itself included) that group or others have any permission on. */
function sharedPaths(dir: string): string[] {
  const found: string[] = [];
  const visit = (path: string) => {
    const stats = lstatSync(path);
    if ((stats.mode & 0o077) !== 0) found.push(`${(stats.mode & 0o777).toString(8)} ${path}`);
    if (stats.isDirectory()) for (const entry of readdirSync(path)) visit(join(path, entry));
  };
  visit(dir);
  return found;
}

function countFiles(dir: string): number {
  return readdirSync(dir, { recursive: true }).length;
}

describe('the data dir and everything in it are the process user\u2019s alone', { timeout: 300_000 }, () => {
  test('a command on an existing private data dir leaves every file 0600 and every folder 0700 (database and generated key)', async () => {
    const dataDir = existingDir(0o700);
    const result = await runCliProcess(['keys', 'rotate'], { env: { CIPHERGATE_DATA_DIR: dataDir }, cwd: root, timeoutMs: 240_000 });
    assert.equal(result.code, 0, result.stderr);
    assert.ok(countFiles(join(dataDir, 'pgdata')) > 100, 'the embedded database was created');
    assert.equal(lstatSync(join(dataDir, 'master.key')).mode & 0o777, 0o600);
    assert.deepEqual(sharedPaths(dataDir), []);
  });

  test('opened in-process under a permissive umask (022), the database files are still private', async () => {
    // The CLI sets umask 077; the explicit modes must hold without it.
    const previous = process.umask(0o022);
    try {
      const dataDir = existingDir(0o700);
      const database = await openDatabase({ dataDir });
      assert.deepEqual(sharedPaths(dataDir), [], 'private while open');
      await database.close();
      assert.ok(countFiles(dataDir) > 100);
      assert.deepEqual(sharedPaths(dataDir), [], 'private after close');
    } finally {
      process.umask(previous);
    }
  });

  test('a database folder written with shared modes (by an older version) is made private when opened', async () => {
    const dataDir = existingDir(0o700);
    await (await openDatabase({ dataDir })).close();
    const pgVersion = join(dataDir, 'pgdata', 'PG_VERSION');
    chmodSync(pgVersion, 0o666);
    chmodSync(join(dataDir, 'pgdata', 'base'), 0o755);
    const database = await openDatabase({ dataDir });
    try {
      assert.equal(lstatSync(pgVersion).mode & 0o777, 0o600);
      assert.equal(lstatSync(join(dataDir, 'pgdata', 'base')).mode & 0o777, 0o700);
    } finally {
      await database.close();
    }
  });

  test('a data dir others can open refuses to start: one line naming it and the chmod; nothing is written in it', async () => {
    const dataDir = existingDir(0o755);
    const result = await runCliProcess(['migrate'], { env: { CIPHERGATE_DATA_DIR: dataDir }, cwd: root, timeoutMs: 120_000 });
    assert.equal(result.code, 1, result.stderr);
    assertOneLine(result.stderr);
    assert.equal(result.stderr, `ciphergate: data directory ${dataDir} is open to group or others (mode 0755); restrict it with \`chmod 700 ${dataDir}\`\n`);
    assert.deepEqual(readdirSync(dataDir), []);
  });

  test('any group or other permission on the data dir is refused (read, write or search alone)', async () => {
    for (const mode of [0o750, 0o720, 0o710, 0o704, 0o702, 0o701]) {
      const dataDir = existingDir(mode);
      await assert.rejects(openDatabase({ dataDir }), (error: Error) => {
        assert.match(error.message, new RegExp(`mode 0${mode.toString(8)}\\); restrict it with \`chmod 700 `));
        return true;
      });
      assert.deepEqual(readdirSync(dataDir), [], `mode ${mode.toString(8)}: nothing written`);
    }
  });

  test('a generated master key others can read refuses to start with one line and the chmod', async () => {
    const dataDir = existingDir(0o700);
    const first = await runCliProcess(['keys', 'rotate'], { env: { CIPHERGATE_DATA_DIR: dataDir }, cwd: root, timeoutMs: 240_000 });
    assert.equal(first.code, 0, first.stderr);
    const keyFile = join(dataDir, 'master.key');
    for (const mode of [0o644, 0o640]) {
      chmodSync(keyFile, mode);
      const refused = await runCliProcess(['keys', 'rotate'], { env: { CIPHERGATE_DATA_DIR: dataDir }, cwd: root, timeoutMs: 240_000 });
      assert.equal(refused.code, 1, `mode ${mode.toString(8)}: ${refused.stdout} ${refused.stderr}`);
      assertOneLine(refused.stderr);
      assert.equal(refused.stderr, `ciphergate: master key file ${keyFile} is open to group or others (mode 0${mode.toString(8)}); restrict it with \`chmod 600 ${keyFile}\`\n`);
    }
  });
});
