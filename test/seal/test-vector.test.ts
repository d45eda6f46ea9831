import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { encodeBinding } from '../../src/seal/binding.js';
import { computeBlindIndex } from '../../src/seal/blind-index.js';
import { derivationLabel, deriveBlindIndexKey, deriveColumnKey } from '../../src/seal/derive.js';
import { openEnvelope, readEnvelopeHeader, unsafeSealEnvelopeWithFixedNonce } from '../../src/seal/envelope.js';
import { normalise, type NormaliserKind } from '../../src/domain/normalise.js';
import { InMemoryKeyring, Sealer } from '../../src/seal/sealer.js';

const doc = fs.readFileSync(fileURLToPath(new URL('../../docs/sealing.md', import.meta.url)), 'utf8');
const vector = parseVector(doc);

function parseVector(markdown: string): Map<string, string> {
  const block = /<!-- test-vector -->\s*```text\n([\s\S]*?)```/.exec(markdown);
  assert.ok(block, 'docs/sealing.md has a test-vector block');
  const values = new Map<string, string>();
  for (const line of block[1]!.split('\n')) {
    const match = /^(\w+)\s*=\s(.*)$/.exec(line);
    if (match) values.set(match[1]!, match[2]!);
  }
  return values;
}

function text(name: string): string {
  const value = vector.get(name);
  assert.ok(value !== undefined, `test vector has ${name}`);
  return value;
}

function hex(name: string): Buffer {
  const value = text(name);
  assert.match(value, /^([0-9a-f]{2})+$/, `${name} is hex`);
  return Buffer.from(value, 'hex');
}

describe('documented test vector', () => {
  const dek = hex('dek');
  const ctx = { tenantId: text('tenant_id'), table: text('table'), column: text('column'), rowId: text('row_id') };
  const keyVersion = Number(text('key_version'));

  test('plaintext hex is the UTF-8 of the plaintext', () => {
    assert.ok(Buffer.from(text('plaintext_utf8'), 'utf8').equals(hex('plaintext')));
  });

  test('column key', () => {
    assert.equal(derivationLabel('column-key', ctx.table, ctx.column), text('column_key_info'));
    assert.equal(deriveColumnKey(dek, ctx.table, ctx.column).toString('hex'), text('column_key'));
  });

  test('binding', () => {
    assert.equal(encodeBinding(ctx).toString('hex'), text('binding'));
  });

  test('seal with the fixed nonce gives the documented envelope', () => {
    const sealed = unsafeSealEnvelopeWithFixedNonce(hex('column_key'), keyVersion, hex('plaintext'), hex('binding'), hex('nonce'));
    assert.equal(sealed.toString('hex'), text('sealed'));
  });

  test('the documented envelope opens to the plaintext', () => {
    assert.deepEqual(readEnvelopeHeader(hex('sealed')), { formatVersion: 1, keyVersion });
    assert.ok(openEnvelope(hex('column_key'), hex('sealed'), hex('binding')).equals(hex('plaintext')));
    const sealer = new Sealer(new InMemoryKeyring().add(ctx.tenantId, keyVersion, dek));
    assert.equal(sealer.openString(ctx, hex('sealed')), text('plaintext_utf8'));
  });

  test('blind index', () => {
    const table = text('index_table');
    const column = text('index_column');
    assert.equal(derivationLabel('blind-index-key', table, column), text('index_key_info'));
    assert.equal(deriveBlindIndexKey(dek, table, column).toString('hex'), text('index_key'));
    const normaliser = text('index_normaliser') as NormaliserKind;
    assert.equal(normalise(normaliser, text('index_input')), text('index_normalised'));
    const lengthBytes = Number(text('index_length'));
    assert.equal(computeBlindIndex(hex('index_key'), text('index_normalised'), lengthBytes).toString('hex'), text('index'));
    const sealer = new Sealer(new InMemoryKeyring().add(ctx.tenantId, keyVersion, dek));
    const index = sealer.blindIndex({ tenantId: ctx.tenantId, table, column }, text('index_input'), { normaliser, lengthBytes });
    assert.equal(index.toString('hex'), text('index'));
  });
});
