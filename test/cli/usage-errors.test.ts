import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, describe, test } from 'node:test';
import { runCli } from '../../src/cli/program.js';
import { runCliProcess, stopChildren } from '../helpers/cli.js';

/**
 * Issue 15, "CLI errors": every misuse is one line on stderr starting `ciphergate: ` that names
 * what is wrong, exit 2 (docs/cli.md), commander's own errors included; nothing is opened or
 * written. Run in-process (commander refuses before any command runs), and once through the
 * binary's entry.
 */
after(stopChildren);

async function run(argv: string[]): Promise<{ code: number; stdout: string; stderr: string; dataDir: string }> {
  const cwd = mkdtempSync(join(tmpdir(), 'cg-usage-'));
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const stdin = new PassThrough();
  stdin.end();
  const code = await runCli(argv, { env: { CIPHERGATE_DATA_DIR: join(cwd, 'data') }, cwd, stdout, stderr, stdin });
  return { code, stdout: out, stderr: err, dataDir: cwd };
}

const MISUSES: Array<{ kind: string; argv: string[]; line: string }> = [
  { kind: 'no command', argv: [], line: 'ciphergate: no command given (ciphergate --help lists them)' },
  { kind: 'unknown command', argv: ['launch'], line: "ciphergate: unknown command 'launch'" },
  { kind: 'unknown command with a suggestion', argv: ['user'], line: "ciphergate: unknown command 'user' (Did you mean users?)" },
  { kind: 'unknown option', argv: ['jobs', 'list', '--bogus'], line: "ciphergate: unknown option '--bogus'" },
  { kind: 'unknown global option', argv: ['--bogus'], line: "ciphergate: unknown option '--bogus'" },
  { kind: 'missing argument', argv: ['tenants', 'put'], line: "ciphergate: missing required argument 'slug'" },
  { kind: 'missing required option', argv: ['users', 'create', '--email', 'a@example.com'], line: "ciphergate: required option '--role <role>' not specified" },
  { kind: 'option without its value', argv: ['api-keys', 'list', '--tenant'], line: "ciphergate: option '--tenant <slug>' argument missing" },
  { kind: 'too many arguments', argv: ['jobs', 'list', 'extra'], line: "ciphergate: too many arguments for 'list'. Expected 0 arguments but got 1: extra." },
  { kind: 'a group without its subcommand', argv: ['users'], line: 'ciphergate: users: name a subcommand: create, reset-factors, list, lock, unlock, sessions' },
  { kind: 'an unknown subcommand', argv: ['users', 'delete'], line: "ciphergate: users: unknown subcommand 'delete'; one of create, reset-factors, list, lock, unlock, sessions" },
  {
    kind: 'invalid choice',
    argv: ['users', 'create', '--email', 'a@example.com', '--role', 'owner', '--password-stdin'],
    line: 'ciphergate: --role: expected one of admin, manager, employee, client, user, got "owner"',
  },
  { kind: 'malformed value', argv: ['encrypt-existing', '--batch-size', '0'], line: 'ciphergate: --batch-size: expected an integer 1-100000, got "0"' },
];

describe('CLI misuse: one line, exit 2, nothing written', () => {
  for (const misuse of MISUSES) {
    test(misuse.kind, async () => {
      const result = await run(misuse.argv);
      assert.equal(result.stderr, `${misuse.line}\n`);
      assert.equal(result.code, 2);
      assert.equal(result.stdout, '');
      // Refused before anything opened the database.
      assert.deepEqual(readdirSync(result.dataDir), []);
    });
  }

  test('--help and --version are not misuse: exit 0, on stdout', async () => {
    const version = await run(['--version']);
    assert.equal(version.code, 0);
    assert.match(version.stdout, /^ciphergate \d+\.\d+\.\d+\n$/);
    const help = await run(['users', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /create \[options\]/);
    const helpCommand = await run(['users', 'help', 'create']);
    assert.equal(helpCommand.code, 0);
    assert.match(helpCommand.stdout, /--password-stdin/);
  });

  test('through the installed entry (bin → main): one line and exit 2', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'cg-usage-'));
    const result = await runCliProcess(['jobs', 'list', '--bogus'], { env: {}, cwd });
    assert.equal(result.stderr, "ciphergate: unknown option '--bogus'\n");
    assert.equal(result.code, 2);
  });
});
