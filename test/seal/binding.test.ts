import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { appendRowId, BindingBuilder, bindingPrefix, encodeBinding, SYSTEM_SCOPE } from '../../src/seal/binding.js';
import { SealInputError } from '../../src/seal/errors.js';

const base = { tenantId: 't1', table: 'messages', column: 'body', rowId: '42' };

describe('binding', () => {
  test('is the documented length-prefixed encoding', () => {
    const expected = Buffer.concat(
      ['ciphergate/seal/v1', 't1', 'messages', 'body', '42'].map((field) => {
        const bytes = Buffer.from(field, 'utf8');
        const length = Buffer.alloc(4);
        length.writeUInt32BE(bytes.length);
        return Buffer.concat([length, bytes]);
      }),
    );
    assert.ok(encodeBinding(base).equals(expected));
  });

  test('a column prefix plus the row id equals the full binding', () => {
    const prefix = bindingPrefix(base);
    for (const rowId of ['1', '42', 'f47ac10b-58cc-4372-a567-0e02b2c3d479', 'ünï']) {
      assert.ok(appendRowId(prefix, rowId).equals(encodeBinding({ ...base, rowId })));
    }
  });

  test('the reusable builder gives headroom ‖ binding, growing for long row ids', () => {
    const builder = new BindingBuilder(bindingPrefix(base), 6);
    for (const rowId of ['1', 'r'.repeat(500), '42', '👋'.repeat(40), '7']) {
      const aad = builder.forRow(rowId);
      assert.ok(aad.subarray(6).equals(encodeBinding({ ...base, rowId })), rowId);
    }
    assert.throws(() => builder.forRow(''), SealInputError);
  });

  test('moving characters between adjacent fields changes the encoding', () => {
    const pairs = [
      [{ tenantId: 'a', table: 'bc' }, { tenantId: 'ab', table: 'c' }],
      [{ table: 'ab', column: 'c' }, { table: 'a', column: 'bc' }],
      [{ column: 'ab', rowId: 'c' }, { column: 'a', rowId: 'bc' }],
    ];
    for (const [left, right] of pairs) {
      assert.ok(!encodeBinding({ ...base, ...left }).equals(encodeBinding({ ...base, ...right })));
    }
  });

  test('every field takes part', () => {
    const bindings = new Set(
      [
        base,
        { ...base, tenantId: SYSTEM_SCOPE },
        { ...base, table: 'contacts' },
        { ...base, column: 'subject' },
        { ...base, rowId: '43' },
      ].map((ctx) => encodeBinding(ctx).toString('hex')),
    );
    assert.equal(bindings.size, 5);
  });

  test('empty fields and lone surrogates are refused', () => {
    for (const field of ['tenantId', 'table', 'column', 'rowId'] as const) {
      assert.throws(() => encodeBinding({ ...base, [field]: '' }), SealInputError);
      assert.throws(() => encodeBinding({ ...base, [field]: 'a\uD800' }), SealInputError);
    }
    assert.doesNotThrow(() => encodeBinding({ ...base, rowId: '👋' }));
  });
});
