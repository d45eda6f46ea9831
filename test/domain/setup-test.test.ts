import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isSetupTestMessage, SETUP_TEST_BODY_MARKER } from '../../src/domain/setup-test.js';

/**
 * A setup test message needs BOTH the body marker and a test message id: a customer who writes
 * the marker text, or a real message whose id happens to look like a test's, is an ordinary
 * message and gets its AI reply.
 */
const body = `${SETUP_TEST_BODY_MARKER} 1a2b3c`;

test('the marker and a test id together make a setup test, for Twilio and Podium', () => {
  assert.equal(isSetupTestMessage(`SM7e57${'0a'.repeat(14)}`, body), true);
  assert.equal(isSetupTestMessage('test-0f1e2d3c-4b5a-4968-8776-655443322110', body), true);
});

test('the marker with a real message id is an ordinary message', () => {
  assert.equal(isSetupTestMessage(`SM${'ab'.repeat(16)}`, body), false);
  assert.equal(isSetupTestMessage('0f1e2d3c-4b5a-4968-8776-655443322110', body), false);
  assert.equal(isSetupTestMessage(undefined, body), false);
});

test('a test id without the marker (or with the marker not at the start) is an ordinary message', () => {
  const sid = `SM7e57${'0a'.repeat(14)}`;
  assert.equal(isSetupTestMessage(sid, 'Are you open today?'), false);
  assert.equal(isSetupTestMessage(sid, `Hello ${body}`), false);
  assert.equal(isSetupTestMessage(sid, SETUP_TEST_BODY_MARKER), false);
});

test('ids that only resemble a test id are not one (tampered length, case, prefix)', () => {
  assert.equal(isSetupTestMessage(`SM7e57${'0a'.repeat(13)}`, body), false);
  assert.equal(isSetupTestMessage(`MM7e57${'0a'.repeat(14)}`, body), false);
  assert.equal(isSetupTestMessage('TEST-0f1e2d3c-4b5a-4968-8776-655443322110', body), false);
  assert.equal(isSetupTestMessage('test-', body), false);
});
