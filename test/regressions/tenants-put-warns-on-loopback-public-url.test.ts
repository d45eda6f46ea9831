import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { isLoopbackUrl } from '../../src/config/public-url.js';
import { runCliProcess, stopChildren } from '../helpers/cli.js';

/**
 * Issue 15: `tenants put` printed webhook URLs on 127.0.0.1 (CIPHERGATE_PUBLIC_URL unset, so
 * derived from host and port) without a word, and the operator pasted them into Twilio. It now
 * warns on stderr, naming the setting; stdout (the URLs, for scripts) stays as it was.
 */
after(stopChildren);

test('loopback public URLs are recognised; public ones are not', () => {
  for (const url of ['http://127.0.0.1:8080', 'http://localhost:8080', 'https://app.localhost', 'http://[::1]:8080', 'http://0.0.0.0:8080', 'http://127.8.9.10']) {
    assert.equal(isLoopbackUrl(url), true, url);
  }
  for (const url of ['https://gate.example.com', 'https://10.0.0.5', 'https://localhost.example.com', 'not a url']) {
    assert.equal(isLoopbackUrl(url), false, url);
  }
});

test('tenants put warns when the URLs it prints point at this machine', async () => {
  const cwd = mkdtempSync(join(tmpdir(), 'cg-loop-'));
  const tenant = { name: 'Acme', twilio: { accountSid: `AC${'ab'.repeat(16)}`, authToken: 'loopback-test-twilio-token', fromNumber: '+14155550100' } };
  const put = await runCliProcess(['tenants', 'put', 'acme'], { env: {}, cwd, stdin: JSON.stringify(tenant) });
  assert.equal(put.code, 0, put.stderr);
  assert.match(put.stdout, /twilio sms: +http:\/\/127\.0\.0\.1:8080\/webhooks\/twilio\/acme\/sms\n/);
  assert.match(put.stderr, /^ciphergate: warning: these URLs point at this machine \(CIPHERGATE_PUBLIC_URL is http:\/\/127\.0\.0\.1:8080\); providers cannot reach them\./m);
  assert.equal(put.stderr.includes('loopback-test-twilio-token'), false);
});
