import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { eq, sql } from 'drizzle-orm';
import { verifyAuditChain } from '../../src/store/audit-trail.js';
import { parseTenantDocument, type TenantDocument } from '../../src/config/tenant-document.js';
import { KekMismatchError, StoredKeyring } from '../../src/seal/keyring.js';
import { DataKeyRepository } from '../../src/store/repositories/data-keys.js';
import { readEnvelopeHeader } from '../../src/seal/envelope.js';
import { SealOpenError } from '../../src/seal/errors.js';
import { SealedFields } from '../../src/seal/sealed-fields.js';
import { Sealer } from '../../src/seal/sealer.js';
import { openDatabase, queryRows, type Db } from '../../src/store/connection.js';
import { migrate } from '../../src/store/migrate.js';
import { TenantRepository } from '../../src/store/repositories/tenants.js';
import { dataKeys, tenants } from '../../src/store/schema.js';
import { tenantsSealed } from '../../src/store/sealed-tables.js';
import { createTestDatabase, describeEachBackend, type TestDatabase } from '../helpers/database.js';
import { localProvider, openTestSealing, randomMasterKey } from '../helpers/sealing.js';

const CANARY = {
  twilio: 'canary-twilio-auth-token-5f1d2c',
  openai: 'sk-canary-openai-key-77a0e9b4c3',
  podiumKey: 'canary-podium-api-key-1b2c',
  podiumSecret: 'canary-podium-webhook-secret-9e8d',
};

function documentFor(name: string, overrides: Partial<TenantDocument> = {}): TenantDocument {
  return {
    name,
    twilio: { accountSid: `AC${'0'.repeat(31)}1`, authToken: CANARY.twilio, fromNumber: '+15550000001' },
    openai: { apiKey: CANARY.openai, model: 'gpt-4o-mini' },
    podium: { apiKey: CANARY.podiumKey, locationUid: 'loc-1', webhookSecret: CANARY.podiumSecret },
    ...overrides,
  };
}

const actor = { type: 'system' as const, id: 'test' };

await describeEachBackend('tenants with sealed provider secrets', (backend) => {
  let testDb: TestDatabase;
  let db: Db;
  let sealing: Awaited<ReturnType<typeof openTestSealing>>;
  let repository: TenantRepository;

  before(async () => {
    testDb = await createTestDatabase(backend);
    db = testDb.database.db;
    sealing = await openTestSealing(db);
    repository = new TenantRepository(db, sealing.fields, sealing.keyring);
  });
  after(async () => testDb.cleanup());

  test('put seals every secret under the tenant’s own data key; list and summary never carry secrets', async () => {
    const { tenant, created } = await repository.put('acme', documentFor('Acme Dental'), actor);
    assert.equal(created, true);
    assert.deepEqual(tenant.providers, ['twilio', 'openai', 'podium']);
    assert.equal(JSON.stringify(await repository.list()).includes('canary'), false);

    const [row] = await db.select().from(tenants).where(eq(tenants.id, tenant.id));
    for (const column of ['twilioAuthToken', 'openaiApiKey', 'podiumApiKey', 'podiumWebhookSecret'] as const) {
      const value = row![column]!;
      assert.deepEqual(readEnvelopeHeader(value), { formatVersion: 1, keyVersion: 1 }, column);
      for (const canary of Object.values(CANARY)) assert.equal(value.includes(canary), false);
    }
    assert.equal(row!.airtableApiKey, null);
    assert.equal(JSON.stringify(row!.settings).includes('canary'), false, 'settings hold no secrets');
    const keys = await db.select().from(dataKeys).where(eq(dataKeys.scope, tenant.id));
    assert.equal(keys.length, 1, 'the tenant got its own data key');

    const secrets = await repository.openSecrets(tenant.id);
    assert.equal(secrets.twilioAuthToken, CANARY.twilio);
    assert.equal(secrets.openaiApiKey, CANARY.openai);
    assert.equal(secrets.podiumWebhookSecret, CANARY.podiumSecret);
    assert.equal(secrets.airtableApiKey, null);
  });

  test('put again replaces the configuration; a provider left out loses its secrets', async () => {
    const { tenant, created } = await repository.put('acme', documentFor('Acme Dental', { podium: undefined }), actor);
    assert.equal(created, false);
    assert.deepEqual(tenant.providers, ['twilio', 'openai']);
    const secrets = await repository.openSecrets(tenant.id);
    assert.equal(secrets.podiumApiKey, null);
    assert.equal(secrets.twilioAuthToken, CANARY.twilio);
    const events = await queryRows<{ action: string }>(db, sql`select action from audit_events where target_id = ${tenant.id} order by seq`);
    assert.deepEqual(events.map((event) => event.action), ['tenant.create', 'tenant.update']);
  });

  test('a secret pasted into another tenant or another column does not open', async () => {
    const a = (await repository.findBySlug('acme'))!;
    const { tenant: b } = await repository.put('bravo', documentFor('Bravo'), actor);
    const [rowA] = await db.select().from(tenants).where(eq(tenants.id, a.id));
    // Another tenant's row: different scope, different row id, different key.
    await db.update(tenants).set({ twilioAuthToken: rowA!.twilioAuthToken }).where(eq(tenants.id, b.id));
    await assert.rejects(repository.openSecrets(b.id), (error: Error) => error instanceof SealOpenError && error.reason === 'authentication-failed');
    // Another column of the same row.
    await db.update(tenants).set({ openaiApiKey: rowA!.twilioAuthToken }).where(eq(tenants.id, a.id));
    assert.throws(
      () => sealing.fields.openRow(tenantsSealed, { scope: a.id, id: a.id }, { openaiApiKey: rowA!.twilioAuthToken }),
      (error: Error) => error instanceof SealOpenError && error.reason === 'authentication-failed',
    );
    await repository.put('acme', documentFor('Acme Dental'), actor);
    await repository.put('bravo', documentFor('Bravo'), actor);
  });

  test('rotation: new writes use the new version at once, older values still open', async () => {
    const acme = (await repository.findBySlug('acme'))!;
    const [before] = await db.select().from(tenants).where(eq(tenants.id, acme.id));
    const version = await sealing.keyring.rotate(acme.id);
    assert.equal(version, 2);
    await repository.put('bravo', documentFor('Bravo'), actor);
    const [stillOld] = await db.select().from(tenants).where(eq(tenants.id, acme.id));
    assert.equal(readEnvelopeHeader(stillOld!.twilioAuthToken!)!.keyVersion, 1);
    assert.equal((await repository.openSecrets(acme.id)).twilioAuthToken, CANARY.twilio);
    await repository.put('acme', documentFor('Acme Dental'), actor);
    const [after] = await db.select().from(tenants).where(eq(tenants.id, acme.id));
    assert.equal(readEnvelopeHeader(after!.twilioAuthToken!)!.keyVersion, 2);
    assert.notDeepEqual(after!.twilioAuthToken, before!.twilioAuthToken);
    assert.equal((await repository.openSecrets(acme.id)).twilioAuthToken, CANARY.twilio);
  });

  test('concurrent rotations get distinct versions and concurrent writes all stay readable', async () => {
    const acme = (await repository.findBySlug('acme'))!;
    const other = await openTestSealing(db, sealing.masterKey);
    const versions = await Promise.all([sealing.keyring.rotate(acme.id), other.keyring.rotate(acme.id), sealing.keyring.rotate(acme.id)]);
    assert.equal(new Set(versions).size, 3);
    const otherRepository = new TenantRepository(db, other.fields, other.keyring);
    await Promise.all([repository.put('acme', documentFor('Acme A'), actor), otherRepository.put('acme', documentFor('Acme B'), actor)]);
    // No refresh here: whichever keyring lags behind loads the newer version when it meets it.
    assert.equal((await repository.openSecrets(acme.id)).openaiApiKey, CANARY.openai);
    assert.equal((await otherRepository.openSecrets(acme.id)).openaiApiKey, CANARY.openai);
  });

  test('a process that has not seen another one\'s rotation opens what that one wrote after it', async () => {
    const acme = (await repository.findBySlug('acme'))!;
    const lagging = await openTestSealing(db, sealing.masterKey);
    const laggingRepository = new TenantRepository(db, lagging.fields, lagging.keyring);
    const before = lagging.keyring.current(acme.id).version;
    const rotated = await sealing.keyring.rotate(acme.id);
    assert.ok(rotated > before);
    await repository.put('acme', documentFor('Acme Dental'), actor);
    assert.equal(lagging.keyring.byVersion(acme.id, rotated), undefined, 'the lagging keyring has not loaded the new version yet');
    assert.equal((await laggingRepository.openSecrets(acme.id)).twilioAuthToken, CANARY.twilio);
    assert.ok(lagging.keyring.byVersion(acme.id, rotated) !== undefined);
  });

  test('a keyring opened later with the same KEK opens everything; another KEK is refused with one clear line', async () => {
    const reopened = await StoredKeyring.open(new DataKeyRepository(db), localProvider(sealing.masterKey));
    const fields = new SealedFields(new Sealer(reopened), reopened);
    const acme = (await repository.findBySlug('acme'))!;
    assert.equal((await new TenantRepository(db, fields, reopened).openSecrets(acme.id)).twilioAuthToken, CANARY.twilio);
    await assert.rejects(StoredKeyring.open(new DataKeyRepository(db), localProvider(randomMasterKey())), (error: Error) => {
      assert.ok(error instanceof KekMismatchError);
      assert.match(error.message, /^keys: data key .* is wrapped under local:[0-9a-f]{16}, but the configured key is local:[0-9a-f]{16}; .*keys rewrap/);
      assert.equal(error.message.includes('\n'), false);
      return true;
    });
  });

  test('rewrap moves every data key to a new KEK without touching data; then only the new KEK is needed', async () => {
    const newKey = randomMasterKey();
    const acme = (await repository.findBySlug('acme'))!;
    const [sealedBefore] = await db.select().from(tenants).where(eq(tenants.id, acme.id));
    const target = StoredKeyring.unloaded(new DataKeyRepository(db), localProvider(newKey));
    const result = await target.rewrapFrom(localProvider(sealing.masterKey));
    assert.ok(result.rewrapped >= 5);
    const [sealedAfter] = await db.select().from(tenants).where(eq(tenants.id, acme.id));
    assert.deepEqual(sealedAfter!.twilioAuthToken, sealedBefore!.twilioAuthToken, 'data rows untouched');

    const onlyNew = await StoredKeyring.open(new DataKeyRepository(db), localProvider(newKey));
    const fields = new SealedFields(new Sealer(onlyNew), onlyNew);
    for (const tenant of await repository.list()) {
      assert.equal((await new TenantRepository(db, fields, onlyNew).openSecrets(tenant.id)).twilioAuthToken, CANARY.twilio);
    }
    await assert.rejects(StoredKeyring.open(new DataKeyRepository(db), localProvider(sealing.masterKey)), KekMismatchError, 'the old KEK is no longer enough');
    // Wrapped keys in the table are not the DEKs in clear.
    const wrapped = await db.select({ wrappedKey: dataKeys.wrappedKey }).from(dataKeys);
    for (const { wrappedKey } of wrapped) assert.equal(wrappedKey!.length, 61);
    assert.equal((await verifyAuditChain(db)).intact, true);
  });

  if (backend === 'postgres') {
    test('a pg_dump holds none of the secrets in clear', async () => {
      const dump = execFileSync('pg_dump', ['--no-owner', '--data-only', testDb.url!], { maxBuffer: 64 * 1024 * 1024 }).toString('utf8');
      assert.ok(dump.includes('COPY public.tenants'), 'the dump has the tenants table');
      for (const canary of Object.values(CANARY)) assert.equal(dump.includes(canary), false, canary);
      // Also not hex-encoded, as bytea columns are dumped.
      for (const canary of Object.values(CANARY)) assert.equal(dump.includes(Buffer.from(canary).toString('hex')), false, `${canary} as hex`);
    });
  }
});

test('the embedded data folder holds none of the secrets in clear', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'cg-canary-'));
  const database = await openDatabase({ dataDir });
  await migrate(database);
  const sealing = await openTestSealing(database.db);
  await new TenantRepository(database.db, sealing.fields, sealing.keyring).put('acme', documentFor('Acme'), actor);
  await database.close();
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir)) {
      const path = join(dir, entry);
      if (statSync(path).isDirectory()) walk(path);
      else files.push(path);
    }
  };
  walk(dataDir);
  assert.ok(files.length > 10);
  for (const file of files) {
    const content = readFileSync(file);
    for (const canary of Object.values(CANARY)) assert.equal(content.includes(canary), false, `${canary} in ${file}`);
  }
});

test('tenant.json is validated and the error names the member', () => {
  const valid = JSON.stringify(documentFor('Acme'));
  assert.equal(parseTenantDocument(valid).name, 'Acme');
  const cases: Array<[unknown, RegExp]> = [
    [{ name: '' }, /tenant\.json: \/name: /],
    [{ name: 'x', twilio: { accountSid: 'AC1', authToken: 'x'.repeat(20), fromNumber: '+15550000001' } }, /tenant\.json: \/twilio\/accountSid: /],
    [{ name: 'x', twilio: { accountSid: `AC${'a'.repeat(32)}`, authToken: 'short', fromNumber: '+15550000001' } }, /tenant\.json: \/twilio\/authToken: /],
    [{ name: 'x', twilio: { accountSid: `AC${'a'.repeat(32)}`, authToken: 'x'.repeat(20), fromNumber: '555-0100' } }, /tenant\.json: \/twilio\/fromNumber: /],
    [{ name: 'x', twilo: {} }, /tenant\.json: \/twilo: Unexpected property/],
    [{ name: 'x', allowIps: { twilio: ['10.0.0.0/40'] } }, /tenant\.json: \/allowIps\/twilio\/0: expected an IP address or CIDR/],
    [{ name: 'x', airtable: { apiKey: 'p'.repeat(20), baseId: 'app12345678901234', table: 'T', fields: { phone: 'hidden' } } }, /tenant\.json: \/airtable\/fields\/phone: /],
    [{ name: 'x', airtable: { apiKey: 'p'.repeat(20), baseId: 'app12345678901234', table: 'T', fields: {}, webhookId: 'ach12345678901234' } }, /give webhookId and macSecretBase64 together/],
  ];
  for (const [document, expected] of cases) {
    assert.throws(() => parseTenantDocument(JSON.stringify(document)), expected, JSON.stringify(document));
  }
  assert.throws(() => parseTenantDocument('{"name": '), /tenant\.json: not valid JSON/);
  // A secret that fails validation is not echoed.
  try {
    parseTenantDocument(JSON.stringify({ name: 'x', openai: { apiKey: 'sk-tiny', model: 'm' } }));
    assert.fail('expected a validation error');
  } catch (error) {
    assert.equal((error as Error).message.includes('sk-tiny'), false);
  }
});
