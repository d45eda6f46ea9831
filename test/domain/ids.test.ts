import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';
import { isTenantSlug, isUuid } from '../../src/domain/ids.js';

describe('ids and slugs', () => {
  test('isUuid: minted ids pass, in either case', () => {
    const id = randomUUID();
    assert.equal(isUuid(id), true);
    assert.equal(isUuid(id.toUpperCase()), true);
  });

  test('isUuid: anything else, including SQL and path tricks, is refused without a lookup', () => {
    for (const value of ['', 'not-a-uuid', `${randomUUID()}x`, ` ${randomUUID()}`, "1' OR '1'='1", '../etc/passwd', 42, null, undefined, {}]) {
      assert.equal(isUuid(value), false, String(value));
    }
  });

  test('isTenantSlug: a DNS label of lower-case letters, digits and dashes', () => {
    for (const slug of ['acme', 'acme-dental', '0day', 'a'.repeat(63)]) assert.equal(isTenantSlug(slug), true, slug);
    for (const slug of ['', '-acme', 'Acme', 'acme_dental', 'acme/other', 'a'.repeat(64), 'acme.dental', 7]) assert.equal(isTenantSlug(slug), false, String(slug));
  });
});
