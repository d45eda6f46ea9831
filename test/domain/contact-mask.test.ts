import assert from 'node:assert/strict';
import { test } from 'node:test';
import { maskContactNumber } from '../../src/domain/contact-mask.js';

const BULLETS = '\u2022\u2022\u2022\u2022';

test('a list mask shows at most the last 4 digits, never the country code, the length or a letter', () => {
  assert.equal(maskContactNumber('+14155552671'), `${BULLETS}2671`);
  assert.equal(maskContactNumber('+447700900123'), `${BULLETS}0123`);
  // Same mask length whatever the number's length: the length is not leaked.
  assert.equal(maskContactNumber('+861012345678901').length, maskContactNumber('+14155552671').length);
  // Short codes and odd senders: 2 digits, or none, never half or more of the digits.
  assert.equal(maskContactNumber('72345'), `${BULLETS}45`);
  assert.equal(maskContactNumber('123'), BULLETS);
  assert.equal(maskContactNumber('ACMEDENTAL'), BULLETS);
  assert.equal(maskContactNumber('ACME1234567'), `${BULLETS}67`);
});
