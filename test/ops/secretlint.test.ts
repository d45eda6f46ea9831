import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, describe, test } from 'node:test';
import { REPO_ROOT } from '../helpers/cli.js';

/**
 * The secrets scan CI runs (`npm run lint:secrets`): it passes on the repository as committed,
 * and it is live, i.e. the same configuration (allow-list included) fails on files holding
 * realistic fake credentials. Without the second half a mis-spelt rule id or an allow-list
 * that matches everything would look exactly like a clean repository.
 */
const execFileAsync = promisify(execFile);
const SECRETLINT = join(REPO_ROOT, 'node_modules', 'secretlint', 'bin', 'secretlint.js');
const CONFIG = join(REPO_ROOT, '.secretlintrc.json');
/** The fake password the allow-list accepts on loopback (see .secretlintrc.json). */
const FIXTURE_PASSWORD = 'hunter2';

interface ScanResult {
  code: number;
  output: string;
}

/** Runs secretlint from `cwd` over `patterns`, with the repository's configuration. */
async function scan(cwd: string, patterns: string[]): Promise<ScanResult> {
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, [SECRETLINT, '--secretlintrc', CONFIG, '--no-color', '--no-terminalLink', '--maskSecrets', ...patterns], { cwd, maxBuffer: 16 * 1024 * 1024 });
    return { code: 0, output: stdout + stderr };
  } catch (error) {
    const { code, stdout, stderr } = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof code === 'number' ? code : -1, output: `${stdout ?? ''}${stderr ?? ''}` };
  }
}

describe('secrets scan (secretlint)', { timeout: 180_000 }, () => {
  // secretlint (through globby) refuses files outside its working directory, so each probe
  // runs from its own temporary folder with the repository's configuration passed in.
  const probeDir = mkdtempSync(join(tmpdir(), 'cg-secretlint-'));
  after(() => rmSync(probeDir, { recursive: true, force: true }));

  test('the repository as committed passes, with the script CI runs', async () => {
    const packageJson = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    assert.match(packageJson.scripts['lint:secrets'] ?? '', /^secretlint /, 'npm run lint:secrets must run secretlint');
    const patterns = packageJson.scripts['lint:secrets']!.replace(/^secretlint /, '').match(/"[^"]+"|\S+/g)!.map((part) => part.replace(/^"|"$/g, ''));
    const result = await scan(REPO_ROOT, patterns);
    assert.equal(result.code, 0, `secretlint found something in the repository:\n${result.output}`);
  });

  const probes: Array<{ name: string; content: () => string; rule: RegExp }> = [
    {
      name: 'a PEM private key',
      content: () => `export const key = \`${generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()}\`;\n`,
      rule: /privatekey/i,
    },
    {
      name: 'a GitHub personal access token',
      content: () => `GITHUB_TOKEN=ghp_${randomBytes(27).toString('base64').replace(/[^A-Za-z0-9]/g, 'a').slice(0, 36)}\n`,
      rule: /github/i,
    },
    {
      name: 'a PostgreSQL URL with a password, on a real-looking host',
      content: () => `CIPHERGATE_DATABASE_URL=postgres://ciphergate:${randomBytes(12).toString('hex')}@db.internal.example:5432/ciphergate\n`,
      rule: /PostgreSQLConnection/,
    },
    {
      // The allow-list names the test fixtures' fake password on loopback only: the same
      // password on any other host, or another password on loopback, is still a finding.
      name: 'the fixtures\u2019 user with a different password (the allow-list is narrow)',
      content: () => `const url = 'postgres://cg:${randomBytes(8).toString('hex')}@127.0.0.1:1/cg';\n`,
      rule: /PostgreSQLConnection/,
    },
    {
      name: 'the fixtures\u2019 fake password on a non-loopback host (the allow-list is narrow)',
      // (Interpolated, so this file itself holds no connection string the scan would report.)
      content: () => `const url = 'postgres://cg:${FIXTURE_PASSWORD}@10.1.2.3:5432/cg';\n`,
      rule: /PostgreSQLConnection/,
    },
  ];

  for (const probe of probes) {
    test(`fails on a file holding ${probe.name}`, async () => {
      const file = `probe-${randomBytes(4).toString('hex')}.ts`;
      writeFileSync(join(probeDir, file), probe.content());
      const result = await scan(probeDir, [file]);
      assert.equal(result.code, 1, `secretlint should have failed (exit 1):\n${result.output}`);
      assert.match(result.output, probe.rule);
      assert.ok(result.output.includes(file), result.output);
    });
  }

  test('the allow-listed fixture values themselves pass (so the allow-list is what makes the repository clean)', async () => {
    const file = 'fixtures.ts';
    writeFileSync(join(probeDir, file), ["const a = 'postgres://cg:hunter2@127.0.0.1:1/cg';", "const b = 'mysql://admin:hunter2-very-secret@db/cg';", ''].join('\n'));
    assert.equal((await scan(probeDir, [file])).code, 0);
  });
});
