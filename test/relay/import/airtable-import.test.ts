import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { createAirtableRecordsClient } from '../../../src/providers/airtable/records-client.js';
import { importAirtable, AirtableImportStopped, type AirtableImportOptions, type AirtableImportReport } from '../../../src/relay/import/airtable-import.js';
import { ImportRuns } from '../../../src/store/repositories/import-runs.js';
import { airtableDedupeKey } from '../../../src/relay/import/store-imported.js';
import type { TenantContext } from '../../../src/relay/tenant-directory.js';
import { queryRows } from '../../../src/store/connection.js';
import type { TenantSettings } from '../../../src/store/schema.js';
import type { FakeFields } from '../../fakes/airtable.js';
import { describeEachBackend } from '../../helpers/database.js';
import { openRelayHarness, randomPhone, type RelayHarness } from '../../helpers/relay.js';
import { storedText } from './export-fixtures.js';

type Policies = NonNullable<TenantSettings['airtable']>['fields'];

await describeEachBackend('import airtable', (backend) => {
  let harness: RelayHarness;
  before(async () => {
    harness = await openRelayHarness(backend);
  });
  after(async () => harness?.close());

  async function tenantWith(policies: Policies): Promise<TenantContext> {
    return harness.putTenant(undefined, (document) => {
      document.airtable!.fields = policies;
    });
  }

  function table(tenant: TenantContext): Map<string, FakeFields> {
    const airtable = tenant.settings.airtable!;
    const rows = harness.airtable.tables.get(`${airtable.baseId}/${airtable.table}`);
    assert.ok(rows, 'the fake has the table');
    return rows;
  }

  function addRow(tenant: TenantContext, fields: FakeFields): string {
    return harness.airtable.addRecord(tenant.settings.airtable!.baseId, tenant.settings.airtable!.table, fields);
  }

  function run(tenant: TenantContext, options: AirtableImportOptions = {}): Promise<AirtableImportReport> {
    const airtable = tenant.settings.airtable!;
    return importAirtable(
      { tenantId: tenant.id, airtable: { apiKey: tenant.secrets.airtableApiKey!, baseId: airtable.baseId, table: airtable.table }, policies: airtable.fields },
      { conversations: harness.relay.conversations, runs: new ImportRuns(harness.db) },
      createAirtableRecordsClient({ apiUrl: harness.airtable.url }),
      { pageSize: 2, ...options },
    );
  }

  async function messageRows(tenantId: string) {
    return queryRows<{ id: string; dedupe_key: string }>(harness.db, sql`select id, dedupe_key from messages where tenant_id = ${tenantId} order by dedupe_key`);
  }

  /** `count` plain-text rows of one contact, one minute apart, with canary bodies. */
  function addConversation(tenant: TenantContext, count: number): { phone: string; bodies: string[]; recordIds: string[] } {
    const phone = randomPhone();
    const bodies = Array.from({ length: count }, (_, index) => `canary-${randomBytes(4).toString('hex')}-${index}`);
    const recordIds = bodies.map((body, index) =>
      addRow(tenant, { Phone: phone, Body: body, Direction: index % 2 === 0 ? 'inbound' : 'outbound', Created: new Date(Date.UTC(2024, 2, 1, 10, index)).toISOString() }),
    );
    return { phone, bodies, recordIds };
  }

  test('rows are stored sealed, grouped by phone, and rewritten by the policy so no plain text stays in Airtable', async () => {
    const tenant = await tenantWith({ phone: 'masked', name: 'masked', body: 'sealed', aiReply: 'sealed' });
    const tag = randomBytes(4).toString('hex');
    const maria = randomPhone();
    const juan = randomPhone();
    const national = `(${maria.slice(2, 5)}) ${maria.slice(5, 8)}-${maria.slice(8)}`;
    const bodies = [`canary-${tag}-1 is Saturday free?`, `canary-${tag}-2 yes, 10am`, `canary-${tag}-3 my card is 4111111111111111`];
    const r1 = addRow(tenant, { Phone: national, Name: `Quintessa${tag} Lopez`, Body: bodies[0], Direction: 'inbound', Created: '2024-03-01T10:00:00.000Z' });
    const r2 = addRow(tenant, { Phone: maria, Body: bodies[1], Direction: 'Outbound', Author: 'ai', Created: '2024-03-01T10:01:00.000Z' });
    const relayRow = addRow(tenant, { 'Ciphergate ID': 'already-there', Phone: '+1••••••2671', Body: 'synced by the relay' });
    const blank = addRow(tenant, { 'Pause AI': true });
    const r3 = addRow(tenant, { Phone: juan, Name: `Bartholomew${tag} Ng`, Message: bodies[2], Created: '2024-03-02' });
    const unreadable = addRow(tenant, { Phone: `canary-${tag}-not-a-phone`, Body: `canary-${tag}-left` });

    const pages: number[] = [];
    const noted: string[] = [];
    const report = await run(tenant, { onPage: (progress) => pages.push(progress.rows), onUnreadable: (row) => noted.push(`${row.recordId} ${row.column}`) });
    assert.deepEqual(
      { ...report, runId: undefined },
      {
        runId: undefined,
        resumed: false,
        restarted: false,
        pages: 3,
        rows: 6,
        conversations: 2,
        messages: 3,
        rewritten: 3,
        skipped: 1,
        empty: 1,
        unreadable: [{ recordId: unreadable, column: 'Phone', reason: 'is not a phone number' }],
      },
    );
    assert.deepEqual(pages, [2, 4, 6], 'a progress report per page');
    assert.deepEqual(noted, [`${unreadable} Phone`]);

    // Our side: sealed, found through the blind index, in order, with Airtable's record ids as dedupe keys.
    const stored = await storedText(harness.db, tenant.id);
    for (const body of bodies) assert.equal(stored.includes(body.slice(0, 20)), false, 'a body is stored in plain text');
    assert.equal(stored.includes(`Quintessa${tag}`), false);
    assert.equal(stored.includes(maria.slice(2)), false);
    const [conversation] = await harness.relay.conversations.findByPhone(tenant.id, maria);
    const opened = await harness.relay.conversations.messagesPage({ id: conversation!.id, tenantId: tenant.id }, { limit: 10 });
    assert.deepEqual(
      opened.map(({ direction, author, body, status }) => ({ direction, author, body, status })),
      [
        { direction: 'inbound', author: 'contact', body: bodies[0], status: 'received' },
        { direction: 'outbound', author: 'ai', body: bodies[1], status: 'delivered' },
      ],
    );
    const keys = await harness.relay.conversations.messageIds(conversation!.id);
    assert.deepEqual(keys.map((key) => key.dedupeKey), [airtableDedupeKey(r1), airtableDedupeKey(r2)]);
    const contact = await harness.relay.conversations.openContact({ id: conversation!.contactId, tenantId: tenant.id });
    assert.deepEqual(contact, { phone: maria, name: `Quintessa${tag} Lopez` });
    const jobs = await queryRows<{ count: number }>(harness.db, sql`select count(*)::int as count from jobs where tenant_id = ${tenant.id}`);
    assert.equal(jobs[0]!.count, 0, 'imported history is never answered, sent or synced');
    assert.deepEqual(await harness.relay.conversations.dueForAirtable(tenant.id, 100), [], 'the rows are in Airtable already: the sync leaves them');
    const linked = await queryRows<{ dedupe_key: string; airtable_record_id: string }>(harness.db, sql`select dedupe_key, airtable_record_id from messages where tenant_id = ${tenant.id}`);
    for (const row of linked) assert.equal(airtableDedupeKey(row.airtable_record_id), row.dedupe_key, 'each message knows its row');

    // Airtable's side: masked and sealed by the policy, stamped with the message id.
    const rows = table(tenant);
    const [m1, m2] = keys.map((key) => key.id);
    const maskedMaria = `+1${'•'.repeat(6)}${maria.slice(-4)}`;
    assert.deepEqual(rows.get(r1), {
      Phone: maskedMaria,
      Name: 'Q. L.',
      Body: `sealed:${m1}`,
      Direction: 'inbound',
      Created: '2024-03-01T10:00:00.000Z',
      'Ciphergate ID': m1,
    });
    assert.deepEqual(rows.get(r2), { Phone: maskedMaria, Body: `sealed:${m2}`, Direction: 'Outbound', Author: 'ai', Created: '2024-03-01T10:01:00.000Z', 'Ciphergate ID': m2 });
    const [juanConversation] = await harness.relay.conversations.findByPhone(tenant.id, juan);
    const [m3] = (await harness.relay.conversations.messageIds(juanConversation!.id)).map((key) => key.id);
    assert.deepEqual(rows.get(r3), { Phone: `+1${'•'.repeat(6)}${juan.slice(-4)}`, Name: 'B. N.', Message: `sealed:${m3}`, Created: '2024-03-02', 'Ciphergate ID': m3 });
    assert.deepEqual(rows.get(relayRow), { 'Ciphergate ID': 'already-there', Phone: '+1••••••2671', Body: 'synced by the relay' }, 'rows with a Ciphergate ID are left alone');
    assert.deepEqual(rows.get(blank), { 'Pause AI': true });
    assert.deepEqual(rows.get(unreadable), { Phone: `canary-${tag}-not-a-phone`, Body: `canary-${tag}-left` }, 'an unreadable row is left as it is');
    const tableText = JSON.stringify([rows.get(r1), rows.get(r2), rows.get(r3)]);
    for (const canary of [...bodies, `Quintessa${tag}`, `Bartholomew${tag}`, maria.slice(2), juan.slice(2), national]) {
      assert.equal(tableText.includes(canary), false, `${canary} left in Airtable`);
    }

    const runs = await new ImportRuns(harness.db).list(tenant.id);
    assert.deepEqual(runs.map(({ state, nextOffset, imported, skipped }) => ({ state, nextOffset, imported, skipped })), [{ state: 'done', nextOffset: null, imported: 3, skipped: 1 }]);
    assert.deepEqual(harness.airtable.violations, []);
  });

  test('plain leaves a cell as it is; omitted (or no policy) clears it', async () => {
    const tenant = await tenantWith({ phone: 'plain', body: 'omitted' });
    const phone = randomPhone();
    const national = `${phone.slice(2, 5)}.${phone.slice(5, 8)}.${phone.slice(8)}`;
    const recordId = addRow(tenant, { Phone: national, Name: 'Maria Lopez', Body: 'canary-omitted', Created: '2024-03-01T10:00:00.000Z' });
    const report = await run(tenant);
    assert.equal(report.messages, 1);
    const [message] = await messageRows(tenant.id);
    assert.deepEqual(table(tenant).get(recordId), { Phone: national, Created: '2024-03-01T10:00:00.000Z', 'Ciphergate ID': message!.id });
    const [conversation] = await harness.relay.conversations.findByPhone(tenant.id, phone);
    const [opened] = await harness.relay.conversations.messagesPage({ id: conversation!.id, tenantId: tenant.id }, { limit: 1 });
    assert.equal(opened!.body, 'canary-omitted', 'cleared in Airtable, kept sealed here');
  });

  test('a run that stops on the second page continues from the recorded offset: everything once, nothing twice', async () => {
    const tenant = await tenantWith({ phone: 'masked', body: 'sealed' });
    const { recordIds, bodies } = addConversation(tenant, 5);
    harness.airtable.failNext({ kind: 'status', status: 500 }, { match: (request) => request.method === 'GET' && request.query.has('offset') });
    await assert.rejects(run(tenant), (error: unknown) => {
      assert.ok(error instanceof AirtableImportStopped, String(error));
      assert.equal(error.report.pages, 1);
      assert.equal(error.report.messages, 2);
      return true;
    });
    const runs = new ImportRuns(harness.db);
    const [stopped] = await runs.list(tenant.id);
    assert.equal(stopped!.state, 'running');
    assert.ok(stopped!.nextOffset, 'the offset of the page that failed is recorded');
    assert.equal(stopped!.imported, 2);

    const notes: string[] = [];
    const resumed = await run(tenant, { onNote: (note) => notes.push(note) });
    assert.equal(resumed.runId, stopped!.id);
    assert.deepEqual({ resumed: resumed.resumed, restarted: resumed.restarted, pages: resumed.pages, rows: resumed.rows, messages: resumed.messages, skipped: resumed.skipped }, {
      resumed: true,
      restarted: false,
      pages: 2,
      rows: 3,
      messages: 3,
      skipped: 0,
    });
    assert.match(notes.join('\n'), /continuing the import that stopped/);
    assertImportedOnce(tenant, recordIds, bodies, await messageRows(tenant.id));
    const [done] = await runs.list(tenant.id);
    assert.deepEqual({ state: done!.state, imported: done!.imported }, { state: 'done', imported: 5 });

    // A further run starts afresh and finds everything imported.
    const again = await run(tenant);
    assert.deepEqual({ resumed: again.resumed, messages: again.messages, skipped: again.skipped }, { resumed: false, messages: 0, skipped: 5 });
    assert.equal((await messageRows(tenant.id)).length, 5);
  });

  test('an offset Airtable has forgotten restarts the run from the first page, skipping what is done', async () => {
    const tenant = await tenantWith({ phone: 'masked', body: 'sealed' });
    const { recordIds, bodies } = addConversation(tenant, 5);
    harness.airtable.failNext({ kind: 'drop' }, { match: (request) => request.method === 'GET' && request.query.has('offset') });
    await assert.rejects(run(tenant), AirtableImportStopped);
    harness.airtable.expireListOffsets();
    const notes: string[] = [];
    const restarted = await run(tenant, { onNote: (note) => notes.push(note) });
    assert.deepEqual({ resumed: restarted.resumed, restarted: restarted.restarted, pages: restarted.pages, messages: restarted.messages, skipped: restarted.skipped }, {
      resumed: true,
      restarted: true,
      pages: 3,
      messages: 3,
      skipped: 2,
    });
    assert.match(notes.join('\n'), /starting again from the first page/);
    assertImportedOnce(tenant, recordIds, bodies, await messageRows(tenant.id));
  });

  test('a run that stored a page but could not rewrite it rewrites the same messages next time, with the same ids', async () => {
    const tenant = await tenantWith({ phone: 'masked', body: 'sealed' });
    const { recordIds, bodies } = addConversation(tenant, 3);
    harness.airtable.failNext({ kind: 'status', status: 503 }, { match: (request) => request.method === 'PATCH' });
    await assert.rejects(run(tenant), AirtableImportStopped);
    const storedFirst = await messageRows(tenant.id);
    assert.equal(storedFirst.length, 2, 'the first page is stored');
    assert.equal(table(tenant).get(recordIds[0]!)!['Body'], bodies[0], 'but not yet rewritten');

    const resumed = await run(tenant);
    assert.deepEqual({ messages: resumed.messages, rewritten: resumed.rewritten }, { messages: 1, rewritten: 3 });
    const rows = await messageRows(tenant.id);
    assert.deepEqual(rows.filter((row) => storedFirst.some((first) => first.id === row.id)).length, 2, 'the stored messages keep their ids');
    assertImportedOnce(tenant, recordIds, bodies, rows);
  });

  test('Created may be left empty: the row takes its Airtable createdTime', async () => {
    const tenant = await tenantWith({ phone: 'masked', body: 'sealed' });
    const phone = randomPhone();
    const airtable = tenant.settings.airtable!;
    const recordId = addRow(tenant, { Phone: phone, Body: 'no created column' });
    const report = await run(tenant);
    assert.deepEqual(report.unreadable, []);
    const listed = await fetch(`${harness.airtable.url}/v0/${airtable.baseId}/${encodeURIComponent(airtable.table)}/${recordId}`, { headers: { authorization: `Bearer ${tenant.secrets.airtableApiKey}` } });
    const { createdTime } = (await listed.json()) as { createdTime: string };
    const [conversation] = await harness.relay.conversations.findByPhone(tenant.id, phone);
    const [message] = await harness.relay.conversations.messagesPage({ id: conversation!.id, tenantId: tenant.id }, { limit: 1 });
    assert.equal(message!.createdAt.toISOString(), createdTime);
  });

  /** Every row rewritten with its own message, each message stored once, no body left in the table. */
  function assertImportedOnce(tenant: TenantContext, recordIds: string[], bodies: string[], stored: Array<{ id: string; dedupe_key: string }>): void {
    assert.deepEqual(stored.map((row) => row.dedupe_key).sort(), recordIds.map(airtableDedupeKey).sort(), 'one message per row');
    const rows = table(tenant);
    for (const recordId of recordIds) {
      const message = stored.find((row) => row.dedupe_key === airtableDedupeKey(recordId))!;
      assert.equal(rows.get(recordId)!['Ciphergate ID'], message.id);
      assert.equal(rows.get(recordId)!['Body'], `sealed:${message.id}`);
    }
    const text = JSON.stringify([...rows.values()]);
    for (const body of bodies) assert.equal(text.includes(body), false, 'a body left in Airtable');
  }
});
