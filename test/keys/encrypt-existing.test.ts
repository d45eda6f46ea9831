import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { join } from 'node:path';
import { test } from 'node:test';
import { sql } from 'drizzle-orm';
import { readEnvelopeHeader } from '../../src/seal/envelope.js';
import { MissingKeyError } from '../../src/seal/errors.js';
import { EncryptExistingError, encryptExisting } from '../../src/keys/encrypt-existing.js';
import { createProgressReporter, type Progress } from '../../src/keys/progress.js';
import { SealedFields } from '../../src/seal/sealed-fields.js';
import { InMemoryKeyring, Sealer } from '../../src/seal/sealer.js';
import { queryRows, type Db } from '../../src/store/connection.js';
import { contactsSealed, messagesSealed, tenantsSealed } from '../../src/store/sealed-tables.js';
import { REPO_ROOT } from '../helpers/cli.js';
import { describeEachBackend } from '../helpers/database.js';
import { openMaintenanceKeys, withMaintenanceKeys } from '../helpers/sealing.js';
import { asBuffer, ensureConversation, insertSealedMessage, storedMessages, TENANT_SETTINGS } from '../helpers/stored-rows.js';

/** A tenant row as an older version stored it: provider secrets in plaintext. */
async function insertPlainTenant(db: Db, secrets: { twilio?: string | null; openai?: string | null; airtable?: string | null } = {}): Promise<string> {
  const id = randomUUID();
  const bytes = (value: string | null | undefined) => (value == null ? sql`null` : sql`convert_to(${value}, 'UTF8')`);
  await db.execute(sql`insert into tenants (id, slug, name, settings, twilio_auth_token, openai_api_key, airtable_api_key, created_at, updated_at)
    values (${id}, ${`t-${id.slice(0, 8)}`}, 'Tenant', ${TENANT_SETTINGS}::jsonb, ${bytes(secrets.twilio)}, ${bytes(secrets.openai)}, ${bytes(secrets.airtable)}, now(), now())`);
  return id;
}

/** A plaintext contact; the index column is NOT NULL and unique, so it gets a distinct placeholder. */
async function insertPlainContact(db: Db, tenantId: string, phone: string, name: string | null): Promise<string> {
  const id = randomUUID();
  await db.execute(sql`insert into contacts (id, tenant_id, phone, phone_index, name, created_at)
    values (${id}, ${tenantId}, convert_to(${phone}, 'UTF8'), decode(${randomBytes(4).toString('hex')}, 'hex'),
            ${name === null ? sql`null` : sql`convert_to(${name}, 'UTF8')`}, now())`);
  return id;
}

async function insertPlainMessage(db: Db, tenantId: string, contactId: string, body: string | Buffer): Promise<string> {
  const id = randomUUID();
  const value = typeof body === 'string' ? sql`convert_to(${body}, 'UTF8')` : sql`decode(${body.toString('hex')}, 'hex')`;
  const conversationId = await ensureConversation(db, tenantId, contactId);
  await db.execute(sql`insert into messages (id, tenant_id, contact_id, conversation_id, direction, author, body, dedupe_key, status, status_rank, created_at, updated_at)
    values (${id}, ${tenantId}, ${contactId}, ${conversationId}, 'inbound', 'contact', ${value}, ${`test:${id}`}, 'received', 0, now(), now())`);
  return id;
}




async function countWhere(db: Db, condition: ReturnType<typeof sql>): Promise<number> {
  const [row] = await queryRows<{ n: number }>(db, sql`select count(*)::int as n from ${condition}`);
  return row!.n;
}

test('progress: one bar redrawn in place on a terminal, a line now and then elsewhere', () => {
  const body = (done: number, total = 1000): Progress => ({ table: 'messages', column: 'body', done, total });
  let clock = 0;
  const lines: string[] = [];
  const log = createProgressReporter({ label: 'encrypt-existing', stream: { write: (chunk: string) => lines.push(chunk) }, intervalMs: 10_000, now: () => clock });
  log.update(body(0));
  clock += 4_000;
  log.update(body(100)); // too soon
  clock += 7_000;
  log.update(body(120)); // interval passed
  clock += 1_000;
  log.update(body(500)); // too soon, printed by finish()
  log.finish();
  log.update(body(1000)); // a finished column is always printed once
  log.update(body(1000));
  assert.deepEqual(lines, [
    'encrypt-existing: messages.body 0/1000 (0%)\n',
    'encrypt-existing: messages.body 120/1000 (12%)\n',
    'encrypt-existing: messages.body 500/1000 (50%)\n',
    'encrypt-existing: messages.body 1000/1000 (100%)\n',
  ]);

  const screen: string[] = [];
  const bar = createProgressReporter({ label: 'reencrypt', stream: { write: (chunk: string) => screen.push(chunk), isTTY: true, columns: 100 } });
  bar.update(body(250));
  bar.update({ table: 'contacts', column: 'phone', done: 1, total: 2 });
  bar.finish();
  assert.match(screen[0]!, /^\r\[#+\.+\] reencrypt: messages\.body 250\/1000 \(25%\)\x1b\[K$/);
  assert.equal(screen[1], '\n', 'a new column starts on a new line');
  assert.match(screen[2]!, /contacts\.phone 1\/2 \(50%\)/);
  assert.equal(screen.at(-1), '\n');
});

await describeEachBackend('encrypt-existing', (backend) => {
  test('seals every plaintext value with its blind index, leaves sealed values alone, and is idempotent', async () => {
    await withMaintenanceKeys(backend, async ({ db, ...keys }) => {
      const { fields } = keys;
      const canary = `CANARY-${randomBytes(6).toString('hex')}`;
      const tenantId = await insertPlainTenant(db, { twilio: `${canary}-twilio-token`, openai: null, airtable: '' });
      const zoe = await insertPlainContact(db, tenantId, '+1 (415) 555-0100', 'Zoë 👋');
      const noName = await insertPlainContact(db, tenantId, '415-555-0101', null);

      // Already sealed by the application: needs the tenant's key now, and must come out untouched.
      await keys.keyring.ensureScope(tenantId);
      const sealedContactId = randomUUID();
      const sealedContact = fields.sealRow(contactsSealed, { scope: tenantId, id: sealedContactId }, { phone: '+14155550102', name: 'Already sealed' });
      await db.execute(sql`insert into contacts (id, tenant_id, phone, phone_index, name, created_at)
        values (${sealedContactId}, ${tenantId}, ${sealedContact.phone!}, ${sealedContact.phoneIndex!}, ${sealedContact.name!}, now())`);
      const sealedMessageId = await insertSealedMessage(db, fields, tenantId, zoe, 'sealed by the app');

      const plaintexts = new Map<string, string>();
      const bodies = [`${canary} in a message`, '', 'Grüße 👋 你好', 'x'.repeat(5000), ...Array.from({ length: 20 }, (_, i) => `message ${i}`)];
      for (const body of bodies) plaintexts.set(await insertPlainMessage(db, tenantId, bodies.indexOf(body) % 2 ? zoe : noName, body), body);
      const sealedBefore = (await storedMessages(db)).find((row) => row.id === sealedMessageId)!.body;
      const [sealedContactBefore] = await queryRows<{ phone: Uint8Array; phone_index: Uint8Array; name: Uint8Array }>(
        db,
        sql`select phone, phone_index, name from contacts where id = ${sealedContactId}`,
      );

      const progress: Progress[] = [];
      const result = await encryptExisting({ db, fields, batchSize: 4, onProgress: (p) => progress.push(p) });

      assert.equal(result.complete, true);
      const totals = Object.fromEntries(result.columns.map((c) => [`${c.table}.${c.column}`, { sealed: c.sealed, alreadySealed: c.alreadySealed }]));
      assert.deepEqual(totals, {
        'tenants.twilio_auth_token': { sealed: 1, alreadySealed: 0 },
        'tenants.openai_api_key': { sealed: 0, alreadySealed: 0 },
        'tenants.airtable_api_key': { sealed: 1, alreadySealed: 0 },
        'tenants.airtable_mac_secret': { sealed: 0, alreadySealed: 0 },
        'tenants.podium_api_key': { sealed: 0, alreadySealed: 0 },
        'tenants.podium_webhook_secret': { sealed: 0, alreadySealed: 0 },
        'contacts.phone': { sealed: 2, alreadySealed: 1 },
        'contacts.name': { sealed: 1, alreadySealed: 1 },
        'messages.body': { sealed: bodies.length, alreadySealed: 1 },
        'users.email': { sealed: 0, alreadySealed: 0 },
        'totp_factors.secret': { sealed: 0, alreadySealed: 0 },
        'signing_keys.private_jwk': { sealed: 0, alreadySealed: 0 },
        'sms_factors.phone': { sealed: 0, alreadySealed: 0 },
      });
      assert.equal(result.sealed, 2 + 3 + bodies.length);

      // Every message opens to exactly what it held, the empty one included.
      for (const row of await storedMessages(db)) {
        assert.ok(readEnvelopeHeader(row.body), 'every body is an envelope now');
        const expected = row.id === sealedMessageId ? 'sealed by the app' : plaintexts.get(row.id);
        assert.equal(fields.openRow(messagesSealed, { scope: tenantId, id: row.id }, { body: row.body }).body, expected);
      }
      assert.ok(sealedBefore.equals((await storedMessages(db)).find((row) => row.id === sealedMessageId)!.body), 'a sealed value is not touched');

      // The tenant is its own scope; null stays null, the empty secret is sealed as "".
      const [tenant] = await queryRows<{ twilio_auth_token: Uint8Array; openai_api_key: null; airtable_api_key: Uint8Array }>(
        db,
        sql`select twilio_auth_token, openai_api_key, airtable_api_key from tenants where id = ${tenantId}`,
      );
      assert.deepEqual(
        fields.openRow(tenantsSealed, { scope: tenantId, id: tenantId }, {
          twilioAuthToken: asBuffer(tenant!.twilio_auth_token),
          openaiApiKey: tenant!.openai_api_key,
          airtableApiKey: asBuffer(tenant!.airtable_api_key),
        }),
        { twilioAuthToken: `${canary}-twilio-token`, openaiApiKey: null, airtableApiKey: '' },
      );

      // Contacts: sealed, and found again by their blind index in any spelling of the number.
      const findContact = async (phone: string) =>
        (
          await queryRows<{ id: string }>(
            db,
            sql`select id::text from contacts where tenant_id = ${tenantId} and phone_index = any(${sql.param(fields.lookupIndexes(contactsSealed, 'phone', tenantId, phone))}::bytea[])`,
          )
        ).map((row) => row.id);
      assert.deepEqual(await findContact('+14155550100'), [zoe]);
      assert.deepEqual(await findContact('(415) 555-0101'), [noName]);
      assert.deepEqual(await findContact('+1 415 555 0102'), [sealedContactId]);
      const [zoeRow] = await queryRows<{ phone: Uint8Array; name: Uint8Array }>(db, sql`select phone, name from contacts where id = ${zoe}`);
      assert.deepEqual(fields.openRow(contactsSealed, { scope: tenantId, id: zoe }, { phone: asBuffer(zoeRow!.phone), name: asBuffer(zoeRow!.name) }), {
        phone: '+1 (415) 555-0100',
        name: 'Zoë 👋',
      });
      const [sealedContactAfter] = await queryRows<{ phone: Uint8Array; phone_index: Uint8Array; name: Uint8Array }>(
        db,
        sql`select phone, phone_index, name from contacts where id = ${sealedContactId}`,
      );
      assert.deepEqual(sealedContactAfter, sealedContactBefore, 'an already sealed contact keeps its bytes and index');

      // The canary is nowhere in the stored bytes.
      const canaryBytes = sql`convert_to(${canary}, 'UTF8')`;
      assert.equal(await countWhere(db, sql`messages where position(${canaryBytes} in body) > 0`), 0);
      assert.equal(await countWhere(db, sql`tenants where position(${canaryBytes} in coalesce(twilio_auth_token, ''::bytea)) > 0`), 0);
      assert.equal(await countWhere(db, sql`messages where substr(body, 1, 1) <> decode('c1', 'hex')`), 0);

      // Progress: per column, non-decreasing, ending at the total.
      const bodyProgress = progress.filter((p) => p.table === 'messages' && p.column === 'body');
      assert.ok(bodyProgress.length >= bodies.length / 4, 'one report per batch at least');
      assert.deepEqual(bodyProgress[0], { table: 'messages', column: 'body', done: 0, total: bodies.length });
      assert.deepEqual(bodyProgress.at(-1), { table: 'messages', column: 'body', done: bodies.length, total: bodies.length });
      for (let i = 1; i < bodyProgress.length; i += 1) assert.ok(bodyProgress[i]!.done >= bodyProgress[i - 1]!.done);

      // A second run finds nothing to do and changes no byte.
      const snapshot = await queryRows<{ digest: string }>(
        db,
        sql`select md5(string_agg(encode(body, 'hex'), ',' order by id)) as digest from messages`,
      );
      const again = await encryptExisting({ db, fields, batchSize: 4 });
      assert.equal(again.sealed, 0);
      assert.equal(again.alreadySealed, result.sealed + result.alreadySealed);
      assert.deepEqual(await queryRows(db, sql`select md5(string_agg(encode(body, 'hex'), ',' order by id)) as digest from messages`), snapshot);

      // One audit event per run, counts only.
      const events = await queryRows<{ outcome: string; details: Record<string, unknown> }>(
        db,
        sql`select outcome, details from audit_events where action = 'keys.encrypt-existing' order by seq`,
      );
      assert.deepEqual(
        events.map((e) => [e.outcome, e.details.sealed]),
        [
          ['success', result.sealed],
          ['success', 0],
        ],
      );
      assert.ok(!JSON.stringify(events).includes(canary));
    });
  });

  test('a value it cannot seal faithfully stops the run with the row id; its batch stays as it was', async () => {
    await withMaintenanceKeys(backend, async ({ db, ...keys }) => {
      const tenantId = await insertPlainTenant(db);
      const good = await insertPlainContact(db, tenantId, '+14155550100', 'Good');
      // Names no sender at all (no digit, no letter), so no blind index can be computed for it.
      // (Text such as "call me maybe" is a sender now: alphanumeric sender ids are stored as received.)
      const bad = await insertPlainContact(db, tenantId, '--- / ---', 'Bad');
      await assert.rejects(
        encryptExisting({ db, fields: keys.fields, tables: [contactsSealed], batchSize: 100 }),
        (error: unknown) =>
          error instanceof EncryptExistingError && error.rowId === bad && error.column === 'phone' && !error.message.includes('--- / ---'),
      );
      assert.equal(await countWhere(db, sql`contacts where substr(phone, 1, 1) = decode('c1', 'hex')`), 0, 'the whole batch rolled back');
      const [event] = await queryRows<{ outcome: string }>(db, sql`select outcome from audit_events where action = 'keys.encrypt-existing'`);
      assert.equal(event!.outcome, 'failure');

      await db.execute(sql`update contacts set phone = convert_to('+14155550101', 'UTF8') where id = ${bad}`);
      const message = await insertPlainMessage(db, tenantId, good, Buffer.from([0x68, 0x69, 0xff]));
      await assert.rejects(
        encryptExisting({ db, fields: keys.fields, batchSize: 100 }),
        (error: unknown) => error instanceof EncryptExistingError && error.rowId === message && /UTF-8/.test(error.message),
      );
      assert.equal(await countWhere(db, sql`contacts where substr(phone, 1, 1) = decode('c1', 'hex')`), 2, 'tables before the failure stay sealed');
    });
  });

  test('stops between batches when aborted and carries on where it stopped', async () => {
    await withMaintenanceKeys(backend, async ({ db, ...keys }) => {
      const tenantId = await insertPlainTenant(db);
      const contact = await insertPlainContact(db, tenantId, '+14155550100', null);
      const expected = new Map<string, string>();
      for (let i = 0; i < 30; i += 1) expected.set(await insertPlainMessage(db, tenantId, contact, `body ${i}`), `body ${i}`);
      const controller = new AbortController();
      const first = await encryptExisting({
        db,
        fields: keys.fields,
        tables: [messagesSealed],
        batchSize: 7,
        concurrency: 1,
        signal: controller.signal,
        onProgress: (p) => {
          if (p.done > 0) controller.abort();
        },
      });
      assert.equal(first.complete, false);
      assert.equal(first.sealed, 7);
      const second = await encryptExisting({ db, fields: keys.fields, tables: [messagesSealed], batchSize: 7, concurrency: 1 });
      assert.deepEqual([second.complete, second.sealed, second.alreadySealed], [true, 23, 7]);
      for (const row of await storedMessages(db)) {
        assert.equal(keys.fields.openRow(messagesSealed, { scope: tenantId, id: row.id }, { body: row.body }).body, expected.get(row.id));
      }
    });
  });

  test('several key ranges at once seal every row exactly once', async () => {
    await withMaintenanceKeys(backend, async ({ db, ...keys }) => {
      const tenantId = await insertPlainTenant(db);
      const contact = await insertPlainContact(db, tenantId, '+14155550100', null);
      const conversationId = await ensureConversation(db, tenantId, contact);
      await db.execute(sql`insert into messages (id, tenant_id, contact_id, conversation_id, direction, author, body, dedupe_key, status, status_rank, created_at, updated_at)
        select gen_random_uuid(), ${tenantId}, ${contact}, ${conversationId}, 'inbound', 'contact', convert_to('body ' || i, 'UTF8'), 'test:' || i, 'received', 0, now(), now()
        from generate_series(1, 500) as i`);
      const progress: Progress[] = [];
      const result = await encryptExisting({ db, fields: keys.fields, tables: [messagesSealed], batchSize: 20, concurrency: 4, onProgress: (p) => progress.push(p) });
      assert.deepEqual([result.complete, result.sealed], [true, 500]);
      assert.deepEqual(progress.at(-1), { table: 'messages', column: 'body', done: 500, total: 500 });
      const bodies = (await storedMessages(db)).map((row) => keys.fields.openRow(messagesSealed, { scope: tenantId, id: row.id }, { body: row.body }).body);
      assert.deepEqual(bodies.sort(), Array.from({ length: 500 }, (_, i) => `body ${i + 1}`).sort());
    });
  });

  test('works with an in-memory keyring, which cannot create keys', async () => {
    await withMaintenanceKeys(backend, async ({ db }) => {
      const tenantId = await insertPlainTenant(db);
      const contact = await insertPlainContact(db, tenantId, '+14155550100', null);
      const id = await insertPlainMessage(db, tenantId, contact, 'hello');
      const keyring = new InMemoryKeyring();
      const fields = new SealedFields(new Sealer(keyring), keyring);
      await assert.rejects(encryptExisting({ db, fields, tables: [messagesSealed] }), MissingKeyError);
      keyring.add(tenantId, 3, randomBytes(32));
      const result = await encryptExisting({ db, fields, tables: [messagesSealed] });
      assert.equal(result.sealed, 1);
      const [row] = await storedMessages(db);
      assert.equal(readEnvelopeHeader(row!.body)?.keyVersion, 3);
      assert.equal(fields.openRow(messagesSealed, { scope: tenantId, id }, { body: row!.body }).body, 'hello');
    });
  });

  if (backend === 'postgres') {
    test('a tenant that appears mid-run gets its key, and its batch is sealed after all', async () => {
      await withMaintenanceKeys('postgres', async ({ db, ...keys }) => {
        const tenantId = await insertPlainTenant(db);
        const contact = await insertPlainContact(db, tenantId, '+14155550100', null);
        for (let i = 0; i < 12; i += 1) await insertPlainMessage(db, tenantId, contact, `body ${i}`);
        const lateTenant = randomUUID();
        const lateMessage = 'ffffffff-ffff-4fff-bfff-ffffffffffff'; // last in key order, so a later batch meets it
        const result = await encryptExisting({
          db,
          fields: keys.fields,
          tables: [messagesSealed],
          batchSize: 5,
          concurrency: 1,
          beforeCommit: async (batch) => {
            if (batch.number !== 1) return;
            // Another connection, committed at once: the table was counted before this tenant existed.
            await db.execute(sql`insert into tenants (id, slug, name, settings, created_at, updated_at)
              values (${lateTenant}, 'late', 'Late', ${TENANT_SETTINGS}::jsonb, now(), now())`);
            const lateContact = await insertPlainContact(db, lateTenant, '+14155550199', null);
            const lateConversation = await ensureConversation(db, lateTenant, lateContact);
            await db.execute(sql`insert into messages (id, tenant_id, contact_id, conversation_id, direction, author, body, dedupe_key, status, status_rank, created_at, updated_at)
              values (${lateMessage}, ${lateTenant}, ${lateContact}, ${lateConversation}, 'inbound', 'contact', convert_to('late body', 'UTF8'), 'test:late', 'received', 0, now(), now())`);
          },
        });
        assert.equal(result.sealed, 13);
        assert.equal(keys.keyring.current(lateTenant).version, 1);
        const late = (await storedMessages(db)).find((row) => row.id === lateMessage)!;
        assert.equal(keys.fields.openRow(messagesSealed, { scope: lateTenant, id: lateMessage }, { body: late.body }).body, 'late body');
      });
    });

    test('a process killed mid-run, even mid-batch, loses nothing and seals nothing twice', { timeout: 180_000 }, async () => {
      await withMaintenanceKeys('postgres', async ({ testDb, db }) => {
        const masterKey = randomBytes(32).toString('base64');
        const tenantId = await insertPlainTenant(db);
        const contact = await insertPlainContact(db, tenantId, '+14155550100', null);
        const total = 20_000;
        // Row i has a uuid ending in i and a body derived from i, so every row can be checked without a copy.
        const conversationId = await ensureConversation(db, tenantId, contact);
        await db.execute(sql`insert into messages (id, tenant_id, contact_id, conversation_id, direction, author, body, dedupe_key, status, status_rank, created_at, updated_at)
          select ('00000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid, ${tenantId}, ${contact}, ${conversationId}, 'inbound', 'contact',
                 convert_to('message ' || i || ' Zoë 👋 ' || repeat('x', 120), 'UTF8'), 'test:' || i, 'received', 0, now(), now()
          from generate_series(1, ${total}) as i`);
        const expectedBody = (id: string) => `message ${parseInt(id.slice(24), 16)} Zoë 👋 ${'x'.repeat(120)}`;
        const sealedCount = () => countWhere(db, sql`messages where substr(body, 1, 1) = decode('c1', 'hex')`);

        const startWorker = (mode: string, concurrency: number) => {
          const child = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'test/helpers/encrypt-existing-worker.ts'), mode], {
            cwd: REPO_ROOT,
            env: { ...process.env, WORKER_DATABASE_URL: testDb.url!, WORKER_MASTER_KEY: masterKey, WORKER_BATCH_SIZE: '250', WORKER_CONCURRENCY: String(concurrency) },
            stdio: ['ignore', 'pipe', 'inherit'],
          });
          const lines: Array<Record<string, number>> = [];
          let buffered = '';
          child.stdout!.on('data', (chunk: Buffer) => {
            buffered += chunk.toString();
            const parts = buffered.split('\n');
            buffered = parts.pop()!;
            for (const part of parts) if (part.startsWith('{')) lines.push(JSON.parse(part) as Record<string, number>);
          });
          return { child, lines };
        };
        const waitFor = async (lines: Array<Record<string, number>>, child: ReturnType<typeof spawn>, predicate: (line: Record<string, number>) => boolean) => {
          const deadline = Date.now() + 60_000;
          while (!lines.some(predicate)) {
            if (child.exitCode !== null) throw new Error(`worker exited with ${child.exitCode} too early`);
            if (Date.now() > deadline) throw new Error('worker made no progress in time');
            await new Promise((resolve) => setTimeout(resolve, 5));
          }
        };
        const kill = async (child: ReturnType<typeof spawn>) => {
          child.kill('SIGKILL');
          const [, signal] = await once(child, 'exit');
          assert.equal(signal, 'SIGKILL');
        };

        // 1: killed at whatever point it has reached once it has committed a few batches, with
        // two key ranges in flight.
        const first = startWorker('run', 2);
        await waitFor(first.lines, first.child, (line) => (line.done ?? 0) >= 1000);
        await kill(first.child);
        const afterFirst = await sealedCount();
        assert.ok(afterFirst > 0 && afterFirst < total, `partly sealed (${afterFirst})`);

        // 2: killed while it holds a batch written but not committed (one range, so nothing
        // else commits meanwhile).
        const second = startWorker('hang-in-batch:3', 1);
        await waitFor(second.lines, second.child, (line) => line.inBatch === 3);
        const committedBeforeKill = await sealedCount();
        await kill(second.child);
        assert.equal(await sealedCount(), committedBeforeKill, 'the written batch was never committed');
        assert.ok(committedBeforeKill >= afterFirst + 2 * 250, 'the two batches before it were');

        // 3: a run to the end picks up exactly what is left.
        const keys = await openMaintenanceKeys(db, masterKey);
        const final = await encryptExisting({ db, fields: keys.fields, tables: [messagesSealed], batchSize: 1000 });
        assert.equal(final.complete, true);
        assert.equal(final.alreadySealed, committedBeforeKill);
        assert.equal(final.sealed + final.alreadySealed, total);
        assert.equal(await sealedCount(), total);

        // Twice-sealed would open to an envelope, not to the body; a lost row would be missing.
        const rows = await storedMessages(db);
        assert.equal(rows.length, total);
        for (const row of rows) {
          assert.equal(keys.fields.openRow(messagesSealed, { scope: tenantId, id: row.id }, { body: row.body }).body, expectedBody(row.id));
        }
        keys.keyring.close();
      });
    });
  }
});
