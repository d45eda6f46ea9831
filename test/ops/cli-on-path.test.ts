import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { after, describe, test } from 'node:test';
import { REPO_ROOT } from '../helpers/cli.js';

/**
 * Issue 15 item 3: the docs write `ciphergate …` after `npm link` (README, operations.md#install),
 * because `npx ciphergate` runs only installed dependencies' commands. This runs the documented
 * `npm link` into a throwaway prefix and proves that the `ciphergate` it puts on PATH is this
 * repository's own bin, and that it runs.
 */
describe('npm link puts this package’s ciphergate on PATH', () => {
  const prefix = mkdtempSync(join(tmpdir(), 'cg-npm-prefix-'));
  after(() => rmSync(prefix, { recursive: true, force: true }));

  test('the linked command is bin/ciphergate.js of this repository, and answers --help', { timeout: 300_000 }, () => {
    const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
    const linked = spawnSync(npm, ['link', '--ignore-scripts', '--offline', '--no-audit', '--no-fund'], {
      cwd: REPO_ROOT,
      env: { ...process.env, npm_config_prefix: prefix },
      encoding: 'utf8',
      timeout: 240_000,
    });
    assert.equal(linked.status, 0, `${linked.stdout}\n${linked.stderr}`);
    const onPath = join(prefix, 'bin', 'ciphergate');
    assert.ok(existsSync(onPath), 'npm link made no ciphergate command');
    assert.equal(realpathSync(onPath), realpathSync(join(REPO_ROOT, 'bin', 'ciphergate.js')));
    if (!existsSync(join(REPO_ROOT, 'dist', 'cli', 'main.js'))) {
      assert.fail('dist/ is missing: `npm ci` builds it (the prepare script); the linked command needs it');
    }
    const help = spawnSync('ciphergate', ['--help'], { env: { ...process.env, PATH: `${join(prefix, 'bin')}${delimiter}${process.env.PATH ?? ''}` }, encoding: 'utf8', timeout: 60_000 });
    assert.equal(help.status, 0, help.stderr);
    assert.match(help.stdout, /^Usage: ciphergate /m);
    assert.match(help.stdout, /\busers\b/);
  });
});
