import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { ProviderError } from '../../../src/providers/provider-error.js';
import { createAirtableRecordsClient, type AirtableRecordsClient, type AirtableTarget } from '../../../src/providers/airtable/records-client.js';
import { DEFAULT_AIRTABLE_KEY, startAirtableFake, type AirtableFake } from '../../fakes/airtable.js';
import { rejection } from '../../helpers/provider-errors.js';

/**
 * The records client through the official `airtable` package against the Airtable fake: batches of
 * 10, upserts that merge instead of duplicating, at most 5 requests per second per base, Airtable's
 * 30-second rule on 429, resumable listing, and every failure as the right ProviderError.
 */

const TABLE = 'Conversations';
const MERGE_ON = ['Ciphergate ID'];

/** A fresh base per test, so request counts and pacing of one test never mix with another's. */
function freshTarget(apiKey = DEFAULT_AIRTABLE_KEY): AirtableTarget {
  const suffix = [...randomBytes(14)].map((byte) => 'abcdefghijklmnopqrstuvwxyz0123456789'[byte % 36]).join('');
  return { apiKey, baseId: `app${suffix}`, table: TABLE };
}

function messageRow(index: number, overrides: Record<string, unknown> = {}) {
  return {
    fields: {
      'Ciphergate ID': `msg-${String(index).padStart(3, '0')}`,
      'Conversation ID': 'conv-1',
      Direction: 'inbound',
      Phone: '+1•••••4567',
      Body: `message ${index}`,
      Status: 'received',
      Created: new Date(Date.UTC(2026, 0, 1, 0, index)).toISOString(),
      ...overrides,
    },
  };
}

function requestsFor(fake: AirtableFake, target: AirtableTarget) {
  return fake.requests.filter((request) => request.path.startsWith(`/v0/${target.baseId}/`));
}

function bodyOf(request: { rawBody: Buffer }) {
  return JSON.parse(request.rawBody.toString()) as { records: Array<{ id?: string; fields: Record<string, unknown> }>; performUpsert?: { fieldsToMergeOn: string[] } };
}


describe('Airtable records client', () => {
  let fake: AirtableFake;
  let client: AirtableRecordsClient;
  const sleeps: number[] = [];

  before(async () => {
    fake = await startAirtableFake();
    client = createAirtableRecordsClient({
      apiUrl: fake.url,
      timeoutMs: 5_000,
      sleep: async (ms) => {
        sleeps.push(ms);
      },
    });
  });
  after(async () => {
    assert.deepEqual(fake.violations, [], 'no request broke Airtable’s protocol or its 5 requests per second');
    await fake.close();
  });

  test('upserting 25 rows sends 3 requests of at most 10, each merging on the Ciphergate ID', async () => {
    const target = freshTarget();
    const rows = Array.from({ length: 25 }, (_, index) => messageRow(index));

    const written = await client.upsert(target, rows, MERGE_ON);

    const requests = requestsFor(fake, target);
    assert.deepEqual(requests.map((request) => request.method), ['PATCH', 'PATCH', 'PATCH']);
    assert.deepEqual(requests.map((request) => bodyOf(request).records.length), [10, 10, 5]);
    for (const request of requests) {
      assert.deepEqual(bodyOf(request).performUpsert, { fieldsToMergeOn: MERGE_ON });
      assert.equal(request.headers.authorization, `Bearer ${DEFAULT_AIRTABLE_KEY}`);
    }
    assert.equal(written.length, 25);
    assert.ok(written.every((record) => /^rec[A-Za-z0-9]{14}$/.test(record.id)));
    assert.equal(fake.tables.get(`${target.baseId}/${TABLE}`)?.size, 25);
  });

  test('a second upsert of the same rows updates them in place, never duplicates', async () => {
    const target = freshTarget();
    const first = await client.upsert(target, [messageRow(1), messageRow(2)], MERGE_ON);
    const second = await client.upsert(target, [messageRow(1, { Status: 'delivered' }), messageRow(2, { Status: 'failed' }), messageRow(3)], MERGE_ON);

    const table = fake.tables.get(`${target.baseId}/${TABLE}`)!;
    assert.equal(table.size, 3);
    assert.deepEqual(second.slice(0, 2).map((record) => record.id), first.map((record) => record.id));
    assert.equal(table.get(first[0]!.id)?.['Status'], 'delivered');
    assert.equal(table.get(first[1]!.id)?.['Status'], 'failed');
    assert.equal(second[0]!.fields['Status'], 'delivered');
  });

  test('nothing to write sends nothing', async () => {
    const target = freshTarget();
    assert.deepEqual(await client.upsert(target, [], MERGE_ON), []);
    await client.update(target, []);
    assert.equal(requestsFor(fake, target).length, 0);
  });

  test('a bad merge key or a row without its merge value is refused before any request', async () => {
    const target = freshTarget();
    await assert.rejects(client.upsert(target, [messageRow(1)], []), RangeError);
    await assert.rejects(client.upsert(target, [messageRow(1)], ['A', 'B', 'C', 'D']), RangeError);
    await assert.rejects(client.upsert(target, [messageRow(1), { fields: { Body: 'no id' } }], MERGE_ON), RangeError);
    assert.equal(requestsFor(fake, target).length, 0);
  });

  test('a base id that is not one is refused before any request (the SDK puts it in the URL as is)', async () => {
    const before = fake.requests.length;
    for (const baseId of ['../v0/meta', 'appShort', 'app12345678901234/x']) {
      await assert.rejects(client.find({ ...freshTarget(), baseId }, 'recAAAAAAAAAAAAAA'), RangeError);
    }
    assert.equal(fake.requests.length, before);
  });

  test('no more than 5 requests reach one base in any second, however many are started at once', async () => {
    const target = freshTarget();
    const [seeded] = await client.upsert(target, [messageRow(1)], MERGE_ON);
    const other = freshTarget();

    const started = Array.from({ length: 11 }, () => client.find(target, seeded!.id));
    // A request to another base is not queued behind the busy one.
    const otherBase = client.find(other, seeded!.id);
    const found = await Promise.all(started);
    assert.equal(await otherBase, undefined);

    assert.ok(found.every((record) => record?.id === seeded!.id));
    assert.equal(requestsFor(fake, target).length, 12);
    assert.ok(fake.maxRequestsInWindow(target.baseId) <= 5, `at most 5 per second, saw ${fake.maxRequestsInWindow(target.baseId)}`);
    const otherArrival = fake.requests.findIndex((request) => request.path.startsWith(`/v0/${other.baseId}/`));
    const sixthToBusyBase = fake.requests.filter((request) => request.path.startsWith(`/v0/${target.baseId}/`))[5]!;
    assert.ok(otherArrival < fake.requests.indexOf(sixthToBusyBase), 'the other base went ahead of the paced queue');
  });

  test('the pacing check has teeth: an unpaced burst is caught by the fake', async () => {
    const separate = await startAirtableFake();
    try {
      const unpaced = createAirtableRecordsClient({ apiUrl: separate.url, requestsPerSecond: 100 });
      const target = freshTarget();
      await Promise.all(Array.from({ length: 8 }, () => unpaced.find(target, 'recAAAAAAAAAAAAAA')));
      assert.ok(separate.maxRequestsInWindow(target.baseId) > 5);
      assert.ok(separate.violations.some((violation) => violation.includes('requests within one second')));
    } finally {
      await separate.close();
    }
  });

  test('a 429 makes the client wait Airtable’s 30 seconds, then the same batch succeeds', async () => {
    const target = freshTarget();
    sleeps.length = 0;
    fake.failNext(
      { kind: 'status', status: 429, body: { errors: [{ error: 'RATE_LIMIT_REACHED', message: 'Rate limit exceeded. Please try again later' }] } },
      { match: (request) => request.path.startsWith(`/v0/${target.baseId}/`) },
    );

    const written = await client.upsert(target, [messageRow(1), messageRow(2)], MERGE_ON);

    assert.deepEqual(sleeps, [30_000]);
    assert.equal(written.length, 2);
    const requests = requestsFor(fake, target);
    assert.equal(requests.length, 2, 'one refused, one retried: airtable.js did not retry on its own');
    assert.deepEqual(bodyOf(requests[1]!), bodyOf(requests[0]!));
    assert.equal(fake.tables.get(`${target.baseId}/${TABLE}`)?.size, 2);
  });

  test('a base that stays rate limited gives up after two waits with a retryable error for the queue', async () => {
    const target = freshTarget();
    sleeps.length = 0;
    fake.failNext({ kind: 'rate-limit', retryAfterSeconds: 30 }, { times: 3, match: (request) => request.path.startsWith(`/v0/${target.baseId}/`) });

    const error = await rejection(client.upsert(target, [messageRow(1)], MERGE_ON));

    assert.deepEqual(sleeps, [30_000, 30_000]);
    assert.equal(error.status, 429);
    assert.equal(error.retryable, true);
    assert.equal(error.retryAfterSeconds, 30);
    assert.equal(requestsFor(fake, target).length, 3);
  });

  test('listPages walks every row and resumes from a saved offset', async () => {
    const target = freshTarget();
    for (let start = 0; start < 25; start += 10) {
      await client.upsert(target, Array.from({ length: Math.min(10, 25 - start) }, (_, index) => messageRow(start + index)), MERGE_ON);
    }

    const pages = [];
    for await (const page of client.listPages(target, { pageSize: 10 })) pages.push(page);
    assert.deepEqual(pages.map((page) => page.records.length), [10, 10, 5]);
    assert.ok(pages[0]!.offset && pages[1]!.offset);
    assert.equal(pages[2]!.offset, undefined);
    const allIds = pages.flatMap((page) => page.records.map((record) => record.id));
    assert.equal(new Set(allIds).size, 25);

    // An import that stopped after the first page picks up where it left off.
    const resumed = [];
    for await (const page of client.listPages(target, { pageSize: 10, offset: pages[0]!.offset })) resumed.push(...page.records.map((record) => record.id));
    assert.deepEqual(resumed, allIds.slice(10));
  });

  test('an offset Airtable has forgotten → 422 LIST_RECORDS_ITERATOR_NOT_AVAILABLE, not retryable (start over)', async () => {
    const target = freshTarget();
    await client.upsert(target, [messageRow(1), messageRow(2), messageRow(3)], MERGE_ON);
    const pages = client.listPages(target, { pageSize: 2 })[Symbol.asyncIterator]();
    const first = await pages.next();
    assert.ok(!first.done && first.value.offset);
    fake.expireListOffsets();

    const error = await rejection(
      (async () => {
        for await (const page of client.listPages(target, { pageSize: 2, offset: first.value.offset })) void page;
      })(),
    );
    assert.equal(error.status, 422);
    assert.equal(error.code, 'LIST_RECORDS_ITERATOR_NOT_AVAILABLE');
    assert.equal(error.retryable, false);
  });

  test('listPages asks only for the named fields', async () => {
    const target = freshTarget();
    await client.upsert(target, [messageRow(1)], MERGE_ON);
    const pages = [];
    for await (const page of client.listPages(target, { fields: ['Ciphergate ID', 'Body'] })) pages.push(page);
    assert.deepEqual(Object.keys(pages[0]!.records[0]!.fields).sort(), ['Body', 'Ciphergate ID']);
    const listRequest = requestsFor(fake, target).at(-1)!;
    assert.deepEqual(listRequest.query.getAll('fields[]'), ['Ciphergate ID', 'Body']);
  });

  test('update changes only the named fields, in batches of 10, and clearing a cell removes it', async () => {
    const target = freshTarget();
    const written = await client.upsert(target, Array.from({ length: 12 }, (_, index) => messageRow(index, { 'Manual Reply': 'on my way' })), MERGE_ON);
    const before = requestsFor(fake, target).length;

    await client.update(target, written.map((record) => ({ id: record.id, fields: { 'Manual Reply': '', Status: 'sent' } })));

    const updates = requestsFor(fake, target).slice(before);
    assert.deepEqual(updates.map((request) => bodyOf(request).records.length), [10, 2]);
    assert.ok(updates.every((request) => bodyOf(request).performUpsert === undefined));
    const row = await client.find(target, written[0]!.id);
    assert.equal(row?.fields['Status'], 'sent');
    assert.equal(row?.fields['Body'], 'message 0');
    assert.equal('Manual Reply' in (row?.fields ?? {}), false, 'Airtable omits empty cells');
  });

  test('find returns undefined for a record Airtable does not know', async () => {
    assert.equal(await client.find(freshTarget(), 'recAAAAAAAAAAAAAA'), undefined);
  });

  test('a wrong key → 401, not retryable', async () => {
    const error = await rejection(client.upsert(freshTarget('patWrong'), [messageRow(1)], MERGE_ON));
    assert.equal(error.status, 401);
    assert.equal(error.retryable, false);
    assert.ok(!error.message.includes('patWrong'));
  });

  test('422 → not retryable, and Airtable’s message (which can quote cell values) is not copied', async () => {
    const target = freshTarget();
    fake.failNext(
      { kind: 'status', status: 422, body: { error: { type: 'INVALID_VALUE_FOR_COLUMN', message: 'Field "Phone" cannot accept the value +15551234567' } } },
      { match: (request) => request.path.startsWith(`/v0/${target.baseId}/`) },
    );
    const error = await rejection(client.upsert(target, [messageRow(1)], MERGE_ON));
    assert.equal(error.status, 422);
    assert.equal(error.code, 'INVALID_VALUE_FOR_COLUMN');
    assert.equal(error.retryable, false);
    assert.ok(!error.message.includes('5551234567'));
    assert.equal(error.cause, undefined);
  });

  test('a field the table does not have → 422 UNKNOWN_FIELD_NAME, not retryable (with a strict fake)', async () => {
    const strict = await startAirtableFake({ strictFields: true });
    try {
      const strictClient = createAirtableRecordsClient({ apiUrl: strict.url });
      const target = freshTarget();
      await strictClient.upsert(target, [messageRow(1)], MERGE_ON);
      const error = await rejection(strictClient.upsert(target, [messageRow(2, { 'AI Replly': 'typo' })], MERGE_ON));
      assert.deepEqual([error.status, error.code, error.retryable], [422, 'UNKNOWN_FIELD_NAME', false]);
      assert.equal(strict.tables.get(`${target.baseId}/${TABLE}`)?.size, 1, 'nothing of the refused request was written');
    } finally {
      await strict.close();
    }
  });

  test('the fake refuses more than 10 records in one write, like Airtable', async () => {
    const response = await fetch(`${fake.url}/v0/${freshTarget().baseId}/${TABLE}`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${DEFAULT_AIRTABLE_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ performUpsert: { fieldsToMergeOn: MERGE_ON }, records: Array.from({ length: 11 }, (_, index) => messageRow(index)) }),
    });
    assert.equal(response.status, 422);
  });

  for (const status of [500, 502, 503]) {
    test(`${status} → retryable`, async () => {
      const target = freshTarget();
      fake.failNext({ kind: 'status', status }, { match: (request) => request.path.startsWith(`/v0/${target.baseId}/`) });
      const error = await rejection(client.upsert(target, [messageRow(1)], MERGE_ON));
      assert.equal(error.status, status);
      assert.equal(error.retryable, true);
      assert.equal(requestsFor(fake, target).length, 1);
    });
  }

  test('a dropped connection → retryable, no status', async () => {
    const target = freshTarget();
    fake.failNext({ kind: 'drop' }, { match: (request) => request.path.startsWith(`/v0/${target.baseId}/`) });
    const error = await rejection(client.find(target, 'recAAAAAAAAAAAAAA'));
    assert.equal(error.status, undefined);
    assert.equal(error.retryable, true);
  });

  test('an answer slower than the timeout → retryable, no status', async () => {
    const impatient = createAirtableRecordsClient({ apiUrl: fake.url, timeoutMs: 200 });
    const target = freshTarget();
    fake.failNext({ kind: 'slow', delayMs: 1_500 }, { match: (request) => request.path.startsWith(`/v0/${target.baseId}/`) });
    const error = await rejection(impatient.upsert(target, [messageRow(1)], MERGE_ON));
    assert.equal(error.status, undefined);
    assert.equal(error.retryable, true);
  });
});
