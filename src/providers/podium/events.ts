/**
 * Podium webhook events, parsed into what the relay needs and nothing else.
 *
 * The envelope is `{ "data": {...}, "metadata": {...} }`: Podium's signature example shows
 * `{"data":{...},"metadata":{"event_type":"test.event","version":"2021.04.01"}}`
 * (https://docs.podium.com/docs/verifying-webhook-signatures) while the rest of the v4 API is
 * camelCase (`metadata.eventType`), so both spellings are read. The event types we act on are the
 * three message ones (https://docs.podium.com/reference/message-event-types): `message.received`
 * (a customer wrote to the location), `message.sent` (the location sent one) and `message.failed`
 * (accepted, then not delivered). Their `data` is the message object
 * (https://docs.podium.com/reference/the-message-object): `uid`, `body`, `items[]` (each with
 * `body` and `deliveryStatus`), `conversation.uid`, `conversation.channel.{type,identifier}`
 * (identifier: the phone number for type `phone`), `contact.name` (deprecated, webhook only),
 * `location.uid`, `createdAt`, and for failures `failureReason`.
 *
 * Podium documents no per-delivery event id. When `metadata` carries none (`eventUid`), the id is
 * `<eventType>:<data.uid>`: one message is received, sent or failed once, so the pair identifies
 * the event and a redelivery carries the same pair.
 *
 * Other event types (contacts, reviews, invoices) parse to `{eventType, eventUid}` only; the relay
 * acknowledges and ignores them. Anything malformed throws PodiumEventError.
 */

export interface PodiumMessage {
  uid: string;
  body: string;
  conversationUid: string;
  /** `phone`, `sms`, `email`, `facebook`, … (the conversation object's channel types). */
  channelType: string;
  /** The customer's address on that channel: a phone number for type `phone`. */
  channelIdentifier: string;
  contactName?: string;
  direction?: 'inbound' | 'outbound';
  locationUid?: string;
  createdAt?: string;
}

export interface PodiumMessageStatus {
  messageUid: string;
  /** `message.sent` → sent, `message.failed` → failed. */
  state: 'sent' | 'failed';
  /** Podium's per-item delivery status, when the event has one. */
  deliveryStatus?: string;
  /** Why a failed message failed, e.g. "Attempted to send SMS to a landline." */
  failureReason?: string;
}

export interface PodiumEvent {
  eventType: string;
  eventUid: string;
  /**
   * The location the event belongs to (`metadata.locationUid`, else the message's). An
   * organization-wide webhook delivers every location's events under one secret, so the
   * receiver must check it against the tenant's location.
   */
  locationUid?: string;
  message?: PodiumMessage;
  status?: PodiumMessageStatus;
}

/** A Podium event we cannot read. Its message never quotes the payload (customer data). */
export class PodiumEventError extends Error {
  override readonly name = 'PodiumEventError';
}

export const PODIUM_MESSAGE_EVENTS = ['message.received', 'message.sent', 'message.failed'] as const;

export function parsePodiumEvent(rawBody: Buffer | string): PodiumEvent {
  let parsed: unknown;
  try {
    parsed = JSON.parse(typeof rawBody === 'string' ? rawBody : rawBody.toString('utf8'));
  } catch {
    throw new PodiumEventError('the event is not JSON');
  }
  const envelope = objectOf(parsed);
  if (!envelope) throw new PodiumEventError('the event is not a JSON object');
  const metadata = objectOf(envelope['metadata']);
  if (!metadata) throw new PodiumEventError('the event has no metadata object');
  const eventType = nonEmpty(metadata['eventType']) ?? nonEmpty(metadata['event_type']);
  if (!eventType) throw new PodiumEventError('the event has no event type');
  const data = objectOf(envelope['data']);

  const declaredUid = nonEmpty(metadata['eventUid']) ?? nonEmpty(metadata['event_uid']);
  const dataUid = data ? nonEmpty(data['uid']) : undefined;
  const eventUid = declaredUid ?? (dataUid ? `${eventType}:${dataUid}` : undefined);
  if (!eventUid) throw new PodiumEventError(`the ${eventType} event has no id`);

  const metadataLocation = nonEmpty(metadata['locationUid']) ?? nonEmpty(metadata['location_uid']);
  const located = metadataLocation ? { locationUid: metadataLocation } : {};
  if (!isMessageEvent(eventType)) return { eventType, eventUid, ...located };
  if (!data) throw new PodiumEventError(`the ${eventType} event has no data object`);
  const message = parseMessage(data, eventType);
  const locationUid = metadataLocation ?? message.locationUid;
  const location = locationUid ? { locationUid } : {};
  if (eventType === 'message.received') return { eventType, eventUid, ...location, message };

  const status: PodiumMessageStatus = { messageUid: message.uid, state: eventType === 'message.sent' ? 'sent' : 'failed' };
  const deliveryStatus = firstItemField(data, 'deliveryStatus');
  if (deliveryStatus) status.deliveryStatus = deliveryStatus;
  const failureReason = nonEmpty(data['failureReason']);
  if (failureReason) status.failureReason = failureReason;
  return { eventType, eventUid, ...location, message, status };
}

function parseMessage(data: Record<string, unknown>, eventType: (typeof PODIUM_MESSAGE_EVENTS)[number]): PodiumMessage {
  const uid = nonEmpty(data['uid']);
  if (!uid) throw new PodiumEventError(`the ${eventType} event has no message uid`);
  const conversation = objectOf(data['conversation']);
  const conversationUid = conversation ? nonEmpty(conversation['uid']) : undefined;
  if (!conversation || !conversationUid) throw new PodiumEventError(`the ${eventType} event has no conversation uid`);
  const channel = objectOf(conversation['channel']);
  const channelType = channel ? nonEmpty(channel['type']) : undefined;
  const channelIdentifier = channel ? nonEmpty(channel['identifier']) : undefined;
  if (!channelType || !channelIdentifier) throw new PodiumEventError(`the ${eventType} event has no conversation channel`);
  // The uids are stored and looked up as text, which cannot hold a NUL character.
  if ([uid, conversationUid].some((id) => id.includes('\u0000'))) throw new PodiumEventError(`the ${eventType} event has a uid with a NUL character`);

  const body = data['body'];
  if (body !== undefined && body !== null && typeof body !== 'string') throw new PodiumEventError(`the ${eventType} event has a body that is not text`);
  const message: PodiumMessage = {
    uid,
    // A message of attachments only has no top-level body; its text items, if any, stand in.
    body: typeof body === 'string' ? body : itemBodies(data),
    conversationUid,
    channelType,
    channelIdentifier,
    direction: eventType === 'message.received' ? 'inbound' : 'outbound',
  };
  const contactName = nonEmpty(data['contactName']) ?? nonEmpty(objectOf(data['contact'])?.['name']) ?? nonEmpty(conversation['contactName']);
  if (contactName) message.contactName = contactName;
  const locationUid = nonEmpty(objectOf(data['location'])?.['uid']) ?? nonEmpty(data['locationUid']);
  if (locationUid) message.locationUid = locationUid;
  const createdAt = nonEmpty(data['createdAt']);
  if (createdAt) message.createdAt = createdAt;
  return message;
}

function isMessageEvent(eventType: string): eventType is (typeof PODIUM_MESSAGE_EVENTS)[number] {
  return (PODIUM_MESSAGE_EVENTS as readonly string[]).includes(eventType);
}

function itemBodies(data: Record<string, unknown>): string {
  const items = Array.isArray(data['items']) ? data['items'] : [];
  return items
    .map((item) => nonEmpty(objectOf(item)?.['body']))
    .filter((text): text is string => text !== undefined)
    .join('\n');
}

function firstItemField(data: Record<string, unknown>, field: string): string | undefined {
  const items = Array.isArray(data['items']) ? data['items'] : [];
  for (const item of items) {
    const value = nonEmpty(objectOf(item)?.[field]);
    if (value) return value;
  }
  return undefined;
}

function objectOf(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}

function nonEmpty(value: unknown): string | undefined {
  return typeof value === 'string' && value.trim() !== '' ? value : undefined;
}
