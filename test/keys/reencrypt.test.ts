import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { sql } from 'drizzle-orm';
import { readEnvelopeHeader } from '../../src/seal/envelope.js';
import { keyStatus } from '../../src/keys/key-status.js';
import type { Progress } from '../../src/keys/progress.js';
import { reencrypt } from '../../src/keys/reencrypt.js';
import { queryRows, type Db } from '../../src/store/connection.js';
import { contactsSealed, messagesSealed, tenantsSealed } from '../../src/store/sealed-tables.js';
import { describeEachBackend } from '../helpers/database.js';
import { withMaintenanceKeys, type MaintenanceKeys } from '../helpers/sealing.js';
import { asBuffer, ensureConversation, insertSealedMessage, storedMessages, TENANT_SETTINGS } from '../helpers/stored-rows.js';

type Fixture = MaintenanceKeys & { db: Db };

/** What the application writes: every value sealed through SealedFields with the current key. */
async function insertTenant(f: Fixture, secret: string): Promise<string> {
  const id = randomUUID();
  await f.keyring.ensureScope(id);
  const sealed = f.fields.sealRow(tenantsSealed, { scope: id, id }, { twilioAuthToken: secret });
  await f.db.execute(sql`insert into tenants (id, slug, name, settings, twilio_auth_token, created_at, updated_at)
    values (${id}, ${`t-${id.slice(0, 8)}`}, 'Tenant', ${TENANT_SETTINGS}::jsonb, ${sealed.twilioAuthToken!}, now(), now())`);
  return id;
}

async function insertContact(f: Fixture, tenantId: string, phone: string, name: string): Promise<string> {
  const id = randomUUID();
  const sealed = f.fields.sealRow(contactsSealed, { scope: tenantId, id }, { phone, name });
  await f.db.execute(sql`insert into contacts (id, tenant_id, phone, phone_index, name, created_at)
    values (${id}, ${tenantId}, ${sealed.phone!}, ${sealed.phoneIndex!}, ${sealed.name!}, now())`);
  return id;
}




const versionOf = (value: Buffer) => readEnvelopeHeader(value)!.keyVersion;

await describeEachBackend('reencrypt', (backend) => {
  test('moves every value of a rotated scope to the current version, indexes included', async () => {
    await withMaintenanceKeys(backend, async (f) => {
      const { db, fields, keyring } = f;
      const a = await insertTenant(f, 'secret of a');
      const b = await insertTenant(f, 'secret of b');
      const contactA = await insertContact(f, a, '+14155550100', 'Zoë');
      const contactB = await insertContact(f, b, '+14155550100', 'Bob');
      const expected = new Map<string, string>();
      for (let i = 0; i < 40; i += 1) expected.set(await insertSealedMessage(db, fields, a, contactA, `a ${i} 👋`), `a ${i} 👋`);
      for (let i = 0; i < 10; i += 1) expected.set(await insertSealedMessage(db, fields, b, contactB, `b ${i}`), `b ${i}`);

      assert.equal(await keyring.rotate(a), 2);
      assert.equal(await keyring.rotate(b), 2);
      const before = await keyStatus(db);
      const scopeA = before.scopes.find((s) => s.scope === a)!;
      assert.deepEqual(
        scopeA.versions.map((v) => [v.version, v.current, v.values]),
        [
          [1, false, 1 + 2 + 40],
          [2, true, 0],
        ],
      );
      assert.equal(scopeA.reencryptionProgress, 0);

      // Only scope a: b stays on v1, still readable.
      const progress: Progress[] = [];
      const onlyA = await reencrypt({ db, fields, scope: a, batchSize: 7, onProgress: (p) => progress.push(p) });
      assert.deepEqual([onlyA.complete, onlyA.reencrypted, onlyA.unreadable], [true, 43, 0]);
      const totals = Object.fromEntries(onlyA.columns.filter((c) => c.reencrypted > 0).map((c) => [`${c.table}.${c.column}`, c.reencrypted]));
      assert.deepEqual(totals, { 'tenants.twilio_auth_token': 1, 'contacts.phone': 1, 'contacts.name': 1, 'messages.body': 40 });
      assert.deepEqual(progress.filter((p) => p.table === 'messages').at(-1), { table: 'messages', column: 'body', done: 40, total: 40 });
      for (const row of await storedMessages(db)) {
        assert.equal(versionOf(row.body), row.tenant_id === a ? 2 : 1);
        assert.equal(fields.openRow(messagesSealed, { scope: row.tenant_id, id: row.id }, { body: row.body }).body, expected.get(row.id));
      }

      const all = await reencrypt({ db, fields, batchSize: 7 });
      assert.equal(all.reencrypted, 1 + 2 + 10);
      assert.equal((await reencrypt({ db, fields })).reencrypted, 0, 'nothing left to move');
      for (const row of await storedMessages(db)) {
        assert.equal(versionOf(row.body), 2);
        assert.equal(fields.openRow(messagesSealed, { scope: row.tenant_id, id: row.id }, { body: row.body }).body, expected.get(row.id));
      }

      // The stored index is the current key's; lookups find the contact; the tenant's secret opens.
      for (const [tenantId, contactId, name] of [
        [a, contactA, 'Zoë'],
        [b, contactB, 'Bob'],
      ] as const) {
        const [row] = await queryRows<{ phone: Uint8Array; phone_index: Uint8Array; name: Uint8Array }>(
          db,
          sql`select phone, phone_index, name from contacts where id = ${contactId}`,
        );
        const current = fields.sealer.blindIndex({ tenantId, table: 'contacts', column: 'phone' }, '+1 415 555 0100', { normaliser: 'e164', lengthBytes: 16 });
        assert.ok(asBuffer(row!.phone_index).equals(current));
        assert.deepEqual(fields.openRow(contactsSealed, { scope: tenantId, id: contactId }, { phone: asBuffer(row!.phone), name: asBuffer(row!.name) }), {
          phone: '+14155550100',
          name,
        });
        const found = await queryRows<{ id: string }>(
          db,
          sql`select id::text from contacts where tenant_id = ${tenantId} and phone_index = any(${sql.param(fields.lookupIndexes(contactsSealed, 'phone', tenantId, '(415) 555-0100'))}::bytea[])`,
        );
        assert.deepEqual(found, [{ id: contactId }]);
      }
      const [tenant] = await queryRows<{ twilio_auth_token: Uint8Array }>(db, sql`select twilio_auth_token from tenants where id = ${a}`);
      assert.equal(fields.openRow(tenantsSealed, { scope: a, id: a }, { twilioAuthToken: asBuffer(tenant!.twilio_auth_token) }).twilioAuthToken, 'secret of a');

      const after = await keyStatus(db);
      assert.deepEqual(
        after.scopes.find((s) => s.scope === a)!.versions.map((v) => [v.version, v.values]),
        [
          [1, 0],
          [2, 43],
        ],
      );
      assert.equal(after.totals.reencryptionProgress, 1);

      const events = await queryRows<{ tenant_id: string | null; details: Record<string, number> }>(
        db,
        sql`select tenant_id, details from audit_events where action = 'keys.reencrypt' order by seq`,
      );
      assert.deepEqual(
        events.map((e) => [e.tenant_id, e.details.reencrypted]),
        [
          [a, 43],
          [null, 13],
          [null, 0],
        ],
      );
    });
  });

  test('writes made while it runs are never lost', { timeout: 120_000 }, async () => {
    await withMaintenanceKeys(backend, async (f) => {
      const { db, fields, keyring } = f;
      const tenantId = await insertTenant(f, 'secret');
      const contactId = await insertContact(f, tenantId, '+14155550100', 'Zoë');
      const conversationId = await ensureConversation(db, tenantId, contactId);
      const expected = new Map<string, string>();
      const ids: string[] = [];
      for (let chunk = 0; chunk < 10; chunk += 1) {
        // Seeded in chunks of one statement each, so the set-up stays quick on PGlite too.
        const rows = Array.from({ length: 100 }, (_, i) => {
          const id = randomUUID();
          const body = `old ${chunk * 100 + i}`;
          expected.set(id, body);
          ids.push(id);
          const sealedBody = fields.sealRow(messagesSealed, { scope: tenantId, id }, { body }).body!;
          return sql`(${id}, ${tenantId}, ${contactId}, ${conversationId}, 'inbound', 'contact', ${sealedBody}, ${`test:${id}`}, 'received', 0, now(), now())`;
        });
        await db.execute(sql`insert into messages (id, tenant_id, contact_id, conversation_id, direction, author, body, dedupe_key, status, status_rank, created_at, updated_at)
          values ${sql.join(rows, sql`, `)}`);
      }
      await keyring.rotate(tenantId);

      let running = true;
      const run = reencrypt({ db, fields, batchSize: 20 }).finally(() => (running = false));
      let writes = 0;
      while (running) {
        // What the application does meanwhile: new messages, and edits of old ones, each in its
        // own transaction and sealed under the current key.
        const insertedId = randomUUID();
        const insertedBody = `new ${writes}`;
        const editedId = ids[(writes * 37) % ids.length]!;
        const editedBody = `edited ${writes}`;
        await db.transaction(async (tx) => {
          const sealedNew = fields.sealRow(messagesSealed, { scope: tenantId, id: insertedId }, { body: insertedBody });
          await tx.execute(sql`insert into messages (id, tenant_id, contact_id, conversation_id, direction, author, body, dedupe_key, status, status_rank, created_at, updated_at)
            values (${insertedId}, ${tenantId}, ${contactId}, ${conversationId}, 'inbound', 'contact', ${sealedNew.body!}, ${`test:${insertedId}`}, 'received', 0, now(), now())`);
          const sealedEdit = fields.sealRow(messagesSealed, { scope: tenantId, id: editedId }, { body: editedBody });
          await tx.execute(sql`update messages set body = ${sealedEdit.body!} where id = ${editedId}`);
        });
        expected.set(insertedId, insertedBody);
        expected.set(editedId, editedBody);
        writes += 1;
      }
      const result = await run;
      assert.ok(writes > 0, 'some writes happened while it ran');
      assert.ok(result.reencrypted <= 1000);

      const rows = await storedMessages(db);
      assert.equal(rows.length, 1000 + writes);
      for (const row of rows) {
        assert.equal(versionOf(row.body), 2);
        assert.equal(fields.openRow(messagesSealed, { scope: tenantId, id: row.id }, { body: row.body }).body, expected.get(row.id));
      }
    });
  });

  test('a damaged value is counted and left alone; the rest moves on', async () => {
    await withMaintenanceKeys(backend, async (f) => {
      const { db, fields, keyring } = f;
      const tenantId = await insertTenant(f, 'secret');
      const contactId = await insertContact(f, tenantId, '+14155550100', 'Zoë');
      const ids: string[] = [];
      for (let i = 0; i < 5; i += 1) ids.push(await insertSealedMessage(db, fields, tenantId, contactId, `body ${i}`));
      // Flip one ciphertext bit of one message.
      await db.execute(sql`update messages set body = set_byte(body, 20, get_byte(body, 20) # 1) where id = ${ids[2]!}`);
      await keyring.rotate(tenantId);
      const result = await reencrypt({ db, fields, tables: [messagesSealed] });
      assert.deepEqual([result.reencrypted, result.unreadable, result.unreadableReasons], [4, 1, { 'authentication-failed': 1 }]);
      const [event] = await queryRows<{ details: Record<string, number> }>(db, sql`select details from audit_events where action = 'keys.reencrypt'`);
      assert.deepEqual(event!.details, { reencrypted: 4, unreadable: 1 });
      const damaged = (await storedMessages(db)).find((row) => row.id === ids[2])!;
      assert.equal(versionOf(damaged.body), 1);
    });
  });
});
