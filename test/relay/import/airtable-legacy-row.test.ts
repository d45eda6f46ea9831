import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { readLegacyRow, type LegacyRowReading, type ListedRecord } from '../../../src/relay/import/airtable-legacy-row.js';

const RECORD_ID = 'recAAAAAAAAAAAAAA';
const CREATED = '2024-03-01T10:00:00.000Z';

function read(fields: Record<string, unknown>, extra: Partial<ListedRecord> = {}, options: Parameters<typeof readLegacyRow>[1] = {}): LegacyRowReading {
  return readLegacyRow({ id: RECORD_ID, fields, ...extra }, options);
}

function row(fields: Record<string, unknown>, extra: Partial<ListedRecord> = {}) {
  const reading = read(fields, extra);
  assert.equal(reading.kind, 'row', JSON.stringify(reading));
  return (reading as Extract<LegacyRowReading, { kind: 'row' }>).row;
}

function assertUnreadable(reading: LegacyRowReading, column: string, canaries: string[] = []): void {
  assert.equal(reading.kind, 'unreadable', JSON.stringify(reading));
  const unreadable = reading as Extract<LegacyRowReading, { kind: 'unreadable' }>;
  assert.equal(unreadable.column, column);
  for (const canary of canaries) assert.equal(unreadable.reason.includes(canary), false, `the reason echoes ${canary}`);
}

describe('readLegacyRow', () => {
  test('a full row: phone in E.164, trimmed name, body, direction in any case, author, created', () => {
    assert.deepEqual(row({ Phone: '(415) 555-2671', Name: '  Maria Lopez ', Body: 'Hi there', Direction: 'Outbound', Author: 'AI', Created: CREATED }), {
      recordId: RECORD_ID,
      phone: '+14155552671',
      name: 'Maria Lopez',
      body: 'Hi there',
      bodyColumn: 'Body',
      direction: 'outbound',
      author: 'ai',
      createdAt: new Date(CREATED),
    });
  });

  test('defaults: inbound, no name, no author; "Message" instead of "Body"; a number field for the phone', () => {
    const minimal = row({ Phone: 14155552671, Message: 'hello', Created: '2024-03-01T11:00:00+01:00' });
    assert.equal(minimal.phone, '+14155552671');
    assert.equal(minimal.direction, 'inbound');
    assert.equal(minimal.name, null);
    assert.equal(minimal.author, undefined);
    assert.equal(minimal.bodyColumn, 'Message');
    assert.equal(minimal.createdAt.toISOString(), CREATED);
  });

  test('Created: a date field is midnight UTC; empty means the record createdTime', () => {
    assert.equal(row({ Phone: '+14155552671', Body: 'x', Created: '2024-03-02' }).createdAt.toISOString(), '2024-03-02T00:00:00.000Z');
    assert.equal(row({ Phone: '+14155552671', Body: 'x' }, { createdTime: CREATED }).createdAt.toISOString(), CREATED);
    assertUnreadable(read({ Phone: '+14155552671', Body: 'x' }), 'Created');
  });

  test('national numbers follow the default country', () => {
    const reading = read({ Phone: '020 7946 0958', Body: 'x', Created: CREATED }, {}, { defaultCountry: 'GB' });
    assert.equal(reading.kind === 'row' && reading.row.phone, '+442079460958');
  });

  test('a row with a Ciphergate ID was imported (or written by the relay) and is left alone', () => {
    assert.deepEqual(read({ 'Ciphergate ID': 'a1b2', Phone: '+14155552671', Body: 'plain text' }), { kind: 'imported' });
  });

  test('a row with neither phone nor message is empty, whatever else it holds', () => {
    assert.deepEqual(read({}), { kind: 'empty' });
    assert.deepEqual(read({ Name: 'someone', 'Pause AI': true, Phone: '', Body: '' }), { kind: 'empty' });
  });

  test('unreadable rows name the column, never the value', () => {
    const secret = 'canary-3f9a 4111111111111111';
    assertUnreadable(read({ Phone: secret, Body: 'x', Created: CREATED }), 'Phone', [secret, 'canary']);
    assertUnreadable(read({ Phone: '+1 415 555 2671 ext 12', Body: 'x', Created: CREATED }), 'Phone', ['2671']);
    assertUnreadable(read({ Phone: '12345', Body: 'x', Created: CREATED }), 'Phone', ['12345']);
    assertUnreadable(read({ Body: secret, Created: CREATED }), 'Phone', [secret]);
    assertUnreadable(read({ Phone: ['+14155552671'], Body: 'x', Created: CREATED }), 'Phone');
    assertUnreadable(read({ Phone: '+14155552671', Created: CREATED, Name: 'x' }), 'Body');
    assertUnreadable(read({ Phone: '+14155552671', Body: 'a', Message: 'b', Created: CREATED }), 'Body');
    assertUnreadable(read({ Phone: '+14155552671', Body: { value: secret }, Created: CREATED }), 'Body', [secret]);
    assertUnreadable(read({ Phone: '+14155552671', Body: 'x', Name: ['recLinked'], Created: CREATED }), 'Name');
    assertUnreadable(read({ Phone: '+14155552671', Body: 'x', Direction: 'sideways', Created: CREATED }), 'Direction', ['sideways']);
    assertUnreadable(read({ Phone: '+14155552671', Body: 'x', Author: 'bot', Created: CREATED }), 'Author');
    assertUnreadable(read({ Phone: '+14155552671', Body: 'x', Author: 'ai', Created: CREATED }), 'Author');
    assertUnreadable(read({ Phone: '+14155552671', Body: 'x', Direction: 'outbound', Author: 'contact', Created: CREATED }), 'Author');
    for (const created of ['March 1, 2024', '2024-03-01T10:00:00', '2024-02-31', '2024-02-30T10:00:00Z', 1709287200000]) {
      assertUnreadable(read({ Phone: '+14155552671', Body: 'x', Created: created }), 'Created');
    }
  });
});
