import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { NormaliseError } from '../../src/domain/normalise.js';
import { normalise, normaliseE164, normaliseEmail, normaliseExact } from '../../src/domain/normalise.js';

describe('normalisers', () => {
  test('e164: the common ways of writing one number agree', () => {
    for (const input of ['+1 (415) 555-0100', '4155550100', '+14155550100', '(415) 555-0100', ' 415.555.0100 ']) {
      assert.equal(normaliseE164(input), '+14155550100');
    }
  });

  test('e164: the default country applies to national numbers only', () => {
    assert.equal(normaliseE164('020 7946 0958', 'GB'), '+442079460958');
    assert.equal(normaliseE164('+442079460958'), '+442079460958');
  });

  test('e164: invalid numbers throw NormaliseError', () => {
    for (const input of ['', '12345', 'not a phone', '+1 415 555 010']) {
      assert.throws(() => normaliseE164(input), NormaliseError);
    }
  });

  test('email: trimmed, lower-cased, NFC', () => {
    assert.equal(normaliseEmail('  Alice.Smith@Example.COM \n'), 'alice.smith@example.com');
    assert.equal(normaliseEmail('ZOE\u0308@example.com'), 'zo\u00eb@example.com');
    assert.throws(() => normaliseEmail('   '), NormaliseError);
  });

  test('exact: NFC only', () => {
    assert.equal(normaliseExact('Zoe\u0308 '), 'Zo\u00eb ');
    assert.equal(normaliseExact('CASE'), 'CASE');
  });

  test('normalise() dispatches by kind or to a custom function', () => {
    assert.equal(normalise('email', 'A@B.C'), 'a@b.c');
    assert.equal(normalise((value) => value.toUpperCase(), 'abc'), 'ABC');
    assert.throws(() => normalise('nope' as 'exact', 'abc'), NormaliseError);
  });
});
