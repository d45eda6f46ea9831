import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import { after, before, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { StoredKeyring } from '../../src/seal/keyring.js';
import { DataKeyRepository } from '../../src/store/repositories/data-keys.js';
import { formatKeyStatus, keyStatus } from '../../src/keys/key-status.js';
import { LocalKeyProvider } from '../../src/seal/providers/local.js';
import { SealedFields } from '../../src/seal/sealed-fields.js';
import { Sealer } from '../../src/seal/sealer.js';
import type { Db } from '../../src/store/connection.js';
import { contactsSealed, messagesSealed, tenantsSealed } from '../../src/store/sealed-tables.js';
import { createTestDatabase, describeEachBackend, type TestDatabase } from '../helpers/database.js';
import { ensureConversation, TENANT_SETTINGS } from '../helpers/stored-rows.js';


await describeEachBackend('key status', (backend) => {
  let testDb: TestDatabase;
  let db: Db;
  let keyring: StoredKeyring;
  let fields: SealedFields;
  // x: rotated once, with every kind of value; y: rotated and its v1 destroyed; z: plaintext, no key yet.
  const x = randomUUID();
  const y = randomUUID();
  const z = randomUUID();

  const tenant = async (id: string, secrets: { twilio?: Buffer | string; openai?: string } = {}) => {
    const value = (secret: Buffer | string | undefined) =>
      secret === undefined ? sql`null` : typeof secret === 'string' ? sql`convert_to(${secret}, 'UTF8')` : sql`${secret}`;
    await db.execute(sql`insert into tenants (id, slug, name, settings, twilio_auth_token, openai_api_key, created_at, updated_at)
      values (${id}, ${`t-${id.slice(0, 8)}`}, 'Tenant', ${TENANT_SETTINGS}::jsonb, ${value(secrets.twilio)}, ${value(secrets.openai)}, now(), now())`);
  };
  const contact = async (tenantId: string) => {
    const id = randomUUID();
    const sealed = fields.sealRow(contactsSealed, { scope: tenantId, id }, { phone: '+14155550100', name: 'Zoë' });
    await db.execute(sql`insert into contacts (id, tenant_id, phone, phone_index, name, created_at)
      values (${id}, ${tenantId}, ${sealed.phone!}, ${sealed.phoneIndex!}, ${sealed.name!}, now())`);
    return id;
  };
  const message = async (tenantId: string, contactId: string, body: Buffer | string) => {
    const id = randomUUID();
    const value = typeof body === 'string' ? fields.sealRow(messagesSealed, { scope: tenantId, id }, { body }).body! : body;
    const conversationId = await ensureConversation(db, tenantId, contactId);
    await db.execute(sql`insert into messages (id, tenant_id, contact_id, conversation_id, direction, author, body, dedupe_key, status, status_rank, created_at, updated_at)
      values (${id}, ${tenantId}, ${contactId}, ${conversationId}, 'inbound', 'contact', ${value}, ${`test:${id}`}, 'received', 0, now(), now())`);
  };

  before(async () => {
    testDb = await createTestDatabase(backend);
    db = testDb.database.db;
    const provider = new LocalKeyProvider({ masterKey: randomBytes(32).toString('base64'), dataDir: tmpdir(), allowGenerate: false, warn: () => {} });
    keyring = await StoredKeyring.open(new DataKeyRepository(db), provider);
    fields = new SealedFields(new Sealer(keyring), keyring);
    await keyring.ensureScope('system');

    await keyring.ensureScope(x);
    await tenant(x, { openai: 'sk-still-plain' });
    const contactX = await contact(x); // 2 values on v1
    for (const body of ['one', 'two', 'three']) await message(x, contactX, body); // 3 on v1
    await keyring.rotate(x);
    const sealedSecret = fields.sealRow(tenantsSealed, { scope: x, id: x }, { twilioAuthToken: 'token' }).twilioAuthToken!;
    await db.execute(sql`update tenants set twilio_auth_token = ${sealedSecret} where id = ${x}`); // 1 on v2
    for (const body of ['four', 'five']) await message(x, contactX, body); // 2 on v2
    await message(x, contactX, Buffer.from('plain text', 'utf8')); // plaintext
    await message(x, contactX, Buffer.from([0xc1, 0x01])); // damaged header
    await message(x, contactX, Buffer.concat([Buffer.from([0xc1, 0x01, 0, 0, 0, 9]), randomBytes(28)])); // unknown version 9

    await keyring.ensureScope(y);
    await tenant(y);
    const contactY = await contact(y);
    await message(y, contactY, 'shredded');
    await keyring.rotate(y);
    await db.execute(sql`update data_keys set state = 'destroyed', wrapped_key = null where scope = ${y} and version = 1`);

    await tenant(z, { twilio: 'legacy token' });
  });
  after(async () => {
    keyring.close();
    await testDb.cleanup();
  });

  test('counts values per scope and version, plaintext and damage included', async () => {
    const status = await keyStatus(db);
    assert.deepEqual(
      status.scopes.map((s) => s.scope),
      ['system', ...[x, y, z].sort()],
    );
    const scope = (name: string) => {
      const found = status.scopes.find((s) => s.scope === name)!;
      return {
        current: found.currentVersion,
        versions: found.versions.map((v) => [v.version, v.state, v.current, v.values]),
        plaintext: found.plaintextValues,
        sealed: found.sealedValues,
        onCurrent: found.onCurrentVersion,
        unknown: found.unknownVersionValues,
        damaged: found.damagedValues,
        progress: found.reencryptionProgress,
      };
    };
    assert.deepEqual(scope('system'), { current: 1, versions: [[1, 'active', true, 0]], plaintext: 0, sealed: 0, onCurrent: 0, unknown: 0, damaged: 0, progress: 1 });
    assert.deepEqual(scope(x), {
      current: 2,
      versions: [
        [1, 'active', false, 5],
        [2, 'active', true, 3],
      ],
      plaintext: 2,
      sealed: 10,
      onCurrent: 3,
      unknown: 1,
      damaged: 1,
      progress: 0.3,
    });
    assert.deepEqual(scope(y), {
      current: 2,
      versions: [
        [1, 'destroyed', false, 3],
        [2, 'active', true, 0],
      ],
      plaintext: 0,
      sealed: 3,
      onCurrent: 0,
      unknown: 0,
      damaged: 0,
      progress: 0,
    });
    assert.deepEqual(scope(z), { current: null, versions: [], plaintext: 1, sealed: 0, onCurrent: 0, unknown: 0, damaged: 0, progress: 1 });

    const x1 = status.scopes.find((s) => s.scope === x)!.versions[0]!;
    assert.match(x1.kekId, /^local:[0-9a-f]{16}$/);
    assert.ok(x1.createdAt instanceof Date);

    assert.deepEqual(
      Object.fromEntries(status.columns.map((c) => [`${c.table}.${c.column}`, [c.sealedValues, c.onCurrentVersion, c.plaintextValues]])),
      {
        'tenants.twilio_auth_token': [1, 1, 1],
        'tenants.openai_api_key': [0, 0, 1],
        'tenants.airtable_api_key': [0, 0, 0],
        'tenants.airtable_mac_secret': [0, 0, 0],
        'tenants.podium_api_key': [0, 0, 0],
        'tenants.podium_webhook_secret': [0, 0, 0],
        'contacts.phone': [2, 0, 0],
        'contacts.name': [2, 0, 0],
        'messages.body': [8, 2, 1],
        'users.email': [0, 0, 0],
        'totp_factors.secret': [0, 0, 0],
        'signing_keys.private_jwk': [0, 0, 0],
        'sms_factors.phone': [0, 0, 0],
      },
    );
    assert.deepEqual(status.totals, {
      sealedValues: 13,
      onCurrentVersion: 3,
      plaintextValues: 3,
      damagedValues: 1,
      unknownVersionValues: 1,
      reencryptionProgress: 3 / 13,
    });
  });

  test('only the tables asked for are counted', async () => {
    const status = await keyStatus(db, [messagesSealed]);
    assert.equal(status.totals.sealedValues, 8);
    assert.deepEqual(
      status.columns.map((c) => c.column),
      ['body'],
    );
  });

  test('formats as a compact table', async () => {
    const text = formatKeyStatus(await keyStatus(db));
    const lines = text.split('\n');
    assert.match(lines[0]!, /^scope\s+version\s+state\s+kek\s+created\s+values\s+plaintext\s+on current$/);
    const xLine = lines.find((line) => line.startsWith(x))!;
    assert.match(xLine, /^\S+\s+v2\*\s+active\s+local:[0-9a-f]{16}\s+\d{4}-\d\d-\d\d\s+3\s+2\s+3\/10 \(30\.0%\)$/);
    assert.match(lines[lines.indexOf(xLine) + 1]!, /^\s+v1\s+active\s.*\s5$/);
    assert.ok(lines.some((line) => /^\s+\?\s+unknown\s.*\s1$/.test(line)));
    assert.ok(lines.some((line) => /^\s+!\s+damaged\s.*\s1$/.test(line)));
    assert.match(lines.find((line) => line.startsWith(z))!, /no key/);
    assert.match(text, /13 sealed values, 3 on their current version \(23\.0%\), 3 still in plaintext, 1 damaged, 1 under unknown versions$/);
  });
});
