import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { encodeBinding } from '../../src/seal/binding.js';
import { deriveColumnKey } from '../../src/seal/derive.js';
import { openEnvelope, readEnvelopeHeader } from '../../src/seal/envelope.js';
import { MissingKeyError, SealOpenError, type SealOpenFailure } from '../../src/seal/errors.js';
import { sealCounters } from '../../src/metrics/seal-counters.js';
import { InMemoryKeyring, Sealer, type SealContext } from '../../src/seal/sealer.js';

function setup() {
  const keyring = new InMemoryKeyring().add('t1', 1, randomBytes(32)).add('t2', 1, randomBytes(32));
  keyring.add('system', 1, randomBytes(32));
  return { keyring, sealer: new Sealer(keyring) };
}

const ctx: SealContext = { tenantId: 't1', table: 'messages', column: 'body', rowId: '1001' };

function assertOpenFails(sealer: Sealer, at: SealContext, sealed: Buffer, reasons: readonly SealOpenFailure[]): void {
  assert.throws(
    () => sealer.open(at, sealed),
    (error: unknown) => error instanceof SealOpenError && reasons.includes(error.reason),
  );
}

describe('Sealer round trip', () => {
  const { sealer } = setup();
  for (const size of [0, 1, 160, 4096, 1024 * 1024]) {
    test(`${size} bytes`, () => {
      const plaintext = randomBytes(size);
      assert.ok(sealer.open(ctx, sealer.seal(ctx, plaintext)).equals(plaintext));
    });
  }

  test('strings, unicode included', () => {
    for (const text of ['', 'a', 'Grüße, Zoë 👋 你好', 'x'.repeat(5000)]) {
      assert.equal(sealer.openString(ctx, sealer.seal(ctx, text)), text);
    }
  });

  test('is exactly the documented envelope: opens with the derived key and the binding', () => {
    const dek = randomBytes(32);
    const own = new Sealer(new InMemoryKeyring().add('t1', 4, dek));
    const sealed = own.seal(ctx, 'cross-check');
    assert.equal(readEnvelopeHeader(sealed)?.keyVersion, 4);
    const opened = openEnvelope(deriveColumnKey(dek, ctx.table, ctx.column), sealed, encodeBinding(ctx));
    assert.equal(opened.toString('utf8'), 'cross-check');
  });

  test('rows of one column interleave, with row ids of any length', () => {
    const rows = ['1', 'x'.repeat(300), '2', 'ünï-👋', 'y'.repeat(70)].map((rowId) => ({ ...ctx, rowId }));
    const sealed = rows.map((row) => sealer.seal(row, `value of ${row.rowId}`));
    rows.forEach((row, i) => assert.equal(sealer.openString(row, sealed[i]!), `value of ${row.rowId}`));
    assert.throws(() => sealer.open(rows[0]!, sealed[1]!), SealOpenError);
  });

  test('system-wide data uses the system scope', () => {
    const systemCtx = { ...ctx, tenantId: 'system', table: 'settings', column: 'value' };
    assert.equal(sealer.openString(systemCtx, sealer.seal(systemCtx, 'smtp password')), 'smtp password');
  });

  test('a scope without a key cannot seal', () => {
    assert.throws(() => sealer.seal({ ...ctx, tenantId: 'nobody' }, 'x'), MissingKeyError);
  });
});

describe('Sealer fails closed', () => {
  test('a flipped bit anywhere never yields plaintext', () => {
    const { sealer } = setup();
    const sealed = sealer.seal(ctx, 'call me at 415 555 0100');
    for (let offset = 0; offset < sealed.length; offset++) {
      for (let bit = 0; bit < 8; bit++) {
        const tampered = Buffer.from(sealed);
        tampered[offset]! ^= 1 << bit;
        assert.throws(() => sealer.open(ctx, tampered), SealOpenError, `offset ${offset} bit ${bit}`);
      }
    }
  });

  test('truncation at every length never yields plaintext', () => {
    const { sealer } = setup();
    const sealed = sealer.seal(ctx, 'hello there');
    for (let length = 0; length < sealed.length; length++) {
      assert.throws(() => sealer.open(ctx, sealed.subarray(0, length)), SealOpenError);
    }
  });

  test('a value moved to another row, column, table or tenant fails to open', () => {
    const { sealer } = setup();
    const sealed = sealer.seal(ctx, 'private');
    for (const elsewhere of [
      { ...ctx, rowId: '1002' },
      { ...ctx, column: 'subject' },
      { ...ctx, table: 'notes' },
      { ...ctx, tenantId: 't2' },
      { ...ctx, tenantId: 'system' },
    ]) {
      assertOpenFails(sealer, elsewhere, sealed, ['authentication-failed']);
    }
    assert.equal(sealer.openString(ctx, sealed), 'private');
  });

  test('a value relabelled with another existing key version fails to open', () => {
    const { sealer, keyring } = setup();
    const sealedV1 = sealer.seal(ctx, 'private');
    keyring.rotate('t1');
    const relabelled = Buffer.from(sealedV1);
    relabelled.writeUInt32BE(2, 2);
    assertOpenFails(sealer, ctx, relabelled, ['authentication-failed']);
    const sealedV2 = sealer.seal(ctx, 'private');
    const downgraded = Buffer.from(sealedV2);
    downgraded.writeUInt32BE(1, 2);
    assertOpenFails(sealer, ctx, downgraded, ['authentication-failed']);
  });

  test('an unknown key version is its own error', () => {
    const { sealer } = setup();
    const sealed = sealer.seal(ctx, 'private');
    sealed.writeUInt32BE(99, 2);
    assertOpenFails(sealer, ctx, sealed, ['unknown-key-version']);
  });

  test('plaintext is never passed through', () => {
    const { sealer } = setup();
    assertOpenFails(sealer, ctx, Buffer.from('legacy plaintext'), ['not-sealed']);
  });
});

describe('Sealer key versions', () => {
  test('seals with the current version and opens with the one in the header', () => {
    const { sealer, keyring } = setup();
    const sealedV1 = sealer.seal(ctx, 'old');
    assert.equal(readEnvelopeHeader(sealedV1)?.keyVersion, 1);
    keyring.rotate('t1');
    const sealedV2 = sealer.seal(ctx, 'new');
    assert.equal(readEnvelopeHeader(sealedV2)?.keyVersion, 2);
    assert.equal(sealer.openString(ctx, sealedV1), 'old');
    assert.equal(sealer.openString(ctx, sealedV2), 'new');
  });

  test('a destroyed version stops opening even when its keys are cached', () => {
    const { sealer, keyring } = setup();
    const sealedV1 = sealer.seal(ctx, 'old');
    keyring.rotate('t1');
    keyring.retire('t1', 1);
    assertOpenFails(sealer, ctx, sealedV1, ['unknown-key-version']);
  });

  test('a DEK replaced under the same version is not served from the cache', () => {
    const { sealer, keyring } = setup();
    const sealed = sealer.seal(ctx, 'x');
    keyring.add('t1', 1, randomBytes(32));
    assertOpenFails(sealer, ctx, sealed, ['authentication-failed']);
  });
});

describe('Sealer nonces and counters', () => {
  test('no nonce repeats over 100,000 seals', () => {
    const { sealer } = setup();
    const nonces = new Set<string>();
    const plaintext = Buffer.from('same plaintext every time');
    for (let i = 0; i < 100_000; i++) {
      nonces.add(sealer.seal(ctx, plaintext).toString('latin1', 6, 18));
    }
    assert.equal(nonces.size, 100_000);
  });

  test('counts seals, opens and failures', () => {
    const { sealer } = setup();
    const before = structuredClone(sealCounters);
    const sealed = sealer.seal(ctx, 'x');
    sealer.open(ctx, sealed);
    assert.throws(() => sealer.open({ ...ctx, rowId: '2' }, sealed));
    assert.equal(sealCounters.seals - before.seals, 1);
    assert.equal(sealCounters.opens - before.opens, 1);
    assert.equal(sealCounters.openFailures - before.openFailures, 1);
    assert.equal(
      sealCounters.openFailuresByReason['authentication-failed'] - before.openFailuresByReason['authentication-failed'],
      1,
    );
  });
});
