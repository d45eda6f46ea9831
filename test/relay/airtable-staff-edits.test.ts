import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { queryRows } from '../../src/store/connection.js';
import { describeEachBackend } from '../helpers/database.js';
import { airtableProblems, openRelayHarness, randomPhone, type RelayHarness } from '../helpers/relay.js';

/**
 * Staff work in Airtable: ticking "Pause AI" silences the AI for that contact, and typing in
 * "Manual Reply" sends an SMS and clears the cell. Airtable pings; Ciphergate fetches the
 * payloads from its stored cursor and acts on exactly the cells people changed.
 */
await describeEachBackend('Airtable staff edits', (backend) => {
  let harness: RelayHarness;
  before(async () => {
    harness = await openRelayHarness(backend);
  });
  after(async () => harness?.close());

  async function rowOf(baseId: string, direction: string, phoneMasked?: boolean) {
    const table = harness.airtable.tables.get(`${baseId}/Conversations`)!;
    const entry = [...table.entries()].find(([, fields]) => fields.Direction === direction && (phoneMasked === undefined || true));
    assert.ok(entry, `no ${direction} row`);
    return { id: entry[0], fields: entry[1] };
  }

  test('Pause AI silences the AI for the contact; unticking resumes it', async () => {
    const tenant = await harness.putTenant('pause-clinic');
    const baseId = tenant.settings.airtable!.baseId;
    const phone = randomPhone();
    await harness.sendSms('pause-clinic', phone, 'First question');
    await harness.drain();
    const completions = harness.openai.completions.length;
    const inbound = await rowOf(baseId, 'inbound');

    const ping = harness.airtable.editRecord(baseId, 'Conversations', inbound.id, { 'Pause AI': true });
    const response = await harness.postAirtable('pause-clinic', JSON.stringify(ping));
    assert.equal(response.statusCode, 204);
    await harness.drain();
    const [contact] = await queryRows<{ ai_paused: boolean }>(harness.db, sql`select ai_paused from contacts where tenant_id = ${tenant.id}`);
    assert.equal(contact!.ai_paused, true);

    await harness.sendSms('pause-clinic', phone, 'Second question');
    await harness.drain();
    assert.equal(harness.openai.completions.length, completions, 'the AI answered a paused contact');

    // Our own sync writes (publicApi) do not unpause; another staff edit elsewhere does not either.
    const other = harness.airtable.addRecord(baseId, 'Conversations', { 'Ciphergate ID': 'not-a-message' });
    await harness.postAirtable('pause-clinic', JSON.stringify(harness.airtable.editRecord(baseId, 'Conversations', other, { Name: 'x' })));
    await harness.drain();
    const [stillPaused] = await queryRows<{ ai_paused: boolean }>(harness.db, sql`select ai_paused from contacts where tenant_id = ${tenant.id}`);
    assert.equal(stillPaused!.ai_paused, true);

    await harness.postAirtable('pause-clinic', JSON.stringify(harness.airtable.editRecord(baseId, 'Conversations', inbound.id, { 'Pause AI': false })));
    await harness.drain();
    const [resumed] = await queryRows<{ ai_paused: boolean }>(harness.db, sql`select ai_paused from contacts where tenant_id = ${tenant.id}`);
    assert.equal(resumed!.ai_paused, false);
  });

  test('Manual Reply sends the text once, clears the cell, and a replayed ping sends nothing more', async () => {
    const tenant = await harness.putTenant('reply-clinic');
    const baseId = tenant.settings.airtable!.baseId;
    const phone = randomPhone();
    await harness.sendSms('reply-clinic', phone, 'Do you take walk-ins?');
    await harness.drain();
    const inbound = await rowOf(baseId, 'inbound');
    const before = harness.twilio.messages.filter((message) => message.to === phone).length;

    const ping = JSON.stringify(harness.airtable.editRecord(baseId, 'Conversations', inbound.id, { 'Manual Reply': 'Yes, until 5pm. — Dr. Lee' }));
    assert.equal((await harness.postAirtable('reply-clinic', ping)).statusCode, 204);
    await harness.drain();
    // The same ping again (Airtable retries notifications): the cursor has moved on.
    assert.equal((await harness.postAirtable('reply-clinic', ping)).statusCode, 204);
    await harness.drain();

    const sent = harness.twilio.messages.filter((message) => message.to === phone);
    assert.equal(sent.length - before, 1);
    assert.equal(sent.at(-1)!.body, 'Yes, until 5pm. — Dr. Lee');
    assert.equal(harness.airtable.tables.get(`${baseId}/Conversations`)!.get(inbound.id)!['Manual Reply'] ?? '', '');
    const [staff] = await queryRows<{ author: string; dedupe_key: string }>(harness.db, sql`select author, dedupe_key from messages where tenant_id = ${tenant.id} and author = 'staff'`);
    assert.match(staff!.dedupe_key, new RegExp(`^airtable:${inbound.id}:\\d+$`));
    const [cursor] = await queryRows<{ cursor: number }>(harness.db, sql`select cursor from airtable_cursors where tenant_id = ${tenant.id}`);
    assert.ok(cursor!.cursor > 1);
    assert.deepEqual(airtableProblems(harness.airtable), []);
  });

  test('a payload applied twice (crash before the cursor was saved) sends once', async () => {
    const tenant = await harness.putTenant('replay-clinic');
    const baseId = tenant.settings.airtable!.baseId;
    const phone = randomPhone();
    await harness.sendSms('replay-clinic', phone, 'Hello?');
    await harness.drain();
    const inbound = await rowOf(baseId, 'inbound');
    const ping = JSON.stringify(harness.airtable.editRecord(baseId, 'Conversations', inbound.id, { 'Manual Reply': 'We are open.' }));
    await harness.postAirtable('replay-clinic', ping);
    await harness.drain();
    // Forget the cursor, as if the process had died after sending but before saving it.
    await harness.db.execute(sql`delete from airtable_cursors where tenant_id = ${tenant.id}`);
    await harness.postAirtable('replay-clinic', ping);
    await harness.drain();
    assert.equal(harness.twilio.messages.filter((message) => message.to === phone && message.body === 'We are open.').length, 1);
  });
});

await describeEachBackend('Airtable webhook refresh', (backend) => {
  let harness: RelayHarness;
  before(async () => {
    harness = await openRelayHarness(backend);
  });
  after(async () => harness?.close());

  test("every tenant's webhook is refreshed; one failing does not stop the others", async () => {
    const first = await harness.putTenant('refresh-a');
    await harness.putTenant('refresh-b');
    await harness.putTenant('no-airtable', (document) => {
      delete document.airtable;
    });
    const expiryBefore = harness.airtable.webhooks.get(first.settings.airtable!.webhookId!)!.expirationTime;
    await new Promise((resolve) => setTimeout(resolve, 5));
    assert.deepEqual(await harness.relay.refreshAirtableWebhooks(), { refreshed: 2, failed: 0 });
    const refreshes = harness.airtable.requests.filter((request) => request.method === 'POST' && request.path.endsWith('/refresh'));
    assert.equal(refreshes.length, 2);
    assert.notEqual(harness.airtable.webhooks.get(first.settings.airtable!.webhookId!)!.expirationTime, expiryBefore);
    harness.airtable.failNext({ kind: 'status', status: 503 }, { times: 1, match: (request) => request.path.endsWith('/refresh') });
    assert.deepEqual(await harness.relay.refreshAirtableWebhooks(), { refreshed: 1, failed: 1 });
  });
});
