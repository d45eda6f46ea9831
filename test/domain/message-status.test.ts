import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { INBOUND_STATUS, normaliseStatus, OUTBOUND_INITIAL_STATUS, statusRank } from '../../src/domain/message-status.js';

describe('message status', () => {
  test('statuses rank in the order a message moves through them', () => {
    const order = [OUTBOUND_INITIAL_STATUS, 'accepted', 'queued', 'sending', 'sent', 'delivered', 'read', 'suppressed'];
    for (let index = 1; index < order.length; index += 1) {
      assert.ok(statusRank(order[index - 1]!) < statusRank(order[index]!), `${order[index - 1]} before ${order[index]}`);
    }
  });

  test('a late `sent` never outranks a terminal status', () => {
    for (const terminal of ['delivered', 'undelivered', 'failed', 'canceled']) assert.ok(statusRank('sent') < statusRank(terminal), terminal);
  });

  test("an unknown status ranks above sending and below the terminal ones", () => {
    assert.ok(statusRank('brand-new-status') > statusRank('queued'));
    assert.ok(statusRank('brand-new-status') < statusRank('sent'));
    assert.equal(statusRank(INBOUND_STATUS), 0);
  });

  test('normaliseStatus: lower-cased safe tokens, anything else is unknown', () => {
    assert.equal(normaliseStatus(' Delivered '), 'delivered');
    assert.equal(normaliseStatus('partially_delivered'), 'partially_delivered');
    assert.equal(normaliseStatus(undefined), 'unknown');
    assert.equal(normaliseStatus(''), 'unknown');
    assert.equal(normaliseStatus('<script>'), 'unknown');
    assert.equal(normaliseStatus('x'.repeat(33)), 'unknown');
  });
});
