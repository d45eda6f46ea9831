import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PodiumEventError, parsePodiumEvent } from '../../../src/providers/podium/events.js';
import { DEFAULT_PODIUM_LOCATION, podiumMessageEvent } from '../../fakes/podium.js';

/**
 * Podium events in the shape of the message object (docs.podium.com/reference/the-message-object)
 * inside `{data, metadata}`: the three message events become what the relay stores, other event
 * types are recognised and left alone, and malformed ones are refused.
 */

const messageData = {
  uid: '9d2a6c1e-5b4f-4e3d-8c7b-6a5f4e3d2c1b',
  body: 'Hi, this is Dana. Running 10 minutes late.',
  items: [{ uid: '1c2d3e4f-0000-4000-8000-000000000010', type: 'text', body: 'Hi, this is Dana. Running 10 minutes late.', deliveryStatus: 'received' }],
  contact: { name: 'Dana Smith', uid: '1c2d3e4f-0000-4000-8000-000000000011' },
  conversation: { uid: '1c2d3e4f-0000-4000-8000-000000000012', channel: { type: 'phone', identifier: '+15551230000' } },
  location: { uid: '7b6f1c8e-3d4a-4f5b-9c2d-1e0a9b8c7d6e', organizationUid: '0f1e2d3c-4b5a-4968-8776-655443322110' },
  createdAt: '2024-07-03T10:00:00Z',
};

describe('parsePodiumEvent', () => {
  test('message.received is an inbound message', () => {
    const event = parsePodiumEvent(Buffer.from(podiumMessageEvent('message.received', messageData, { eventUid: 'evt-1' })));
    assert.deepEqual(event, {
      eventType: 'message.received',
      eventUid: 'evt-1',
      // From the envelope's metadata: the receiver checks it against the tenant's location.
      locationUid: DEFAULT_PODIUM_LOCATION,
      message: {
        uid: messageData.uid,
        body: messageData.body,
        conversationUid: messageData.conversation.uid,
        channelType: 'phone',
        channelIdentifier: '+15551230000',
        contactName: 'Dana Smith',
        direction: 'inbound',
        locationUid: messageData.location.uid,
        createdAt: '2024-07-03T10:00:00Z',
      },
    });
  });

  test('message.sent is an outbound message with a sent status', () => {
    const event = parsePodiumEvent(podiumMessageEvent('message.sent', { ...messageData, items: [{ body: 'x', deliveryStatus: 'sent' }] }));
    assert.equal(event.message?.direction, 'outbound');
    assert.deepEqual(event.status, { messageUid: messageData.uid, state: 'sent', deliveryStatus: 'sent' });
  });

  test('message.failed carries the failure reason', () => {
    const event = parsePodiumEvent(podiumMessageEvent('message.failed', { ...messageData, failureReason: 'Attempted to send SMS to a landline.' }));
    assert.deepEqual(event.status, { messageUid: messageData.uid, state: 'failed', deliveryStatus: 'received', failureReason: 'Attempted to send SMS to a landline.' });
  });

  test("the documented example's snake_case event_type is read too", () => {
    const event = parsePodiumEvent(JSON.stringify({ data: messageData, metadata: { event_type: 'message.received', version: '2021.04.01' } }));
    assert.equal(event.eventType, 'message.received');
  });

  test('without an event id in metadata, the id is the event type and the message uid', () => {
    const body = JSON.stringify({ data: messageData, metadata: { eventType: 'message.received' } });
    assert.equal(parsePodiumEvent(body).eventUid, `message.received:${messageData.uid}`);
    // A redelivery is the same event.
    assert.equal(parsePodiumEvent(body).eventUid, parsePodiumEvent(Buffer.from(body)).eventUid);
  });

  test('a message of attachments has its text items as body, or an empty body', () => {
    const { body: _body, ...withoutBody } = messageData;
    assert.equal(parsePodiumEvent(podiumMessageEvent('message.received', withoutBody)).message?.body, messageData.body);
    assert.equal(parsePodiumEvent(podiumMessageEvent('message.received', { ...withoutBody, items: [{ type: 'image', attachmentUrl: 'https://x' }] })).message?.body, '');
  });

  test('the contact name falls back to contactName fields and may be absent', () => {
    const { contact: _contact, ...withoutContact } = messageData;
    assert.equal(parsePodiumEvent(podiumMessageEvent('message.received', { ...withoutContact, contactName: 'D. S.' })).message?.contactName, 'D. S.');
    assert.equal(parsePodiumEvent(podiumMessageEvent('message.received', withoutContact)).message?.contactName, undefined);
  });

  test('other event types are recognised without a message', () => {
    const event = parsePodiumEvent(JSON.stringify({ data: { uid: 'c-1', name: 'someone' }, metadata: { eventType: 'contact.created', eventUid: 'evt-9' } }));
    assert.deepEqual(event, { eventType: 'contact.created', eventUid: 'evt-9' });
  });

  test('malformed events are refused with PodiumEventError, quoting nothing from the payload', () => {
    const { uid: _uid, ...withoutUid } = messageData;
    const cases: Array<[string, string | Buffer]> = [
      ['not JSON', 'Dana says hi'],
      ['not an object', '["message.received"]'],
      ['no metadata', JSON.stringify({ data: messageData })],
      ['no event type', JSON.stringify({ data: messageData, metadata: { version: '2021.04.01' } })],
      ['no id anywhere', JSON.stringify({ data: {}, metadata: { eventType: 'contact.created' } })],
      ['no data', JSON.stringify({ metadata: { eventType: 'message.received', eventUid: 'e' } })],
      ['no message uid', podiumMessageEvent('message.received', withoutUid)],
      ['no conversation', podiumMessageEvent('message.received', { ...messageData, conversation: undefined })],
      ['no channel', podiumMessageEvent('message.received', { ...messageData, conversation: { uid: 'c' } })],
      ['empty identifier', podiumMessageEvent('message.received', { ...messageData, conversation: { uid: 'c', channel: { type: 'phone', identifier: ' ' } } })],
      ['body not text', podiumMessageEvent('message.received', { ...messageData, body: { text: 'hi' } })],
    ];
    for (const [label, body] of cases) {
      assert.throws(
        () => parsePodiumEvent(body),
        (error: unknown) => error instanceof PodiumEventError && !error.message.includes('Dana') && !error.message.includes('+1555'),
        label,
      );
    }
  });
});
