import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runCliProcess, stopChildren } from '../helpers/cli.js';
import { createSoftHsmToken, softHsmAvailable } from '../helpers/softhsm.js';
import { serviceGate } from '../helpers/services.js';
import { startAirtableFake, type AirtableFake } from '../fakes/airtable.js';

after(stopChildren);

let airtable: AirtableFake;
before(async () => {
  airtable = await startAirtableFake({ apiKeys: ['pat-canary-cli-airtable'] });
  airtable.createTable('appABCDEFGHIJKLMN', 'Conversations');
});
after(async () => airtable?.close());

const TENANT_WITHOUT_WEBHOOK = {
  name: 'Acme Dental',
  twilio: { accountSid: `AC${'ab'.repeat(16)}`, authToken: 'canary-cli-twilio-token-42', fromNumber: '+15550000001' },
  airtable: { apiKey: 'pat-canary-cli-airtable', baseId: 'appABCDEFGHIJKLMN', table: 'Conversations', fields: { phone: 'masked', body: 'plain' } },
};
/** With its webhook given, so `put` needs no Airtable API. */
const TENANT_JSON = JSON.stringify({
  ...TENANT_WITHOUT_WEBHOOK,
  airtable: { ...TENANT_WITHOUT_WEBHOOK.airtable, webhookId: 'achABCDEFGHIJKLMN', macSecretBase64: Buffer.from('canary-cli-mac-secret-0123').toString('base64') },
});

function workspace(): { cwd: string; keyFile: (name: string) => string } {
  const cwd = mkdtempSync(join(tmpdir(), 'cg-tk-'));
  return {
    cwd,
    keyFile: (name) => {
      const path = join(cwd, name);
      writeFileSync(path, `${Buffer.from(Array.from({ length: 32 }, () => Math.floor(Math.random() * 256))).toString('base64')}\n`, { mode: 0o600 });
      return path;
    },
  };
}

describe('tenants put and list', () => {
  test('put prints the webhook URLs from CIPHERGATE_PUBLIC_URL; list shows providers and never a secret', async () => {
    const { cwd } = workspace();
    const env = { CIPHERGATE_PUBLIC_URL: 'https://gate.example.com', CIPHERGATE_AIRTABLE_API_URL: airtable.url };
    const put = await runCliProcess(['tenants', 'put', 'acme-dental'], { env, cwd, stdin: JSON.stringify(TENANT_WITHOUT_WEBHOOK) });
    assert.equal(put.code, 0, put.stderr);
    assert.match(put.stdout, /^created tenant acme-dental \([0-9a-f-]{36}\)\n/);
    assert.match(put.stdout, /twilio sms: +https:\/\/gate\.example\.com\/webhooks\/twilio\/acme-dental\/sms\n/);
    assert.match(put.stdout, /twilio status: +https:\/\/gate\.example\.com\/webhooks\/twilio\/acme-dental\/status\n/);
    assert.match(put.stdout, /airtable: +https:\/\/gate\.example\.com\/webhooks\/airtable\/acme-dental\n/);
    assert.doesNotMatch(put.stderr, /warning/, 'a public URL gets no loopback warning');
    // No webhookId given: the webhook is made on the base, notifying this tenant's URL.
    const [webhookId] = [...airtable.webhooks.keys()];
    assert.match(put.stderr, new RegExp(`created Airtable webhook ${webhookId} on base appABCDEFGHIJKLMN`));
    assert.equal(airtable.webhooks.get(webhookId!)!.notificationUrl, 'https://gate.example.com/webhooks/airtable/acme-dental');
    // A second put keeps it instead of minting another.
    const again = await runCliProcess(['tenants', 'put', 'acme-dental'], { env, cwd, stdin: JSON.stringify(TENANT_WITHOUT_WEBHOOK) });
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, new RegExp(`kept Airtable webhook ${webhookId}`));
    assert.equal(airtable.webhooks.size, 1);

    const list = await runCliProcess(['tenants', 'list'], { env, cwd });
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /acme-dental +twilio,airtable +Acme Dental/);
    const json = await runCliProcess(['tenants', 'list', '--json'], { env, cwd });
    assert.deepEqual(JSON.parse(json.stdout).map((tenant: { slug: string; providers: string[] }) => [tenant.slug, tenant.providers]), [['acme-dental', ['twilio', 'airtable']]]);
    for (const output of [put, again, list, json]) {
      assert.equal((output.stdout + output.stderr).includes('canary'), false, 'no secret printed');
    }
  });

  test('an invalid tenant.json or slug is refused with one line and nothing is written', async () => {
    const { cwd } = workspace();
    const bad = await runCliProcess(['tenants', 'put', 'acme'], { env: {}, cwd, stdin: JSON.stringify({ name: 'Acme', twilio: { accountSid: 'AC1' } }) });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^ciphergate: tenant\.json: \/twilio\/[a-zA-Z]+: .*\n$/);
    const notJson = await runCliProcess(['tenants', 'put', 'acme'], { env: {}, cwd, stdin: 'name: Acme' });
    assert.equal(notJson.code, 1);
    assert.match(notJson.stderr, /^ciphergate: tenant\.json: not valid JSON/);
    const badSlug = await runCliProcess(['tenants', 'put', 'Acme Dental'], { env: {}, cwd, stdin: TENANT_JSON });
    assert.equal(badSlug.code, 2);
    assert.match(badSlug.stderr, /^ciphergate: slug: expected lower-case letters/);
    const list = await runCliProcess(['tenants', 'list'], { env: {}, cwd });
    assert.equal(list.stdout, 'no tenants\n');
  });
});

describe('keys', () => {
  test('rotate makes a new version per scope; rewrap moves to a new master key, after which the old one is refused', async () => {
    const { cwd, keyFile } = workspace();
    const oldKey = keyFile('old.key');
    const newKey = keyFile('new.key');
    const withOld = { CIPHERGATE_MASTER_KEY_FILE: oldKey };
    const withNew = { CIPHERGATE_MASTER_KEY_FILE: newKey };
    assert.equal((await runCliProcess(['tenants', 'put', 'acme'], { env: withOld, cwd, stdin: TENANT_JSON })).code, 0);

    const rotate = await runCliProcess(['keys', 'rotate', '--tenant', 'acme', '--no-reencrypt'], { env: withOld, cwd });
    assert.equal(rotate.code, 0, rotate.stderr);
    assert.equal(rotate.stdout, 'tenant acme: now on data key v2\n');
    const rotateAll = await runCliProcess(['keys', 'rotate', '--no-reencrypt'], { env: withOld, cwd });
    assert.equal(rotateAll.stdout, 'system: now on data key v2\ntenant acme: now on data key v3\n');
    const unknown = await runCliProcess(['keys', 'rotate', '--tenant', 'nope'], { env: withOld, cwd });
    assert.equal(unknown.code, 1);
    assert.equal(unknown.stderr, 'ciphergate: --tenant: no tenant "nope"\n');

    const wrongKey = await runCliProcess(['tenants', 'put', 'acme'], { env: withNew, cwd, stdin: TENANT_JSON });
    assert.equal(wrongKey.code, 1);
    assert.match(wrongKey.stderr, /^ciphergate: keys: data key .* is wrapped under local:[0-9a-f]{16}, but the configured key is local:[0-9a-f]{16}/);

    const usage = await runCliProcess(['keys', 'rewrap'], { env: withNew, cwd });
    assert.equal(usage.code, 2);
    const rewrap = await runCliProcess(['keys', 'rewrap', '--from-master-key-file', oldKey], { env: withNew, cwd });
    assert.equal(rewrap.code, 0, rewrap.stderr);
    assert.match(rewrap.stdout, /^re-wrapped 5 data keys from local:[0-9a-f]{16} to local:[0-9a-f]{16} \(0 already there\)\n$/);

    const afterWithNew = await runCliProcess(['tenants', 'put', 'acme'], { env: withNew, cwd, stdin: TENANT_JSON });
    assert.equal(afterWithNew.code, 0, afterWithNew.stderr);
    const afterWithOld = await runCliProcess(['tenants', 'list'], { env: withOld, cwd });
    assert.equal(afterWithOld.code, 0, 'listing needs no keys');
    const sealWithOld = await runCliProcess(['keys', 'rotate'], { env: withOld, cwd });
    assert.equal(sealWithOld.code, 1, 'the old master key opens nothing any more');

    const verify = await runCliProcess(['audit', 'verify'], { env: withNew, cwd });
    assert.equal(verify.code, 0, verify.stderr);
  });
});

describe('keys status, reencrypt and encrypt-existing', () => {
  test('rotate re-encrypts old values; status shows versions and counts; encrypt-existing seals plain text once', async () => {
    const { cwd } = workspace();
    assert.equal((await runCliProcess(['tenants', 'put', 'acme'], { env: {}, cwd, stdin: TENANT_JSON })).code, 0);
    const rotate = await runCliProcess(['keys', 'rotate', '--tenant', 'acme'], { env: {}, cwd });
    assert.equal(rotate.code, 0, rotate.stderr);
    assert.match(rotate.stdout, /^tenant acme: now on data key v2\nre-encrypted 3 values\n$/); // twilio token, airtable key, airtable MAC secret
    const again = await runCliProcess(['keys', 'reencrypt'], { env: {}, cwd });
    assert.equal(again.stdout, 're-encrypted 0 values\n');

    const status = await runCliProcess(['keys', 'status', '--json'], { env: {}, cwd });
    assert.equal(status.code, 0, status.stderr);
    const parsed = JSON.parse(status.stdout);
    assert.ok(JSON.stringify(parsed).includes('"version":2'));
    const text = await runCliProcess(['keys', 'status'], { env: {}, cwd });
    assert.equal(text.code, 0);
    assert.match(text.stdout, /local:[0-9a-f]{16}/);
    assert.equal((status.stdout + text.stdout).includes('canary'), false);

    // Plain text written by an older version (or an import) into a sealed column.
    const { openDatabase } = await import('../../src/store/connection.js');
    const { sql } = await import('drizzle-orm');
    const database = await openDatabase({ dataDir: join(cwd, '.ciphergate') });
    await database.db.execute(sql`update tenants set podium_api_key = convert_to('canary-plain-podium-key', 'UTF8')`);
    await database.close();
    const first = await runCliProcess(['encrypt-existing'], { env: {}, cwd });
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /^sealed 1 value \(\d+ were sealed already\)\n$/);
    const second = await runCliProcess(['encrypt-existing'], { env: {}, cwd });
    assert.match(second.stdout, /^sealed 0 values/);
    const check = await openDatabase({ dataDir: join(cwd, '.ciphergate') });
    const { queryRows } = await import('../../src/store/connection.js');
    const markers = await queryRows<{ marker: number }>(check.db, sql`select get_byte(podium_api_key, 0) as marker from tenants`);
    assert.deepEqual(markers, [{ marker: 0xc1 }]);
    await check.close();
    const bad = await runCliProcess(['encrypt-existing', '--batch-size', '0'], { env: {}, cwd });
    assert.equal(bad.code, 2);
  });
});

describe('keys on an HSM (SoftHSM2)', () => {
  const available = softHsmAvailable();
  const gate = serviceGate('SoftHSM2', available.ok ? undefined : available.reason);

  test('init-hsm creates a non-extractable KEK; serve-side commands seal with it; a wrong PIN is one clear line', { skip: gate.skip }, async () => {
    const token = createSoftHsmToken({ label: 'cg-cli', pin: '246810', soPin: '13579111' });
    try {
      const { cwd } = workspace();
      const env = { ...token.env, CIPHERGATE_KEY_PROVIDER: 'pkcs11', CIPHERGATE_PKCS11_KEY_LABEL: 'ciphergate-kek' };
      const missing = await runCliProcess(['tenants', 'put', 'acme'], { env, cwd, stdin: TENANT_JSON });
      assert.equal(missing.code, 1);
      assert.match(missing.stderr, /^ciphergate: .*CIPHERGATE_PKCS11_KEY_LABEL/);

      const init = await runCliProcess(['keys', 'init-hsm'], { env, cwd });
      assert.equal(init.code, 0, init.stderr);
      assert.equal(init.stdout, 'pkcs11:ciphergate-kek in token "cg-cli": created\n');
      const again = await runCliProcess(['keys', 'init-hsm'], { env, cwd });
      assert.equal(again.stdout, 'pkcs11:ciphergate-kek in token "cg-cli": already present\n');

      const put = await runCliProcess(['tenants', 'put', 'acme'], { env, cwd, stdin: TENANT_JSON });
      assert.equal(put.code, 0, put.stderr);

      const wrongPin = await runCliProcess(['tenants', 'put', 'acme'], { env: { ...env, CIPHERGATE_PKCS11_PIN: '999999' }, cwd, stdin: TENANT_JSON });
      assert.equal(wrongPin.code, 1);
      assert.match(wrongPin.stderr, /^ciphergate: CIPHERGATE_PKCS11_PIN: the token refused the PIN/);
      assert.equal(wrongPin.stderr.includes('999999'), false);
      assert.equal(wrongPin.stderr.split('\n').filter(Boolean).length, 1);
    } finally {
      token.cleanup();
    }
  });

  // docs/keys.md, "Moving the KEK from a local key to an HSM", step by step.
  test('moving the KEK from the generated local key to the HSM: init-hsm, rewrap, then the HSM alone opens everything', { skip: gate.skip }, async () => {
    const token = createSoftHsmToken({ label: 'cg-move', pin: '246810', soPin: '13579111' });
    try {
      const { cwd } = workspace();
      const local = await runCliProcess(['tenants', 'put', 'acme'], { env: {}, cwd, stdin: TENANT_JSON });
      assert.equal(local.code, 0, local.stderr);
      const hsm = { ...token.env, CIPHERGATE_KEY_PROVIDER: 'pkcs11', CIPHERGATE_PKCS11_KEY_LABEL: 'ciphergate-kek' };
      assert.equal((await runCliProcess(['keys', 'init-hsm'], { env: hsm, cwd })).code, 0);
      const rewrap = await runCliProcess(['keys', 'rewrap', '--from-master-key-file', '.ciphergate/master.key'], { env: hsm, cwd });
      assert.equal(rewrap.code, 0, rewrap.stderr);
      assert.match(rewrap.stdout, /^re-wrapped \d+ data keys? from local:[0-9a-f]{16} to pkcs11:ciphergate-kek \(0 already there\)\n$/);
      const again = await runCliProcess(['keys', 'rewrap', '--from-master-key-file', '.ciphergate/master.key'], { env: hsm, cwd });
      assert.match(again.stdout, /^re-wrapped 0 data keys from/);
      const put = await runCliProcess(['tenants', 'put', 'acme'], { env: hsm, cwd, stdin: TENANT_JSON });
      assert.equal(put.code, 0, put.stderr);
      const status = await runCliProcess(['keys', 'status', '--json'], { env: hsm, cwd });
      assert.equal(status.code, 0, status.stderr);
      assert.equal(status.stdout.includes('local:'), false, 'no data key left under the local key');
    } finally {
      token.cleanup();
    }
  });
});
