import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { KekMismatchError, StoredKeyring } from '../../src/seal/keyring.js';
import { DataKeyRepository } from '../../src/store/repositories/data-keys.js';
import { KeyUnwrapError } from '../../src/seal/providers/key-provider.js';
import { MachineAuth } from '../../src/identity/machines/machine-auth.js';
import { openDatabase } from '../../src/store/connection.js';
import { DEFAULT_AIRTABLE_KEY } from '../fakes/airtable.js';
import { DEFAULT_OPENAI_KEY } from '../fakes/openai.js';
import { DEFAULT_PODIUM_LOCATION, DEFAULT_PODIUM_TOKEN, podiumMessageEvent } from '../fakes/podium.js';
import { DEFAULT_TWILIO_ACCOUNT } from '../fakes/twilio.js';
import { assertNoLeaks, canary, findLeakingLines, findLeaks, needlesFor, pgDump, phoneNeedles, randomLetters, type Needle } from '../helpers/canaries.js';
import { startChildServe } from '../helpers/child-serve.js';
import { assertOneLine, runCliProcess, stopChildren } from '../helpers/cli.js';
import { createPostgresDatabase, dropPostgresDatabase, postgresUnavailableReason } from '../helpers/database.js';
import { localProvider, randomMasterKey } from '../helpers/sealing.js';
import { openRelayHarness, PODIUM_WEBHOOK_SECRET, PUBLIC_URL, randomPhone, type RelayHarness } from '../helpers/relay.js';
import { serviceGate } from '../helpers/services.js';

/**
 * Issue 7, backups: what docs/operations.md tells an operator to do, done. Traffic carrying
 * canaries (unique bodies, a contact's name, phone numbers) arrives through signed webhooks
 * and is answered by the workers; then `pg_dump -Fc` and a plain-SQL `pg_dump` are taken and
 * searched for every canary in every encoding and letter case; the custom-format dump is
 * restored with `pg_restore` into a new database, a real `ciphergate serve` is started on it
 * with the same KEK and every message is read back through the API, and `audit verify` passes
 * on the copy. With any other KEK the copy refuses to open: a typed error, one line, no
 * plaintext, even when the stored KEK id is forged to match.
 *
 * A positive control (a canary written on purpose into a table of the source) proves that the
 * search finds plain text in both dump formats, so a clean result means "not there".
 */
after(stopChildren);

const execFileAsync = promisify(execFile);

/** A watched value as written, upper-cased and lower-cased, each in every encoding. */
function caseNeedles(label: string, text: string): Needle[] {
  const forms = new Set([text, text.toUpperCase(), text.toLowerCase()]);
  return [...forms].flatMap((form) => needlesFor(label, form));
}

async function toolVersion(tool: string): Promise<string | undefined> {
  return execFileAsync(tool, ['--version']).then(
    ({ stdout }) => stdout.trim(),
    () => undefined,
  );
}

async function pgRestore(args: readonly string[]): Promise<{ stdout: Buffer }> {
  try {
    return await execFileAsync('pg_restore', args, { encoding: 'buffer', maxBuffer: 512 * 1024 * 1024 });
  } catch (error) {
    const { stderr, code } = error as { stderr?: Buffer; code?: string | number };
    throw new Error(`pg_restore failed (${code}): ${stderr?.toString('utf8').trim() ?? ''}`);
  }
}

interface Conversation {
  id: string;
  channel: string;
}

/** Every message of every conversation of `phone`, opened, as `direction|body` sorted. */
async function readMessages(get: (url: string) => Promise<{ status: number; body: unknown }>, slug: string, phone: string): Promise<string[]> {
  const lookup = await get(`/api/v1/conversations?tenant=${slug}&phone=${encodeURIComponent(phone)}`);
  assert.equal(lookup.status, 200, JSON.stringify(lookup.body));
  const { conversations } = lookup.body as { conversations: Conversation[] };
  assert.ok(conversations.length > 0, `no conversation for ${phone}`);
  const messages: string[] = [];
  for (const conversation of conversations) {
    const read = await get(`/api/v1/conversations/${conversation.id}/messages?limit=200`);
    assert.equal(read.status, 200, JSON.stringify(read.body));
    const page = read.body as { messages: Array<{ id: string; direction: string; body: string }>; nextCursor: string | null };
    assert.equal(page.nextCursor, null, 'more messages than one page: the test reads one');
    messages.push(...page.messages.map((message) => `${message.id}|${message.direction}|${message.body}`));
  }
  return messages.sort();
}

describe('backup and restore on PostgreSQL (pg_dump / pg_restore)', { timeout: 600_000 }, async () => {
  const missingTool = (await toolVersion('pg_dump')) === undefined ? 'pg_dump not on PATH' : (await toolVersion('pg_restore')) === undefined ? 'pg_restore not on PATH' : undefined;
  const gate = serviceGate('PostgreSQL with pg_dump and pg_restore', (await postgresUnavailableReason()) ?? missingTool);
  if (gate.skip) {
    test('backup and restore', { skip: gate.skip }, () => undefined);
    return;
  }

  const workDir = mkdtempSync(join(tmpdir(), 'cg-backup-'));
  const restoredName = `cg_test_restore_${randomBytes(6).toString('hex')}`;
  const slug = `backup-${randomBytes(3).toString('hex')}`;
  let harness: RelayHarness;
  let restoredUrl: string;
  let apiKey: string;
  let needles: Needle[];
  let phones: string[];
  let bodies: string[];
  let controlNeedles: Needle[];
  /** What the source's API opened for each phone, before the dump. */
  const sourceMessages = new Map<string, string[]>();
  let sourceAuditHead: string;
  const dumps = { custom: join(workDir, 'ciphergate.dump'), plain: join(workDir, 'ciphergate.sql') };

  before(async () => {
    harness = await openRelayHarness('postgres');
    await harness.putTenant(slug);
    phones = [randomPhone(), randomPhone(), randomPhone()];
    const contactName = `Philippa ${randomLetters(1).toUpperCase()}${randomLetters(10)}`;
    bodies = [
      `Hi, can I move my cleaning to Friday? ${canary()}`,
      `My date of birth is 1984-02-29 and my insurance id is ${canary()}`,
      `Call me back on ${phones[2]!.slice(2, 5)}-${phones[2]!.slice(5, 8)}-${phones[2]!.slice(8)}, ${canary()}`,
    ];
    for (const [index, body] of bodies.entries()) {
      const { response } = await harness.sendSms(slug, phones[index]!, body);
      assert.equal(response.statusCode, 200, response.body);
    }
    const podiumBody = `This is ${contactName}, I lost a filling. ${canary()}`;
    bodies.push(podiumBody);
    const received = harness.podium.receive({ locationUid: DEFAULT_PODIUM_LOCATION, from: phones[0]!, body: podiumBody, contactName });
    const podiumResponse = await harness.postPodium(slug, podiumMessageEvent('message.received', harness.podium.messageJson(received)));
    assert.equal(podiumResponse.statusCode, 204, podiumResponse.body);
    // The workers answer through the OpenAI fake and send through Twilio: outbound rows too.
    await harness.drain({ timeoutMs: 120_000 });

    const tenantId = (await harness.relay.tenants.bySlug(slug))!.id;
    ({ key: apiKey } = await new MachineAuth(harness.identity).createKey(null, { name: 'backup-test', tenantId, scopes: ['conversations:read'], expiresAt: null }));
    const get = async (url: string) => {
      const response = await harness.request({ method: 'GET', url, token: apiKey });
      return { status: response.statusCode, body: response.json() as unknown };
    };
    for (const phone of phones) sourceMessages.set(phone, await readMessages(get, slug, phone));

    needles = [
      ...phones.flatMap((phone, index) => phoneNeedles(`phone #${index + 1}`, phone)),
      ...caseNeedles('contact name', contactName),
      ...caseNeedles('contact surname', contactName.split(' ')[1]!),
      ...bodies.flatMap((body, index) => caseNeedles(`body #${index + 1}`, body)),
      // The AI's answers and the tenant's provider secrets are sealed too.
      ...[...sourceMessages.values()].flat().filter((line) => line.includes('|outbound|')).flatMap((line, index) => needlesFor(`outbound #${index + 1}`, line.split('|')[2]!)),
      ...needlesFor('secret twilio auth token', DEFAULT_TWILIO_ACCOUNT.authToken),
      ...needlesFor('secret openai key', DEFAULT_OPENAI_KEY),
      ...needlesFor('secret airtable key', DEFAULT_AIRTABLE_KEY),
      ...needlesFor('secret podium token', DEFAULT_PODIUM_TOKEN),
      ...needlesFor('secret podium webhook secret', PODIUM_WEBHOOK_SECRET),
      ...needlesFor('secret airtable mac secret', harness.airtableMacSecret(slug)),
      ...needlesFor('secret api key', apiKey),
      ...needlesFor('secret master key', harness.masterKey),
    ];

    // The positive control: plain text written on purpose, which both dumps must show.
    const control = { text: canary(), bytea: canary() };
    controlNeedles = [...needlesFor('control text', control.text), ...needlesFor('control bytea', control.bytea)];
    await harness.db.execute(sql`create table backup_positive_control (note text, blob bytea)`);
    await harness.db.execute(sql`insert into backup_positive_control values (${control.text}, convert_to(${control.bytea}, 'UTF8'))`);

    const verified = await runCliProcess(['audit', 'verify'], { env: { CIPHERGATE_DATABASE_URL: harness.test.url!, CIPHERGATE_MASTER_KEY: harness.masterKey }, cwd: workDir });
    assert.equal(verified.code, 0, verified.stderr);
    sourceAuditHead = /head ([0-9a-f]{64})/.exec(verified.stdout)![1]!;

    // What docs/operations.md tells operators to run.
    await pgDump(harness.test.url!, ['--format=custom', '--file', dumps.custom]);
    await pgDump(harness.test.url!, ['--format=plain', '--file', dumps.plain]);
    restoredUrl = await createPostgresDatabase(restoredName);
    await pgRestore(['--no-owner', '--no-privileges', '--exit-on-error', '--dbname', restoredUrl, dumps.custom]);
  });

  after(async () => {
    await stopChildren();
    await harness?.close();
    await dropPostgresDatabase(restoredName);
    rmSync(workDir, { recursive: true, force: true });
  });

  test('the traffic went through and was read back on the source (else a clean dump would prove nothing)', () => {
    const all = [...sourceMessages.values()].flat();
    for (const body of bodies) assert.ok(all.some((line) => line.endsWith(`|inbound|${body}`)), `not stored: ${body}`);
    assert.ok(all.some((line) => line.includes('|outbound|')), 'the workers sent no answer');
  });

  test('the plain-SQL dump holds no canary, in any encoding or letter case, and does hold the positive control', () => {
    const text = readFileSync(dumps.plain, 'utf8');
    assert.match(text, /COPY public\.messages /, 'the dump has no messages data');
    assertNoLeaks(findLeakingLines(text, needles), 'the plain-SQL pg_dump');
    assert.deepEqual(findLeaks(text, controlNeedles).sort(), ['control bytea as hex', 'control text as utf8']);
  });

  test('the custom-format dump holds no canary, neither as stored (compressed) nor as pg_restore renders it', async () => {
    const raw = readFileSync(dumps.custom);
    assert.equal(raw.subarray(0, 5).toString('latin1'), 'PGDMP', 'not a custom-format dump');
    assertNoLeaks(findLeaks(raw, needles), 'the custom-format pg_dump file');
    // Its data is compressed, so a raw search alone could miss plain text: render it as SQL.
    const { stdout } = await pgRestore(['--file', '-', dumps.custom]);
    const rendered = stdout.toString('utf8');
    assert.match(rendered, /COPY public\.messages /);
    assertNoLeaks(findLeakingLines(rendered, needles), 'the custom-format pg_dump, rendered by pg_restore');
    assert.deepEqual(findLeaks(rendered, controlNeedles).sort(), ['control bytea as hex', 'control text as utf8']);
  });

  test('restored into a new database, ciphergate serve with the same KEK reads every message back through the API', async () => {
    const server = await startChildServe({
      cwd: workDir,
      args: ['--no-workers'],
      env: {
        CIPHERGATE_DATABASE_URL: restoredUrl,
        CIPHERGATE_MASTER_KEY: harness.masterKey,
        CIPHERGATE_PUBLIC_URL: PUBLIC_URL,
        CIPHERGATE_DATA_DIR: join(workDir, 'data'),
        CIPHERGATE_REDIS_KEY_PREFIX: `t${randomBytes(4).toString('hex')}`,
      },
    });
    try {
      const ready = await fetch(`${server.url}/readyz`);
      assert.equal(ready.status, 200, await ready.text());
      const get = async (url: string) => {
        const response = await fetch(`${server.url}${url}`, { headers: { authorization: `Bearer ${apiKey}` } });
        return { status: response.status, body: (await response.json()) as unknown };
      };
      for (const phone of phones) assert.deepEqual(await readMessages(get, slug, phone), sourceMessages.get(phone), `messages of ${phone} after the restore`);
    } finally {
      assert.equal(await server.stop(), 0, server.logs().slice(-2000));
      assertNoLeaks(findLeakingLines(server.logs(), needles), 'the restored server\u2019s logs');
    }
  });

  test('audit verify passes on the restored copy and still contains the source\u2019s head', async () => {
    const verified = await runCliProcess(['audit', 'verify', '--expect-entry', sourceAuditHead], { env: { CIPHERGATE_DATABASE_URL: restoredUrl, CIPHERGATE_MASTER_KEY: harness.masterKey }, cwd: workDir });
    assert.equal(verified.code, 0, verified.stderr);
    assert.match(verified.stdout, /^audit chain intact: \d+ entries, head [0-9a-f]{64}\n$/);
  });

  test('with another KEK the restored copy refuses to open: serve exits 1 with one line, no plaintext', async () => {
    const refused = await runCliProcess(['serve', '--no-workers'], {
      cwd: workDir,
      timeoutMs: 120_000,
      env: { CIPHERGATE_DATABASE_URL: restoredUrl, CIPHERGATE_MASTER_KEY: randomMasterKey(), CIPHERGATE_PORT: '0', CIPHERGATE_DATA_DIR: join(workDir, 'data-other') },
    });
    assert.equal(refused.code, 1, `serve should refuse: ${refused.stdout.slice(-2000)} ${refused.stderr}`);
    assertOneLine(refused.stderr);
    assert.match(refused.stderr, /is wrapped under local:[0-9a-f]{16}, but the configured key is local:[0-9a-f]{16}/);
    assertNoLeaks(findLeakingLines(refused.stdout + refused.stderr, needles), 'the refusal');
  });

  test('with another KEK the keyring fails typed, and forging the stored KEK id only changes the error to an unwrap failure', async () => {
    const database = await openDatabase({ url: restoredUrl, maxConnections: 2 });
    const otherKek = localProvider(randomMasterKey());
    try {
      await assert.rejects(StoredKeyring.open(new DataKeyRepository(database.db), otherKek), (error: unknown) => error instanceof KekMismatchError);
      // Someone who edits the copy so that its data keys claim to be under the key they hold.
      await database.db.execute(sql`update data_keys set kek_id = ${otherKek.kekId}`);
      await assert.rejects(StoredKeyring.open(new DataKeyRepository(database.db), otherKek), (error: unknown) => {
        assert.ok(error instanceof KeyUnwrapError, `expected KeyUnwrapError, got ${String(error)}`);
        assert.deepEqual(findLeaks(error.message, needles), []);
        return true;
      });
    } finally {
      await otherKek.close();
      await database.close();
    }
  });
});
