import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { assertNoLeaks, canary, findLeakingLines, needlesFor, phoneNeedles, scanTree, type Needle } from '../helpers/canaries.js';
import { startChildServe, type ChildServe } from '../helpers/child-serve.js';
import { assertOneLine, runCliProcess, stopChildren } from '../helpers/cli.js';
import { PUBLIC_URL, randomPhone, TENANT_FROM_NUMBER } from '../helpers/relay.js';
import { deliverTwilioSms } from '../helpers/twilio-delivery.js';
import { readMessagesOf } from '../helpers/read-messages.js';

/**
 * Issue 7, backups of the embedded default (PGlite), the way docs/operations.md describes
 * them: stop `ciphergate serve` (SIGTERM flushes and closes the database), copy
 * `<data dir>/pgdata` to the backup, and the generated `<data dir>/master.key` to a different
 * place; restore by putting both back and starting again. The database copy alone holds no
 * canary and no key; the restore reads every message back; the database copy without its key
 * refuses to start.
 */
after(stopChildren);

const SLUG = 'pglite-backup';
const ACCOUNT_SID = `AC${randomBytes(16).toString('hex')}`;
const AUTH_TOKEN = `twilio-token-${randomBytes(12).toString('hex')}`;

function serve(cwd: string, dataDir: string): Promise<ChildServe> {
  return startChildServe({ cwd, args: ['--no-workers'], env: { CIPHERGATE_DATA_DIR: dataDir, CIPHERGATE_PUBLIC_URL: PUBLIC_URL } });
}

async function sendSms(server: ChildServe, from: string, body: string): Promise<void> {
  const delivered = await deliverTwilioSms(server.url, { slug: SLUG, accountSid: ACCOUNT_SID, authToken: AUTH_TOKEN }, from, body);
  assert.equal(delivered.status, 200, delivered.text);
}

async function stopCleanly(server: ChildServe): Promise<string> {
  const code = await server.stop();
  assert.deepEqual([code, server.child.signalCode], [0, null], server.logs().slice(-2000));
  return server.logs();
}

describe('backup and restore of the embedded database (PGlite data dir copied while stopped)', { timeout: 600_000 }, () => {
  const root = mkdtempSync(join(tmpdir(), 'cg-backup-pglite-'));
  const live = join(root, 'live');
  const liveData = join(live, 'data');
  const backupDb = join(root, 'backup-database');
  const backupKey = join(root, 'backup-key');
  const phones = [randomPhone(), randomPhone()];
  const bodies = [`Please move me to Tuesday ${canary()}`, `My policy number is ${canary()}`];
  const sourceMessages = new Map<string, string[]>();
  let apiKey: string;
  let needles: Needle[];
  const logs: string[] = [];

  before(async () => {
    mkdirSync(live);
    const env = { CIPHERGATE_DATA_DIR: liveData, CIPHERGATE_PUBLIC_URL: PUBLIC_URL };
    const tenant = JSON.stringify({ name: 'PGlite Backup Clinic', twilio: { accountSid: ACCOUNT_SID, authToken: AUTH_TOKEN, fromNumber: TENANT_FROM_NUMBER }, allowIps: { twilio: [], airtable: [], podium: [] } });
    const put = await runCliProcess(['tenants', 'put', SLUG], { env, cwd: live, stdin: tenant, timeoutMs: 300_000 });
    assert.equal(put.code, 0, put.stderr);
    const created = await runCliProcess(['api-keys', 'create', '--tenant', SLUG, '--scope', 'conversations:read', '--name', 'backup-test'], { env, cwd: live, timeoutMs: 300_000 });
    assert.equal(created.code, 0, created.stderr);
    apiKey = created.stdout.trim();
    logs.push(put.stdout, put.stderr, created.stderr);

    const server = await serve(live, liveData);
    try {
      for (const [index, body] of bodies.entries()) await sendSms(server, phones[index]!, body);
      for (const phone of phones) sourceMessages.set(phone, await readMessagesOf(server.url, apiKey, SLUG, phone));
    } finally {
      logs.push(await stopCleanly(server));
    }
    const masterKey = readFileSync(join(liveData, 'master.key'), 'utf8').trim();
    needles = [
      ...phones.flatMap((phone, index) => phoneNeedles(`phone #${index + 1}`, phone)),
      ...bodies.flatMap((body, index) => needlesFor(`body #${index + 1}`, body)),
      ...needlesFor('secret twilio auth token', AUTH_TOKEN),
      ...needlesFor('secret api key', apiKey),
      ...needlesFor('secret master key', masterKey),
    ];

    // The documented backup: with the server stopped, the database folder to one place and
    // the key to another.
    assert.ok(!existsSync(join(liveData, 'ciphergate.pid')), 'the data dir is still locked: the server did not stop');
    cpSync(join(liveData, 'pgdata'), join(backupDb, 'pgdata'), { recursive: true });
    mkdirSync(backupKey);
    cpSync(join(liveData, 'master.key'), join(backupKey, 'master.key'));
  });

  after(() => rmSync(root, { recursive: true, force: true }));

  test('the source stored and opened every message (else the restore would prove nothing)', () => {
    const all = [...sourceMessages.values()].flat();
    for (const body of bodies) assert.ok(all.some((line) => line.endsWith(`|inbound|${body}`)), `not read back on the source: ${body}`);
  });

  test('the database backup holds no canary and no key, byte for byte', () => {
    const scanned = scanTree(backupDb, needles);
    assert.ok(scanned.files > 10 && scanned.bytes > 1_000_000, `the backup looks empty: ${scanned.files} files, ${scanned.bytes} bytes`);
    assert.deepEqual(readdirSync(backupDb), ['pgdata']);
    assertNoLeaks(scanned.leaks, 'the PGlite database backup');
    assertNoLeaks(findLeakingLines(logs.join('\n'), needles), 'the logs of the run');
  });

  test('restored (database and key put back in a new data dir), serve reads every message back', async () => {
    const restored = join(root, 'restored');
    const restoredData = join(restored, 'data');
    // As docs/operations.md says: a data dir that only its user can open, or serve refuses it.
    mkdirSync(restoredData, { recursive: true, mode: 0o700 });
    cpSync(join(backupDb, 'pgdata'), join(restoredData, 'pgdata'), { recursive: true });
    cpSync(join(backupKey, 'master.key'), join(restoredData, 'master.key'));
    const server = await serve(restored, restoredData);
    try {
      for (const phone of phones) assert.deepEqual(await readMessagesOf(server.url, apiKey, SLUG, phone), sourceMessages.get(phone), `messages of ${phone} after the restore`);
    } finally {
      assertNoLeaks(findLeakingLines(await stopCleanly(server), needles), 'the restored server\u2019s logs');
    }
  });

  test('the database backup without its key refuses to start (one line, no plaintext)', async () => {
    const keyless = join(root, 'keyless');
    const keylessData = join(keyless, 'data');
    mkdirSync(keylessData, { recursive: true, mode: 0o700 });
    cpSync(join(backupDb, 'pgdata'), join(keylessData, 'pgdata'), { recursive: true });
    const refused = await runCliProcess(['serve', '--no-workers'], { cwd: keyless, timeoutMs: 300_000, env: { CIPHERGATE_DATA_DIR: keylessData, CIPHERGATE_PUBLIC_URL: PUBLIC_URL, CIPHERGATE_PORT: '0' } });
    assert.equal(refused.code, 1, `serve should refuse: ${refused.stdout.slice(-2000)} ${refused.stderr}`);
    assertOneLine(refused.stderr);
    assert.match(refused.stderr, /is wrapped under local:[0-9a-f]{16}, but the configured key is local:[0-9a-f]{16}/);
    assertNoLeaks(findLeakingLines(refused.stdout + refused.stderr, needles), 'the refusal');
  });
});
