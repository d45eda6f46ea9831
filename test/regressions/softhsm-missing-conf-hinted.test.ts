import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { runCliProcess, stopChildren } from '../helpers/cli.js';
import { serviceGate } from '../helpers/services.js';
import { createSoftHsmToken, softHsmAvailable } from '../helpers/softhsm.js';

/**
 * Issue 15: with SOFTHSM2_CONF missing from the environment, SoftHSM2 reads its default
 * configuration and the start failed with "no token labelled …" and no hint. The error now names
 * SOFTHSM2_CONF (docs/hsm.md, "What is refused at start").
 */
after(stopChildren);

const available = softHsmAvailable();
const gate = serviceGate('SoftHSM2', available.ok ? undefined : available.reason);

test('a missing SOFTHSM2_CONF is hinted at in the token-label error', { skip: gate.skip }, async () => {
  const token = createSoftHsmToken({ label: 'cg-conf-hint', pin: '123456', soPin: '12345678' });
  const saved = process.env['SOFTHSM2_CONF'];
  // The child inherits SOFTHSM2_CONF from this process when it is set (test/helpers/cli.ts).
  delete process.env['SOFTHSM2_CONF'];
  try {
    const { SOFTHSM2_CONF: _conf, ...withoutConf } = token.env;
    const env = { ...withoutConf, CIPHERGATE_KEY_PROVIDER: 'pkcs11', CIPHERGATE_PKCS11_KEY_LABEL: 'cg-kek' };
    // `tenants put` opens the key provider (`keys status` reads the database only).
    const result = await runCliProcess(['tenants', 'put', 'acme'], { env, cwd: mkdtempSync(join(tmpdir(), 'cg-hsmconf-')), stdin: JSON.stringify({ name: 'Acme' }), timeoutMs: 180_000 });
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, /^ciphergate: CIPHERGATE_PKCS11_TOKEN_LABEL: no token labelled "cg-conf-hint"/);
    assert.match(result.stderr, /SOFTHSM2_CONF must be set in the environment of this process/);
    assert.equal(result.stderr.includes('123456'), false, 'no PIN in the message');
  } finally {
    if (saved !== undefined) process.env['SOFTHSM2_CONF'] = saved;
    token.cleanup();
  }
});
