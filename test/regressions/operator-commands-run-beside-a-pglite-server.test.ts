import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { startChildServe, type ChildServe } from '../helpers/child-serve.js';
import { assertOneLine, runCliProcess, stopChildren, type CliResult } from '../helpers/cli.js';
import { PUBLIC_URL, randomPhone, TENANT_FROM_NUMBER } from '../helpers/relay.js';
import { deliverTwilioSms } from '../helpers/twilio-delivery.js';

/**
 * Issue 15 item 2: every operator command works while `ciphergate serve` holds the embedded
 * database (the CLI hands the command to the server over the admin socket), with webhooks
 * arriving at the same time: no delivery lost, every CLI-written row there, the audit chain
 * intact afterwards.
 */
after(stopChildren);

const SLUG = 'beside-server';
const ACCOUNT_SID = `AC${randomBytes(16).toString('hex')}`;
const AUTH_TOKEN = `twilio-token-${randomBytes(12).toString('hex')}`;
const DELIVERIES = 24;

const tenantJson = (name: string) =>
  JSON.stringify({ name, twilio: { accountSid: ACCOUNT_SID, authToken: AUTH_TOKEN, fromNumber: TENANT_FROM_NUMBER }, allowIps: { twilio: [], airtable: [], podium: [] } });

async function deliverSms(server: ChildServe, from: string, body: string): Promise<number> {
  return (await deliverTwilioSms(server.url, { slug: SLUG, accountSid: ACCOUNT_SID, authToken: AUTH_TOKEN }, from, body)).status;
}

async function bodiesOf(server: ChildServe, apiKey: string, phone: string): Promise<string[]> {
  const get = async (url: string) => {
    const response = await fetch(`${server.url}${url}`, { headers: { authorization: `Bearer ${apiKey}` } });
    assert.equal(response.status, 200, await response.clone().text());
    return (await response.json()) as Record<string, unknown>;
  };
  const { conversations } = (await get(`/api/v1/conversations?tenant=${SLUG}&phone=${encodeURIComponent(phone)}`)) as { conversations: Array<{ id: string }> };
  const bodies: string[] = [];
  for (const conversation of conversations) {
    const { messages } = (await get(`/api/v1/conversations/${conversation.id}/messages?limit=200`)) as { messages: Array<{ body: string }> };
    bodies.push(...messages.map((message) => message.body));
  }
  return bodies;
}

describe('operator commands beside a running server on the embedded database', { timeout: 600_000 }, () => {
  const root = mkdtempSync(join(tmpdir(), 'cg-beside-'));
  const dataDir = join(root, 'data');
  const env = { CIPHERGATE_DATA_DIR: dataDir, CIPHERGATE_PUBLIC_URL: PUBLIC_URL, CIPHERGATE_LOG_LEVEL: 'warn' };
  const cli = (args: string[], stdin?: string): Promise<CliResult> => runCliProcess(args, { env, cwd: root, timeoutMs: 300_000, ...(stdin === undefined ? {} : { stdin }) });
  after(() => rmSync(root, { recursive: true, force: true }));

  test('users, tenants, api-keys, keys, jobs, import and audit all run while webhooks arrive; nothing is lost', async () => {
    mkdirSync(root, { recursive: true });
    const server = await startChildServe({ cwd: root, args: ['--no-workers'], env: { ...env, CIPHERGATE_LOG_LEVEL: 'info' } });
    try {
      // The socket is the server's, private, inside the private data directory.
      const socket = join(dataDir, 'admin.sock');
      assert.ok(existsSync(socket), 'no admin socket in the data directory');
      assert.equal(statSync(socket).mode & 0o777, 0o600);
      assert.equal(statSync(dataDir).mode & 0o777, 0o700);

      const ok = (result: CliResult, what: string) => assert.equal(result.code, 0, `${what}: ${result.stderr}`);
      ok(await cli(['tenants', 'put', SLUG], tenantJson('Beside Clinic')), 'tenants put');

      const phones = Array.from({ length: DELIVERIES }, () => randomPhone());
      const deliveries = Promise.all(phones.map((phone, index) => deliverSms(server, phone, `delivery ${index} ${phone}`)));

      // The operator's commands, one after another, while the deliveries are in flight.
      const userCreated = await cli(['users', 'create', '--email', 'ops@example.com', '--role', 'admin', '--password-stdin'], 'Beside-the-server-9317\n');
      ok(userCreated, 'users create');
      assert.match(userCreated.stdout, /^[0-9a-f-]{36}\n$/);
      ok(await cli(['tenants', 'put', 'second-tenant'], tenantJson('Second Clinic')), 'tenants put (second)');
      const keyCreated = await cli(['api-keys', 'create', '--tenant', SLUG, '--scope', 'conversations:read', '--name', 'beside']);
      ok(keyCreated, 'api-keys create');
      const apiKey = keyCreated.stdout.trim();
      const spare = await cli(['api-keys', 'create', '--tenant', SLUG, '--scope', 'conversations:read', '--name', 'spare']);
      ok(spare, 'api-keys create (spare)');
      const listed = await cli(['api-keys', 'list', '--json']);
      ok(listed, 'api-keys list');
      const keys = JSON.parse(listed.stdout) as Array<{ id: string; name: string }>;
      const spareId = keys.find((key) => key.name === 'spare')?.id;
      assert.ok(spareId, listed.stdout);
      ok(await cli(['api-keys', 'revoke', spareId]), 'api-keys revoke');
      ok(await cli(['keys', 'status']), 'keys status');
      const rotated = await cli(['keys', 'rotate', '--tenant', SLUG]);
      ok(rotated, 'keys rotate');
      assert.match(rotated.stdout, /now on data key v2/);
      ok(await cli(['jobs', 'list']), 'jobs list');
      const importedPhone = randomPhone();
      const exportLine = JSON.stringify({
        _id: 'conversation-1',
        phone: importedPhone,
        messages: [{ _id: 'm1', direction: 'inbound', body: 'imported beside the server', createdAt: '2024-01-01T00:00:00Z' }],
      });
      ok(await cli(['import', 'jsonl', '--tenant', SLUG], `${exportLine}\n`), 'import jsonl');

      // A secret from a terminal is refused as it is without a server; the server ran nothing.
      const refused = await cli(['users', 'create', '--email', 'x@example.com', '--role', 'nobody', '--password-stdin'], 'pw\n');
      assert.equal(refused.code, 2);
      assertOneLine(refused.stderr);

      const statuses = await deliveries;
      assert.deepEqual(statuses, phones.map(() => 200));

      // Every delivery stored (read through the server with the key the CLI made), and the rows
      // the CLI wrote are there.
      for (const [index, phone] of phones.entries()) assert.deepEqual(await bodiesOf(server, apiKey, phone), [`delivery ${index} ${phone}`]);
      assert.deepEqual(await bodiesOf(server, apiKey, importedPhone), ['imported beside the server']);
      const tenants = await cli(['tenants', 'list']);
      ok(tenants, 'tenants list');
      assert.match(tenants.stdout, /second-tenant/);
      const again = await cli(['users', 'create', '--email', 'ops@example.com', '--role', 'admin', '--password-stdin'], 'Beside-the-server-9317\n');
      assert.equal(again.code, 1, 'the user the CLI created is not there');
      const revokedKey = await fetch(`${server.url}/api/v1/conversations?tenant=${SLUG}&phone=${encodeURIComponent(phones[0]!)}`, {
        headers: { authorization: `Bearer ${spare.stdout.trim()}` },
      });
      assert.equal(revokedKey.status, 401);
      await revokedKey.arrayBuffer();

      const verified = await cli(['audit', 'verify']);
      assert.equal(verified.code, 0, verified.stdout + verified.stderr);
      // The commands ran in the server, which says so in its log without their arguments.
      assert.match(server.logs(), /ran an operator command for the CLI/);
      assert.ok(!server.logs().includes('ops@example.com'), 'the command line reached the log');
    } finally {
      const code = await server.stop();
      assert.equal(code, 0, server.tail());
    }
    // Stopped: the socket is gone and the same commands open the database themselves.
    assert.ok(!existsSync(join(dataDir, 'admin.sock')));
    const verifiedOffline = await cli(['audit', 'verify']);
    assert.equal(verifiedOffline.code, 0, verifiedOffline.stderr);
  });

  test('a command a server does not run (a second serve) still names the process that holds the database', async () => {
    const server = await startChildServe({ cwd: root, args: ['--no-workers'], env });
    try {
      const second = await runCliProcess(['serve'], { env, cwd: root, timeoutMs: 120_000 });
      assert.equal(second.code, 1);
      assertOneLine(second.stderr);
      assert.match(second.stderr, new RegExp(`in use by process ${server.pid}`));
    } finally {
      await server.stop();
    }
  });
});
