import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { ProviderError } from '../../../src/providers/provider-error.js';
import { createBasePacer } from '../../../src/providers/airtable/base-pacer.js';
import { describeAirtableTable } from '../../../src/providers/airtable/base-schema.js';
import { createAirtableRecordsClient } from '../../../src/providers/airtable/records-client.js';
import { verifyAirtableMac } from '../../../src/providers/airtable/webhook-mac.js';
import { changedRecordIds, createAirtableWebhooksClient, type AirtablePayload, type AirtableWebhooksClient } from '../../../src/providers/airtable/webhooks-client.js';
import { DEFAULT_AIRTABLE_KEY, signAirtableNotification, startAirtableFake, type AirtableFake } from '../../fakes/airtable.js';
import { rejection } from '../../helpers/provider-errors.js';

/**
 * The webhooks client against the Airtable fake: creating a webhook, draining payloads with the
 * cursor and mightHaveMore, refreshing before the 7-day expiry, a staff edit turning into a signed
 * ping and a changed record id, and failures as ProviderErrors.
 */

const TABLE = 'Conversations';

function freshBase(apiKey = DEFAULT_AIRTABLE_KEY) {
  const suffix = [...randomBytes(14)].map((byte) => 'abcdefghijklmnopqrstuvwxyz0123456789'[byte % 36]).join('');
  return { apiKey, baseId: `app${suffix}` };
}


describe('Airtable webhooks client', () => {
  let fake: AirtableFake;
  let webhooks: AirtableWebhooksClient;

  before(async () => {
    fake = await startAirtableFake();
    webhooks = createAirtableWebhooksClient({ apiUrl: fake.url, timeoutMs: 5_000 });
  });
  after(async () => {
    assert.deepEqual(fake.violations, []);
    await fake.close();
  });

  test('createWebhook registers a tableData webhook and returns its id and MAC secret', async () => {
    const base = freshBase();
    const tableId = fake.tableId(base.baseId, TABLE);

    const created = await webhooks.createWebhook(base, { notificationUrl: 'https://gateway.example/webhooks/airtable/acme', tableId });

    assert.match(created.id, /^ach[A-Za-z0-9]{14}$/);
    assert.ok(Buffer.from(created.macSecretBase64, 'base64').length >= 32);
    assert.ok(created.expirationTime && Date.parse(created.expirationTime) > Date.now());
    const request = fake.requests.find((candidate) => candidate.method === 'POST' && candidate.path === `/v0/bases/${base.baseId}/webhooks`)!;
    assert.deepEqual(JSON.parse(request.rawBody.toString()), {
      notificationUrl: 'https://gateway.example/webhooks/airtable/acme',
      specification: { options: { filters: { dataTypes: ['tableData'], recordChangeScope: tableId }, includes: { includePreviousCellValues: true } } },
    });
    assert.equal(fake.webhooks.get(created.id)?.macSecretBase64, created.macSecretBase64);
  });

  test('a table name where Airtable wants a table id is refused before any request', async () => {
    const base = freshBase();
    await assert.rejects(webhooks.createWebhook(base, { notificationUrl: 'https://gateway.example/x', tableId: TABLE }), RangeError);
    assert.equal(fake.requests.filter((request) => request.path.includes(base.baseId)).length, 0);
  });

  test('listPayloads drains more than 50 payloads page by page with the cursor and mightHaveMore', async () => {
    const base = freshBase();
    const created = await webhooks.createWebhook(base, { notificationUrl: 'https://gateway.example/x' });
    const recordIds = Array.from({ length: 120 }, (_, index) => fake.addRecord(base.baseId, TABLE, { 'Ciphergate ID': `msg-${index}` }));

    const pages: Array<{ count: number; cursor: number; mightHaveMore: boolean }> = [];
    const seen: string[] = [];
    let cursor: number | undefined;
    let mightHaveMore = true;
    while (mightHaveMore) {
      const page = await webhooks.listPayloads(base, created.id, cursor);
      pages.push({ count: page.payloads.length, cursor: page.cursor, mightHaveMore: page.mightHaveMore });
      for (const payload of page.payloads) seen.push(...changedRecordIds(payload));
      ({ cursor, mightHaveMore } = page);
    }

    assert.deepEqual(pages, [
      { count: 50, cursor: 51, mightHaveMore: true },
      { count: 50, cursor: 101, mightHaveMore: true },
      { count: 20, cursor: 121, mightHaveMore: false },
    ]);
    assert.deepEqual(seen, recordIds);
    const request = fake.requests.filter((candidate) => candidate.path.endsWith(`/webhooks/${created.id}/payloads`));
    assert.deepEqual(request.map((candidate) => candidate.query.get('cursor')), [null, '51', '101']);

    // Nothing new: the same cursor comes back and there is nothing more.
    const empty = await webhooks.listPayloads(base, created.id, cursor);
    assert.deepEqual(empty, { payloads: [], cursor: 121, mightHaveMore: false });
  });

  test('a staff edit becomes a signed ping, a payload, and the id of the changed record', async () => {
    const base = freshBase();
    const recordId = fake.addRecord(base.baseId, TABLE, { 'Ciphergate ID': 'msg-1', 'Conversation ID': 'conv-1', Body: 'hello' });
    const created = await webhooks.createWebhook(base, { notificationUrl: 'https://gateway.example/x', tableId: fake.tableId(base.baseId, TABLE) });

    const notification = fake.editRecord(base.baseId, TABLE, recordId, { 'Manual Reply': 'We open at 9.' });

    assert.deepEqual(notification.base, { id: base.baseId });
    assert.deepEqual(notification.webhook, { id: created.id });
    const rawBody = Buffer.from(JSON.stringify(notification));
    const header = signAirtableNotification(created.macSecretBase64, rawBody);
    assert.equal(verifyAirtableMac({ macSecretBase64: created.macSecretBase64, header, rawBody }), true);

    const page = await webhooks.listPayloads(base, created.id, undefined);
    assert.equal(page.payloads.length, 1);
    const payload = page.payloads[0]!;
    assert.equal(payload.actionMetadata.source, 'client');
    assert.deepEqual(changedRecordIds(payload), [recordId]);
    const changes = payload.changedTablesById?.[fake.tableId(base.baseId, TABLE)]?.changedRecordsById?.[recordId];
    assert.deepEqual(changes?.current.cellValuesByFieldId, { [fake.fieldId(base.baseId, TABLE, 'Manual Reply')]: 'We open at 9.' });
  });

  test('the metadata API names the ids a payload uses, even for fields no row has filled yet', async () => {
    const base = freshBase();
    const recordId = fake.addRecord(base.baseId, TABLE, { 'Ciphergate ID': 'msg-1' });
    const created = await webhooks.createWebhook(base, { notificationUrl: 'https://gateway.example/x' });
    fake.editRecord(base.baseId, TABLE, recordId, { 'Pause AI': true });

    const schema = await describeAirtableTable({ ...base, table: TABLE }, { apiUrl: fake.url, pacer: createBasePacer() });
    const [payload] = (await webhooks.listPayloads(base, created.id, undefined)).payloads;

    assert.ok(schema);
    assert.equal(schema.tableId, fake.tableId(base.baseId, TABLE));
    assert.deepEqual(payload?.changedTablesById?.[schema.tableId]?.changedRecordsById?.[recordId]?.current.cellValuesByFieldId, { [schema.fieldIds['Pause AI']!]: true });
    assert.ok(schema.fieldIds['Manual Reply'], 'the documented layout exists before anyone types a reply');
    assert.equal(await describeAirtableTable({ ...base, table: 'Nope' }, { apiUrl: fake.url, pacer: createBasePacer() }), undefined);
  });

  test('our own API writes arrive as publicApi payloads, and a client-only webhook does not see them', async () => {
    const base = freshBase();
    const pacer = createBasePacer();
    const paced = createAirtableWebhooksClient({ apiUrl: fake.url, pacer });
    const records = createAirtableRecordsClient({ apiUrl: fake.url, pacer });
    const everything = await paced.createWebhook(base, { notificationUrl: 'https://gateway.example/all' });
    const staffOnly = await paced.createWebhook(base, { notificationUrl: 'https://gateway.example/staff', fromSources: ['client'] });

    const [row] = await records.upsert({ ...base, table: TABLE }, [{ fields: { 'Ciphergate ID': 'msg-1', Body: 'hi' } }], ['Ciphergate ID']);

    const all = await paced.listPayloads(base, everything.id, undefined);
    assert.equal(all.payloads[0]?.actionMetadata.source, 'publicApi');
    assert.deepEqual(changedRecordIds(all.payloads[0]!), [row!.id]);
    assert.deepEqual((await paced.listPayloads(base, staffOnly.id, undefined)).payloads, []);
  });

  test('refreshWebhook pushes the expiry to 7 days from now', async () => {
    const base = freshBase();
    const created = await webhooks.createWebhook(base, { notificationUrl: 'https://gateway.example/x' });
    fake.webhooks.get(created.id)!.expirationTime = new Date(Date.now() + 60_000).toISOString();

    const refreshed = await webhooks.refreshWebhook(base, created.id);

    assert.ok(refreshed.expirationTime && Date.parse(refreshed.expirationTime) > Date.now() + 6 * 24 * 3600 * 1000);
    assert.equal(fake.webhooks.get(created.id)?.expirationTime, refreshed.expirationTime);
  });

  test('deleteWebhook removes it', async () => {
    const base = freshBase();
    const created = await webhooks.createWebhook(base, { notificationUrl: 'https://gateway.example/x' });
    await webhooks.deleteWebhook(base, created.id);
    assert.equal(fake.webhooks.has(created.id), false);
  });

  test('an unknown webhook → 404, not retryable', async () => {
    const error = await rejection(webhooks.listPayloads(freshBase(), 'achAAAAAAAAAAAAAA', undefined));
    assert.equal(error.status, 404);
    assert.equal(error.retryable, false);
  });

  test('a wrong key → 401, not retryable', async () => {
    const error = await rejection(webhooks.createWebhook(freshBase('patWrong'), { notificationUrl: 'https://gateway.example/x' }));
    assert.equal(error.status, 401);
    assert.equal(error.code, 'AUTHENTICATION_REQUIRED');
    assert.equal(error.retryable, false);
  });

  test('a bad cursor is refused before any request', async () => {
    await assert.rejects(webhooks.listPayloads(freshBase(), 'achAAAAAAAAAAAAAA', 0), RangeError);
    await assert.rejects(webhooks.listPayloads(freshBase(), 'achAAAAAAAAAAAAAA', 1.5), RangeError);
  });

  test('429 without Retry-After → retryable after Airtable’s 30 seconds; with one, its value', async () => {
    const base = freshBase();
    const onBase = { match: (request: { path: string }) => request.path.includes(base.baseId) };
    fake.failNext({ kind: 'status', status: 429, body: { errors: [{ error: 'RATE_LIMIT_REACHED' }] } }, onBase);
    const plain = await rejection(webhooks.createWebhook(base, { notificationUrl: 'https://gateway.example/x' }));
    assert.equal(plain.status, 429);
    assert.equal(plain.retryable, true);
    assert.equal(plain.retryAfterSeconds, 30);

    fake.failNext({ kind: 'rate-limit', retryAfterSeconds: 45 }, onBase);
    const withHeader = await rejection(webhooks.createWebhook(base, { notificationUrl: 'https://gateway.example/x' }));
    assert.equal(withHeader.retryAfterSeconds, 45);
  });

  test('422 → not retryable; 500 → retryable; a dropped connection → retryable', async () => {
    const base = freshBase();
    const onBase = { match: (request: { path: string }) => request.path.includes(base.baseId) };
    fake.failNext({ kind: 'status', status: 422, body: { error: { type: 'INVALID_FILTERS', message: 'bad' } } }, onBase);
    const invalid = await rejection(webhooks.createWebhook(base, { notificationUrl: 'https://gateway.example/x' }));
    assert.deepEqual([invalid.status, invalid.code, invalid.retryable], [422, 'INVALID_FILTERS', false]);

    fake.failNext({ kind: 'status', status: 500, body: 'oops' }, onBase);
    const broken = await rejection(webhooks.createWebhook(base, { notificationUrl: 'https://gateway.example/x' }));
    assert.deepEqual([broken.status, broken.retryable], [500, true]);

    fake.failNext({ kind: 'drop' }, onBase);
    const dropped = await rejection(webhooks.createWebhook(base, { notificationUrl: 'https://gateway.example/x' }));
    assert.deepEqual([dropped.status, dropped.retryable], [undefined, true]);
  });

  test('an answer slower than the timeout → retryable, no status', async () => {
    const impatient = createAirtableWebhooksClient({ apiUrl: fake.url, timeoutMs: 200 });
    const base = freshBase();
    fake.failNext({ kind: 'slow', delayMs: 1_500 }, { match: (request) => request.path.includes(base.baseId) });
    const error = await rejection(impatient.refreshWebhook(base, 'achAAAAAAAAAAAAAA'));
    assert.deepEqual([error.status, error.retryable], [undefined, true]);
  });
});

describe('changedRecordIds', () => {
  const payload: AirtablePayload = {
    timestamp: '2026-01-01T00:00:00.000Z',
    baseTransactionNumber: 7,
    payloadFormat: 'v0',
    actionMetadata: { source: 'client' },
    changedTablesById: {
      tblAAAAAAAAAAAAAA: {
        createdRecordsById: { recNEW0000000001: { createdTime: '2026-01-01T00:00:00.000Z', cellValuesByFieldId: {} } },
        changedRecordsById: {
          recOLD0000000001: { current: { cellValuesByFieldId: { fldA: 'x' } } },
          recNEW0000000001: { current: { cellValuesByFieldId: { fldA: 'y' } } },
        },
        destroyedRecordIds: ['recGONE000000001'],
      },
      tblBBBBBBBBBBBBBB: {
        changedViewsById: { viwCCCCCCCCCCCCCC: { changedRecordsById: { recVIEW000000001: { current: { cellValuesByFieldId: {} } } } } },
      },
    },
  };

  test('lists created and changed records once each, across tables and views, without destroyed ones', () => {
    assert.deepEqual(changedRecordIds(payload).sort(), ['recNEW0000000001', 'recOLD0000000001', 'recVIEW000000001']);
  });

  test('can keep to one table', () => {
    assert.deepEqual(changedRecordIds(payload, { tableId: 'tblBBBBBBBBBBBBBB' }), ['recVIEW000000001']);
  });

  test('a payload without table changes (an error payload) has none', () => {
    assert.deepEqual(changedRecordIds({ timestamp: payload.timestamp, baseTransactionNumber: 8, actionMetadata: { source: 'system' }, error: true, code: 'INVALID_FILTERS' }), []);
  });
});
