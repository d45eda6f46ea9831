import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  ImportLineError,
  MAX_LINE_BYTES,
  parseMongoExportLine,
  readMongoExport,
  type ImportedConversation,
} from '../../../src/relay/import/mongo-export.js';

const CONVERSATION_OID = '65a1f0c2e4b0a1b2c3d4e5f6';
const MESSAGE_OID = '65a1f0c2e4b0a1b2c3d4e5f7';

/** A line as `mongoexport --jsonFormat=canonical` writes it. */
const CANONICAL = JSON.stringify({
  _id: { $oid: CONVERSATION_OID },
  phone: '+14155552671',
  name: 'Maria Lopez',
  messages: [
    {
      _id: { $oid: MESSAGE_OID },
      direction: 'inbound',
      body: 'Hi, is Saturday free?',
      createdAt: { $date: { $numberLong: '1704067200000' } },
    },
    {
      direction: 'outbound',
      body: 'Yes, 10am works.',
      createdAt: { $date: { $numberLong: '1704067260000' } },
      author: 'ai',
    },
  ],
  __v: { $numberInt: '0' },
});

/** The same document in relaxed mode (the mongoexport default). */
const RELAXED = JSON.stringify({
  _id: { $oid: CONVERSATION_OID },
  phone: '+14155552671',
  name: 'Maria Lopez',
  messages: [
    { _id: { $oid: MESSAGE_OID }, direction: 'inbound', body: 'Hi, is Saturday free?', createdAt: { $date: '2024-01-01T00:00:00Z' } },
    { direction: 'outbound', body: 'Yes, 10am works.', createdAt: { $date: '2024-01-01T00:01:00.000Z' }, author: 'ai' },
  ],
  __v: 0,
});

const EXPECTED: ImportedConversation = {
  externalId: CONVERSATION_OID,
  phone: '+14155552671',
  name: 'Maria Lopez',
  messages: [
    { externalId: MESSAGE_OID, direction: 'inbound', body: 'Hi, is Saturday free?', createdAt: new Date('2024-01-01T00:00:00Z') },
    {
      externalId: `${CONVERSATION_OID}:1`,
      direction: 'outbound',
      body: 'Yes, 10am works.',
      createdAt: new Date('2024-01-01T00:01:00Z'),
      author: 'ai',
    },
  ],
};

function doc(overrides: Record<string, unknown> = {}, message: Record<string, unknown> = {}): string {
  return JSON.stringify({
    _id: { $oid: CONVERSATION_OID },
    phone: '+14155552671',
    messages: [{ direction: 'inbound', body: 'hello', createdAt: { $date: '2024-01-01T00:00:00Z' }, ...message }],
    ...overrides,
  });
}

function firstMessage(line: string) {
  return parseMongoExportLine(line, 1).messages[0]!;
}

/** Asserts an ImportLineError for `member` on `lineNumber`, and that no canary leaks into it. */
function assertLineError(run: () => unknown, lineNumber: number, member: string, canaries: string[] = []): void {
  assert.throws(run, (error: unknown) => {
    assert.ok(error instanceof ImportLineError, `not an ImportLineError: ${String(error)}`);
    assert.equal(error.lineNumber, lineNumber);
    assert.equal(error.member, member);
    assert.ok(error.message.startsWith(`line ${lineNumber}: ${member}: `), error.message);
    assert.equal(error.cause, undefined);
    for (const canary of canaries) {
      assert.ok(!error.message.includes(canary), `"${canary}" leaked into: ${error.message}`);
      assert.ok(!String(error.stack).includes(canary), `"${canary}" leaked into the stack`);
    }
    return true;
  });
}

async function* chunks(...parts: Array<string | Buffer>): AsyncIterable<string | Buffer> {
  for (const part of parts) yield part;
}

async function collect(input: AsyncIterable<string | Buffer>) {
  const out: Array<{ lineNumber: number; conversation: ImportedConversation }> = [];
  for await (const item of readMongoExport(input)) out.push(item);
  return out;
}

describe('parseMongoExportLine: the documented shape', () => {
  test('canonical Extended JSON', () => {
    assert.deepEqual(parseMongoExportLine(CANONICAL, 1), EXPECTED);
  });

  test('relaxed Extended JSON gives the same conversation', () => {
    assert.deepEqual(parseMongoExportLine(RELAXED, 1), EXPECTED);
  });

  test('a message without _id is "<conversation id>:<index>", the same on every import', () => {
    const a = parseMongoExportLine(RELAXED, 1);
    const b = parseMongoExportLine(RELAXED, 99);
    assert.deepEqual(a.messages.map((m) => m.externalId), b.messages.map((m) => m.externalId));
    assert.equal(a.messages[1]!.externalId, `${CONVERSATION_OID}:1`);
  });

  test('string and integer ids; $oid is lower-cased', () => {
    assert.equal(parseMongoExportLine(doc({ _id: 'conv-7' }), 1).externalId, 'conv-7');
    assert.equal(parseMongoExportLine(doc({ _id: 42 }), 1).externalId, '42');
    assert.equal(parseMongoExportLine(doc({ _id: { $numberLong: '9007199254740991' } }), 1).externalId, '9007199254740991');
    assert.equal(parseMongoExportLine(doc({ _id: { $oid: CONVERSATION_OID.toUpperCase() } }), 1).externalId, CONVERSATION_OID);
    assert.equal(firstMessage(doc({ _id: 'c1' }, { _id: 'SM123' })).externalId, 'SM123');
  });

  test('name: optional, trimmed, empty or null means none', () => {
    assert.equal(parseMongoExportLine(doc({ name: '  Maria  ' }), 1).name, 'Maria');
    for (const name of [undefined, null, '', '   ']) {
      const conversation = parseMongoExportLine(doc({ name }), 1);
      assert.ok(!('name' in conversation), String(name));
    }
  });

  test('phone numbers become E.164; national numbers are read as US unless told otherwise', () => {
    assert.equal(parseMongoExportLine(doc({ phone: '(415) 555-2671' }), 1).phone, '+14155552671');
    assert.equal(parseMongoExportLine(doc({ phone: '+44 20 7946 0958' }), 1).phone, '+442079460958');
    assert.equal(parseMongoExportLine(doc({ phone: '020 7946 0958' }), 1, { defaultCountry: 'GB' }).phone, '+442079460958');
  });

  test('unknown members are ignored; an empty message list is a conversation without messages', () => {
    const conversation = parseMongoExportLine(doc({ tenant: 'x', updatedAt: { $date: '2024-01-01T00:00:00Z' }, messages: [] }), 1);
    assert.deepEqual(conversation.messages, []);
  });

  test('a trailing CR (a file with CRLF line ends) is ignored', () => {
    assert.deepEqual(parseMongoExportLine(`${RELAXED}\r`, 1), EXPECTED);
  });
});

describe('parseMongoExportLine: alternative member names', () => {
  test('phoneNumber and from for phone', () => {
    for (const member of ['phoneNumber', 'from']) {
      const line = JSON.stringify({ _id: 'c1', [member]: '+14155552671', messages: [] });
      assert.equal(parseMongoExportLine(line, 1).phone, '+14155552671', member);
    }
  });

  test('text and content for body; timestamp and date for createdAt', () => {
    const line = JSON.stringify({
      _id: 'c1',
      phone: '+14155552671',
      messages: [
        { direction: 'inbound', text: 'one', timestamp: { $date: '2024-01-01T00:00:00Z' } },
        { direction: 'outbound', content: 'two', date: '2024-01-01T00:00:01Z' },
      ],
    });
    const messages = parseMongoExportLine(line, 1).messages;
    assert.deepEqual(messages.map((m) => [m.body, m.createdAt.toISOString()]), [
      ['one', '2024-01-01T00:00:00.000Z'],
      ['two', '2024-01-01T00:00:01.000Z'],
    ]);
  });

  test('role user/assistant become direction and author; system messages are skipped but keep their index', () => {
    const line = JSON.stringify({
      _id: 'c1',
      phone: '+14155552671',
      messages: [
        { role: 'system', content: 'You are a helpful assistant', createdAt: '2024-01-01T00:00:00Z' },
        { role: 'user', content: 'hi', createdAt: '2024-01-01T00:00:01Z' },
        { role: 'assistant', content: 'hello!', createdAt: '2024-01-01T00:00:02Z' },
      ],
    });
    const messages = parseMongoExportLine(line, 1).messages;
    assert.deepEqual(
      messages.map((m) => [m.externalId, m.direction, m.author, m.body]),
      [
        ['c1:1', 'inbound', 'contact', 'hi'],
        ['c1:2', 'outbound', 'ai', 'hello!'],
      ],
    );
  });

  test('direction and role together must agree; author overrides the role’s author when consistent', () => {
    assert.equal(firstMessage(doc({}, { role: 'user', direction: 'inbound' })).author, 'contact');
    assert.equal(firstMessage(doc({}, { role: 'assistant', direction: undefined, author: 'staff' })).author, 'staff');
    assertLineError(() => parseMongoExportLine(doc({}, { role: 'assistant', direction: 'inbound' }), 3), 3, 'messages[0].role');
  });

  test('the first of body/text/content present wins', () => {
    assert.equal(firstMessage(doc({}, { body: 'b', text: 't', content: 'c' })).body, 'b');
    assert.equal(firstMessage(doc({}, { body: null, text: 't' })).body, 't');
  });

  test('an empty body is allowed (a picture without text)', () => {
    assert.equal(firstMessage(doc({}, { body: '' })).body, '');
  });
});

describe('parseMongoExportLine: dates', () => {
  const expected = new Date('2023-11-14T22:13:20.000Z');
  const forms: Array<[string, unknown]> = [
    ['relaxed $date string', { $date: '2023-11-14T22:13:20Z' }],
    ['relaxed $date with milliseconds', { $date: '2023-11-14T22:13:20.000Z' }],
    ['$date with an offset', { $date: '2023-11-15T00:13:20+02:00' }],
    ['$date with microseconds', { $date: '2023-11-14T22:13:20.000000Z' }],
    ['canonical $date.$numberLong', { $date: { $numberLong: '1700000000000' } }],
    ['legacy $date number', { $date: 1700000000000 }],
    ['plain ISO string', '2023-11-14T22:13:20Z'],
    ['plain number of milliseconds', 1700000000000],
    ['$numberLong milliseconds', { $numberLong: '1700000000000' }],
    ['$numberDouble milliseconds', { $numberDouble: '1700000000000.0' }],
    ['$numberInt milliseconds', { $numberInt: '0' }],
  ];
  for (const [label, createdAt] of forms) {
    test(label, () => {
      const want = label.startsWith('$numberInt') ? new Date(0) : expected;
      assert.equal(firstMessage(doc({}, { createdAt })).createdAt.getTime(), want.getTime());
    });
  }

  test('canonical and relaxed forms of one instant are equal', () => {
    const canonical = firstMessage(doc({}, { createdAt: { $date: { $numberLong: '1704067200000' } } })).createdAt;
    const relaxed = firstMessage(doc({}, { createdAt: { $date: '2024-01-01T00:00:00Z' } })).createdAt;
    assert.equal(canonical.getTime(), relaxed.getTime());
  });

  test('dates before 1970 (canonical form with a negative $numberLong)', () => {
    assert.equal(
      firstMessage(doc({}, { createdAt: { $date: { $numberLong: '-86400000' } } })).createdAt.toISOString(),
      '1969-12-31T00:00:00.000Z',
    );
  });

  const bad: Array<[string, unknown, string]> = [
    ['a date without time', '2024-01-01', 'messages[0].createdAt'],
    ['words', 'March 7, 2024', 'messages[0].createdAt'],
    ['a date without zone', '2024-01-01T00:00:00', 'messages[0].createdAt'],
    ['an impossible date', { $date: '2024-13-45T00:00:00Z' }, 'messages[0].createdAt.$date'],
    ['$numberLong not digits', { $date: { $numberLong: '17e11' } }, 'messages[0].createdAt.$date.$numberLong'],
    ['$numberLong as a number', { $date: { $numberLong: 1700000000000 } }, 'messages[0].createdAt.$date.$numberLong'],
    ['$numberLong beyond 2^53', { $date: { $numberLong: '9223372036854775807' } }, 'messages[0].createdAt.$date.$numberLong'],
    ['beyond the range of a Date', { $date: { $numberLong: '8640000000000001' } }, 'messages[0].createdAt.$date'],
    ['$numberDouble NaN', { $numberDouble: 'NaN' }, 'messages[0].createdAt'],
    ['$numberDouble Infinity', { $date: { $numberDouble: 'Infinity' } }, 'messages[0].createdAt.$date'],
    ['$numberDouble garbage', { $numberDouble: '12abc' }, 'messages[0].createdAt.$numberDouble'],
    ['$numberInt out of range', { $numberInt: '2147483648' }, 'messages[0].createdAt.$numberInt'],
    ['a wrapper with extra members', { $date: '2024-01-01T00:00:00Z', tz: 'UTC' }, 'messages[0].createdAt'],
    ['a boolean', true, 'messages[0].createdAt'],
    ['an unknown wrapper', { $timestamp: { t: 1, i: 1 } }, 'messages[0].createdAt'],
    ['an array', ['2024-01-01T00:00:00Z'], 'messages[0].createdAt'],
  ];
  for (const [label, createdAt, member] of bad) {
    test(`refused: ${label}`, () => {
      assertLineError(() => parseMongoExportLine(doc({}, { createdAt }), 7), 7, member);
    });
  }

  test('refused: missing', () => {
    assertLineError(() => parseMongoExportLine(doc({}, { createdAt: undefined }), 2), 2, 'messages[0].createdAt');
  });
});

describe('parseMongoExportLine: refused lines', () => {
  const body = 'canary-body-7f3a9 my card is 4111111111111111';
  const phone = '+1 415 555 9999 000';

  test('not JSON: the error gives the position at most, never the text', () => {
    assertLineError(() => parseMongoExportLine(`{"phone": "+14155552671", "body": "${body}" oops}`, 4), 4, '(document)', [body, 'canary', '4155552671']);
    assertLineError(() => parseMongoExportLine(body, 5), 5, '(document)', [body, 'canary']);
    assertLineError(() => parseMongoExportLine('{"a": "canary-body-7f3a9', 6), 6, '(document)', ['canary']);
    assertLineError(() => parseMongoExportLine('{"a": 1} x', 6), 6, '(document)');
    assert.throws(() => parseMongoExportLine('{"a": 1} x', 6), /not valid JSON \(at character 9\)$/);
    // A number from the quoted text is never mistaken for the position.
    assert.throws(() => parseMongoExportLine('position 4155552671', 6), (error: unknown) => !String(error).includes('4155552671'));
  });

  test('not an object', () => {
    for (const line of ['[]', '"canary-body-7f3a9"', '42', 'null', 'true']) {
      assertLineError(() => parseMongoExportLine(line, 1), 1, '(document)', ['canary']);
    }
  });

  test('a blank line passed on its own', () => {
    assertLineError(() => parseMongoExportLine('   ', 8), 8, '(document)');
  });

  test('an invalid phone number, without echoing it', () => {
    for (const bad of [phone, '12345', '+1 800 FLOWERS', 'call 4155552671', '']) {
      assertLineError(() => parseMongoExportLine(doc({ phone: bad }), 9), 9, 'phone', bad.length > 3 ? [bad, '4155552671', '5559999'] : []);
    }
    assertLineError(() => parseMongoExportLine(doc({ phone: undefined, phoneNumber: '999' }), 9), 9, 'phoneNumber');
  });

  test('missing or wrongly typed members name the member', () => {
    const cases: Array<[string, string]> = [
      [doc({ _id: undefined }), '_id'],
      [doc({ _id: '' }), '_id'],
      [doc({ _id: 'x'.repeat(201) }), '_id'],
      [doc({ _id: 1.5 }), '_id'],
      [doc({ _id: { $oid: 'not-hex' } }), '_id.$oid'],
      [doc({ _id: { $oid: CONVERSATION_OID, extra: 1 } }), '_id'],
      [doc({ _id: true }), '_id'],
      [doc({ phone: undefined }), 'phone'],
      [doc({ phone: 14155552671 }), 'phone'],
      [doc({ name: 42 }), 'name'],
      [doc({ messages: undefined }), 'messages'],
      [doc({ messages: { 0: {} } }), 'messages'],
      [doc({ messages: ['hello'] }), 'messages[0]'],
      [doc({}, { direction: undefined }), 'messages[0].direction'],
      [doc({}, { direction: 'in' }), 'messages[0].direction'],
      [doc({}, { direction: undefined, role: 'bot' }), 'messages[0].role'],
      [doc({}, { body: undefined }), 'messages[0].body'],
      [doc({}, { body: 42 }), 'messages[0].body'],
      [doc({}, { body: undefined, content: [{ type: 'text', text: 'hi' }] }), 'messages[0].content'],
      [doc({}, { author: 'bot' }), 'messages[0].author'],
      [doc({}, { author: 'ai' }), 'messages[0].author'],
      [doc({}, { direction: 'outbound', author: 'contact' }), 'messages[0].author'],
      [doc({}, { _id: { $oid: 'zz' } }), 'messages[0]._id.$oid'],
    ];
    for (const [line, member] of cases) {
      assertLineError(() => parseMongoExportLine(line, 11), 11, member);
    }
  });

  test('the same message id twice in one conversation', () => {
    const line = doc({
      messages: [
        { _id: 'm1', direction: 'inbound', body: 'a', createdAt: '2024-01-01T00:00:00Z' },
        { _id: 'm2', direction: 'inbound', body: 'b', createdAt: '2024-01-01T00:00:00Z' },
        { _id: 'm1', direction: 'inbound', body: 'c', createdAt: '2024-01-01T00:00:00Z' },
      ],
    });
    assertLineError(() => parseMongoExportLine(line, 2), 2, 'messages[2]._id');
  });

  test('wrong-type errors never carry the value', () => {
    assertLineError(() => parseMongoExportLine(doc({}, { body: { secret: body } }), 3), 3, 'messages[0].body', [body, 'canary']);
    assertLineError(() => parseMongoExportLine(doc({ name: { first: 'Quintessa' } }), 3), 3, 'name', ['Quintessa']);
  });

  test('__proto__ in the input does not reach a prototype', () => {
    const line = `{"__proto__": {"phone": "+14155552671"}, "_id": "c1", "messages": []}`;
    assertLineError(() => parseMongoExportLine(line, 1), 1, 'phone');
    assert.equal(({} as Record<string, unknown>).phone, undefined);
  });

  test('a line longer than 1 MiB is refused; exactly 1 MiB is accepted', () => {
    const base = doc();
    const exact = base + ' '.repeat(MAX_LINE_BYTES - Buffer.byteLength(base));
    assert.equal(Buffer.byteLength(exact), MAX_LINE_BYTES);
    assert.equal(parseMongoExportLine(exact, 1).externalId, CONVERSATION_OID);
    assertLineError(() => parseMongoExportLine(`${exact} `, 12), 12, '(document)');
    // Counted in bytes, not characters.
    const multibyte = doc({}, { body: 'é'.repeat(MAX_LINE_BYTES / 2) });
    assertLineError(() => parseMongoExportLine(multibyte, 13), 13, '(document)', ['éééé']);
  });
});

describe('readMongoExport', () => {
  test('one conversation per line, numbered from 1, blank lines skipped but counted', async () => {
    const input = chunks(`${RELAXED}\n\n   \n${CANONICAL}\n`);
    const out = await collect(input);
    assert.deepEqual(out.map((o) => o.lineNumber), [1, 4]);
    assert.deepEqual(out[0]!.conversation, EXPECTED);
    assert.deepEqual(out[1]!.conversation, EXPECTED);
  });

  test('lines split across chunks at any byte, also inside a multi-byte character, Buffers and strings mixed', async () => {
    const line = doc({ name: 'José Ñúñez 🙂' }, { body: 'çà va? 🙂' });
    const bytes = Buffer.from(`${line}\r\n${line}`, 'utf8');
    for (const cut of [1, 10, line.indexOf('é') + 1, Buffer.from(line).indexOf(Buffer.from('🙂')) + 2, bytes.length - 1]) {
      const out = await collect(chunks(bytes.subarray(0, cut), bytes.subarray(cut)));
      assert.equal(out.length, 2, `cut at ${cut}`);
      assert.equal(out[0]!.conversation.name, 'José Ñúñez 🙂');
      assert.equal(out[1]!.conversation.messages[0]!.body, 'çà va? 🙂');
    }
    const byteByByte = await collect(chunks(...[...bytes].map((b) => Buffer.from([b]))));
    assert.equal(byteByByte.length, 2);
    const strings = await collect(chunks(line.slice(0, 5), `${line.slice(5)}\n`, line));
    assert.deepEqual(strings.map((o) => o.lineNumber), [1, 2]);
  });

  test('the last line needs no line break; an empty input yields nothing', async () => {
    assert.equal((await collect(chunks(RELAXED))).length, 1);
    assert.equal((await collect(chunks())).length, 0);
    assert.equal((await collect(chunks('\n\n'))).length, 0);
  });

  test('stops at the first bad line with its number, after yielding the good ones', async () => {
    const seen: number[] = [];
    await assert.rejects(
      (async () => {
        for await (const item of readMongoExport(chunks(`${RELAXED}\n${RELAXED}\n{"body": "canary-x"\n${RELAXED}\n`))) {
          seen.push(item.lineNumber);
        }
      })(),
      (error: unknown) => error instanceof ImportLineError && error.lineNumber === 3 && !error.message.includes('canary'),
    );
    assert.deepEqual(seen, [1, 2]);
  });

  test('an oversized line is refused as soon as it passes 1 MiB, without reading the rest of the input', async () => {
    let pulled = 0;
    const chunk = Buffer.alloc(64 * 1024, 0x20);
    async function* endless(): AsyncIterable<Buffer> {
      yield Buffer.from(`${RELAXED}\n`);
      for (;;) {
        pulled += 1;
        if (pulled > 1000) throw new Error('read far past the limit');
        yield chunk;
      }
    }
    const seen: number[] = [];
    await assert.rejects(
      (async () => {
        for await (const item of readMongoExport(endless())) seen.push(item.lineNumber);
      })(),
      (error: unknown) => error instanceof ImportLineError && error.lineNumber === 2 && /longer than/.test(error.reason),
    );
    assert.deepEqual(seen, [1]);
    assert.ok(pulled <= MAX_LINE_BYTES / chunk.length + 2, `pulled ${pulled} chunks`);
  });

  test('a line of exactly 1 MiB followed by CRLF is accepted; one byte more is refused', async () => {
    const base = doc();
    const exact = base + ' '.repeat(MAX_LINE_BYTES - Buffer.byteLength(base));
    const half = Math.floor(exact.length / 2);
    assert.equal((await collect(chunks(exact.slice(0, half), exact.slice(half), '\r', '\n', RELAXED))).length, 2);
    await assert.rejects(collect(chunks(`${exact} \r\n`)), (error: unknown) => error instanceof ImportLineError && error.lineNumber === 1);
  });

  test('invalid UTF-8 is refused with its line number', async () => {
    const bad = Buffer.concat([Buffer.from(`${RELAXED}\n{"_id": "c1", "name": "`), Buffer.from([0xc3, 0x28]), Buffer.from('"}\n')]);
    await assert.rejects(collect(chunks(bad)), (error: unknown) => error instanceof ImportLineError && error.lineNumber === 2 && /UTF-8/.test(error.reason));
  });

  test('the options reach every line', async () => {
    const out = [];
    for await (const item of readMongoExport(chunks(doc({ phone: '020 7946 0958' })), { defaultCountry: 'GB' })) out.push(item);
    assert.equal(out[0]!.conversation.phone, '+442079460958');
  });
});
