import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { CIPHERGATE_VERSION } from '../../src/config/version.js';
import { stopChildren } from '../helpers/cli.js';
import { startChildServe } from '../helpers/child-serve.js';

/**
 * Issue 15: the start-up log named neither the store nor the key provider, and a
 * CIPHERGATE_SMS_SENDER_TENANT naming no tenant logged nothing until someone asked for a code.
 * Now the "ciphergate listening" line names version, store, key provider, Redis and public URL
 * (no credentials), and the missing sender tenant is a warning at start naming the setting.
 */
after(stopChildren);

test('the start-up line names what runs; a sender tenant that does not exist is a warning at start', async () => {
  const cwd = mkdtempSync(join(tmpdir(), 'cg-startline-'));
  const server = await startChildServe({ env: { CIPHERGATE_SMS_SENDER_TENANT: 'no-such-tenant', CIPHERGATE_PUBLIC_URL: 'https://gate.example.test' }, cwd, timeoutMs: 120_000 });
  try {
    const lines = server.child.output.stdout
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    const listening = lines.find((line) => line['msg'] === 'ciphergate listening');
    assert.ok(listening, server.tail());
    assert.equal(listening['version'], CIPHERGATE_VERSION);
    assert.equal(listening['store'], 'pglite');
    assert.equal(listening['keyProvider'], 'local');
    assert.equal(listening['redis'], false);
    assert.equal(listening['publicUrl'], 'https://gate.example.test');
    const warning = lines.find((line) => typeof line['msg'] === 'string' && line['msg'].startsWith('CIPHERGATE_SMS_SENDER_TENANT names no tenant'));
    assert.ok(warning, 'the missing sender tenant is logged at start');
    assert.equal(warning['level'], 40);
    assert.ok(lines.indexOf(warning) < lines.indexOf(listening), 'before the server listens');
  } finally {
    await server.stop();
  }
});
