import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { REPO_ROOT } from '../helpers/cli.js';

// A suite whose service is missing skips with a reason on a laptop, and fails under CI=true:
// otherwise a CI machine without PostgreSQL would pass while testing half of the code.
// The TAP reporter is asked for by name: Node 24's default reporter is `spec` even on a pipe,
// and TAP is the one whose SKIP directive and counts are a stable format to assert on.
function runFixture(env: Record<string, string>) {
  return spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=tap', join(REPO_ROOT, 'test/fixtures/needs-postgres.fixture.ts')], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? '', CIPHERGATE_TEST_DATABASE_URL: 'postgres://postgres@127.0.0.1:1/postgres', ...env },
    encoding: 'utf8',
    timeout: 60_000,
  });
}

test('without CI a missing PostgreSQL skips its suites with a one-line reason', () => {
  const result = runFixture({});
  assert.equal(result.status, 0, result.stdout + result.stderr);
  assert.match(result.stdout, /# SKIP PostgreSQL unavailable: cannot reach 127\.0\.0\.1:1 \(ECONNREFUSED\)/);
  assert.match(result.stdout, /# fail 0/);
});

test('with CI=true a missing PostgreSQL fails the run', () => {
  const result = runFixture({ CI: 'true' });
  assert.notEqual(result.status, 0);
  assert.match(result.stdout, /PostgreSQL is available \(required with CI=true\)/);
  assert.match(result.stdout, /# fail 1/);
});
