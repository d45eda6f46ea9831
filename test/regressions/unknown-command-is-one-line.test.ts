import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { runCli } from '../../src/cli/program.js';

/**
 * Issue 15: an unknown command printed commander's two lines ("error: unknown command …" and
 * "(run with --help for usage)"), where docs/cli.md promises one line starting `ciphergate: `.
 */
test('an unknown command is one line starting "ciphergate: ", exit 2', async () => {
  const stderr = new PassThrough();
  let text = '';
  stderr.on('data', (chunk: Buffer) => (text += chunk.toString()));
  const stdin = new PassThrough();
  stdin.end();
  const code = await runCli(['launch'], { env: {}, cwd: process.cwd(), stdout: new PassThrough(), stderr, stdin });
  assert.equal(code, 2);
  assert.equal(text, "ciphergate: unknown command 'launch'\n");
});
