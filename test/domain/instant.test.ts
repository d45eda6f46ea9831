import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isStorableInstant } from '../../src/domain/instant.js';

describe('isStorableInstant', () => {
  test('years 0001 to 9999 are storable', () => {
    assert.equal(isStorableInstant(new Date('0001-01-01T00:00:00Z')), true);
    assert.equal(isStorableInstant(new Date('2026-12-08T01:00:00Z')), true);
    assert.equal(isStorableInstant(new Date('9999-12-31T23:59:59.999Z')), true);
  });

  test('an invalid date, year 0 and years past 9999 are not', () => {
    assert.equal(isStorableInstant(new Date('not a date')), false);
    assert.equal(isStorableInstant(new Date('0000-12-31T23:59:59Z')), false);
    assert.equal(isStorableInstant(new Date('+010000-01-01T00:00:00Z')), false);
    assert.equal(isStorableInstant(new Date(8.64e15)), false);
  });
});
