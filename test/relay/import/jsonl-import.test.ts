import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { ImportLineError } from '../../../src/relay/import/mongo-export.js';
import { importJsonl, JsonlImportStopped } from '../../../src/relay/import/jsonl-import.js';
import { jsonlDedupeKey } from '../../../src/relay/import/store-imported.js';
import { queryRows } from '../../../src/store/connection.js';
import { describeEachBackend } from '../../helpers/database.js';
import { openRelayHarness, randomPhone, type RelayHarness } from '../../helpers/relay.js';
import { badPhoneLine, exportFixture, storedText } from './export-fixtures.js';

await describeEachBackend('import jsonl', (backend) => {
  let harness: RelayHarness;
  before(async () => {
    harness = await openRelayHarness(backend);
  });
  after(async () => harness?.close());

  const run = (tenantId: string, text: string, options: Parameters<typeof importJsonl>[2] = {}) =>
    importJsonl(Readable.from([Buffer.from(text)]), { tenantId, conversations: harness.relay.conversations }, options);

  test('a mongoexport file ($oid, $date, relaxed and canonical) is stored sealed, with the export dates, and nothing is enqueued', async () => {
    const tenant = await harness.putTenant();
    const fixture = exportFixture();
    const progress: number[] = [];
    const counts = await run(tenant.id, fixture.text, { progressEvery: 2, onProgress: (seen) => void progress.push(seen.lineNumber) });
    assert.deepEqual(counts, { conversations: 3, messages: 5, skipped: 0, lineNumber: 3 });
    assert.deepEqual(progress, [2], 'a progress report every 2 conversations');

    const stored = await storedText(harness.db, tenant.id);
    for (const canary of fixture.canaries) assert.equal(stored.includes(canary), false, `${canary} stored in plain text`);
    const jobs = await queryRows<{ count: number }>(harness.db, sql`select count(*)::int as count from jobs where tenant_id = ${tenant.id}`);
    assert.equal(jobs[0]!.count, 0, 'an import enqueues no AI reply, send or sync');
    assert.deepEqual(await harness.relay.conversations.dueForAirtable(tenant.id, 100), [], 'history is not pushed into Airtable by the next sync');

    const [first] = await harness.relay.conversations.findByPhone(tenant.id, fixture.phones[0]!);
    assert.ok(first, 'found through the blind index');
    const messages = await harness.relay.conversations.messagesPage({ id: first.id, tenantId: tenant.id }, { limit: 10 });
    assert.deepEqual(
      messages.map(({ direction, author, body, status, createdAt }) => ({ direction, author, body, status, createdAt: createdAt.toISOString() })),
      [
        { direction: 'inbound', author: 'contact', body: fixture.bodies[0], status: 'received', createdAt: '2024-01-01T00:00:00.000Z' },
        { direction: 'outbound', author: 'ai', body: fixture.bodies[1], status: 'delivered', createdAt: '2024-01-01T00:01:00.000Z' },
      ],
    );
    assert.equal(first.lastMessageAt.toISOString(), '2024-01-01T00:01:00.000Z');
    const contact = await harness.relay.conversations.openContact({ id: first.contactId, tenantId: tenant.id });
    assert.deepEqual(contact, { phone: fixture.phones[0], name: fixture.names[0] });

    const [third] = await harness.relay.conversations.findByPhone(tenant.id, fixture.phones[2]!);
    const keys = (await harness.relay.conversations.messageIds(third!.id)).map((message) => message.dedupeKey);
    assert.deepEqual(keys, [jsonlDedupeKey(fixture.numberedId, '1'), jsonlDedupeKey(fixture.numberedId, '2')]);
    const thirdMessages = await harness.relay.conversations.messagesPage({ id: third!.id, tenantId: tenant.id }, { limit: 10 });
    assert.deepEqual(thirdMessages.map((message) => [message.author, message.createdAt.toISOString()]), [
      ['contact', '2024-02-01T09:00:00.000Z'],
      ['staff', '2024-02-01T10:00:00.000Z'],
    ]);
  });

  test('running the same export again imports nothing twice', async () => {
    const tenant = await harness.putTenant();
    const fixture = exportFixture();
    await run(tenant.id, fixture.text);
    const before = await queryRows<{ id: string }>(harness.db, sql`select id from messages where tenant_id = ${tenant.id} order by id`);
    const again = await run(tenant.id, fixture.text);
    assert.deepEqual(again, { conversations: 0, messages: 0, skipped: 3, lineNumber: 3 });
    const afterRows = await queryRows<{ id: string }>(harness.db, sql`select id from messages where tenant_id = ${tenant.id} order by id`);
    assert.deepEqual(afterRows, before);
    const contacts = await queryRows<{ count: number }>(harness.db, sql`select count(*)::int as count from contacts where tenant_id = ${tenant.id}`);
    assert.equal(contacts[0]!.count, 3);
  });

  test('a refused line stops the import with its number and member, never its content; the lines before it stay imported', async () => {
    const tenant = await harness.putTenant();
    const fixture = exportFixture();
    const lines = fixture.text.split('\n');
    const text = `${lines[0]}\n\n${badPhoneLine()}${lines[1]}\n`;
    await assert.rejects(run(tenant.id, text), (error: unknown) => {
      assert.ok(error instanceof JsonlImportStopped);
      assert.ok(error.lineError instanceof ImportLineError);
      assert.equal(error.lineError.lineNumber, 3, 'blank lines count, as in an editor');
      assert.equal(error.lineError.member, 'phone');
      assert.deepEqual(error.counts, { conversations: 1, messages: 2, skipped: 0, lineNumber: 3 });
      assert.equal(error.message.includes('canary'), false);
      return true;
    });
    const stored = await queryRows<{ count: number }>(harness.db, sql`select count(*)::int as count from messages where tenant_id = ${tenant.id}`);
    assert.equal(stored[0]!.count, 2, 'the first line is committed; nothing after the bad line is read');
  });

  test('an import joins the conversation a live message already started, and never moves it back in time', async () => {
    const tenant = await harness.putTenant();
    const phone = randomPhone();
    const live = await harness.sendSms(tenant.slug, phone, 'hello from today');
    assert.equal(live.response.statusCode, 200);
    const [conversation] = await harness.relay.conversations.findByPhone(tenant.id, phone);
    const line = JSON.stringify({ _id: 'old', phone, messages: [{ direction: 'inbound', body: 'hello from 2023', createdAt: '2023-05-01T00:00:00Z' }] });
    const counts = await run(tenant.id, `${line}\n`);
    assert.deepEqual(counts, { conversations: 1, messages: 1, skipped: 0, lineNumber: 1 });
    const [after] = await harness.relay.conversations.findByPhone(tenant.id, phone);
    assert.equal(after!.id, conversation!.id, 'one contact, one conversation');
    assert.equal(after!.lastMessageAt.getTime(), conversation!.lastMessageAt.getTime());
    const bodies = (await harness.relay.conversations.messagesPage({ id: conversation!.id, tenantId: tenant.id }, { limit: 10 })).map((message) => message.body);
    assert.deepEqual(bodies, ['hello from 2023', 'hello from today']);
  });

  test('an opt-out in the history opts the contact out; an opt-in lifts only an older opt-out', async () => {
    const tenant = await harness.putTenant();
    const phone = randomPhone();
    const optedOut = async () => {
      const rows = await queryRows<{ opted_out_at: Date | string | null }>(harness.db, sql`select opted_out_at from contacts where tenant_id = ${tenant.id}`);
      return rows[0]!.opted_out_at === null ? null : new Date(rows[0]!.opted_out_at).toISOString();
    };
    const message = (id: string, body: string, createdAt: string) => ({ _id: id, direction: 'inbound', body, createdAt });
    await run(tenant.id, `${JSON.stringify({ _id: 'c', phone, messages: [message('1', 'hi', '2024-01-01T00:00:00Z'), message('2', 'STOP', '2024-01-02T00:00:00Z')] })}\n`);
    assert.equal(await optedOut(), '2024-01-02T00:00:00.000Z');
    // An opt-in older than the opt-out changes nothing.
    await run(tenant.id, `${JSON.stringify({ _id: 'c', phone, messages: [message('0', 'START', '2023-12-01T00:00:00Z')] })}\n`);
    assert.equal(await optedOut(), '2024-01-02T00:00:00.000Z');
    await run(tenant.id, `${JSON.stringify({ _id: 'c', phone, messages: [message('3', 'Start', '2024-01-03T00:00:00Z')] })}\n`);
    assert.equal(await optedOut(), null);
  });
});
