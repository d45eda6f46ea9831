import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import { startFakeServer, type FakeResponse, type FakeServer, type RecordedRequest } from './fake-server.js';

/**
 * A local Podium API v4 for what Ciphergate uses, in Podium's wire format: Bearer auth, JSON
 * answers wrapped as `{ data, metadata }`, cursor pagination with `limit` and `metadata.nextCursor`
 * (Podium API reference, "Response Body" and "Pagination"), the message object
 * (https://docs.podium.com/reference/the-message-object) and the conversation object
 * (https://docs.podium.com/reference/the-conversation-object).
 *
 * Routes:
 * - `POST /v4/messages` `{ body, channel: { type, identifier }, locationUid, contactName? }`
 *   (https://docs.podium.com/reference/messagesend-1): finds or opens the location's conversation
 *   with that channel and appends the message.
 * - `GET /v4/conversations?locationUid=&limit=&cursor=`
 * - `GET /v4/conversations/{uid}/messages?limit=&cursor=` (see the client on why this one is an
 *   assumption)
 *
 * A request without a valid token, or with a body Podium would refuse, is answered as Podium
 * would (401 / 400) and also recorded in `violations`. Podium's error body is not documented;
 * the fake answers `{ code, message }`.
 */

export interface PodiumFakeConversation {
  uid: string;
  locationUid: string;
  channel: { type: string; identifier: string };
  contactName: string;
  createdAt: Date;
}

export interface PodiumFakeMessage {
  uid: string;
  conversationUid: string;
  locationUid: string;
  body: string;
  contactName: string | undefined;
  /** `outbound` for messages sent through the API, `inbound` for those added with `receive`. */
  direction: 'inbound' | 'outbound';
  createdAt: Date;
}

export interface PodiumFake extends FakeServer {
  readonly conversations: PodiumFakeConversation[];
  readonly messages: PodiumFakeMessage[];
  /** A customer's message arriving in the location's conversation with `from`. */
  receive(message: { locationUid: string; from: string; body: string; contactName?: string }): PodiumFakeMessage;
  /** The message object Podium would return (and put in a webhook event's `data`). */
  messageJson(message: PodiumFakeMessage): Record<string, unknown>;
}

export const DEFAULT_PODIUM_TOKEN = 'podium-fake-access-token-0123456789';
export const DEFAULT_PODIUM_LOCATION = '7b6f1c8e-3d4a-4f5b-9c2d-1e0a9b8c7d6e';
export const DEFAULT_PODIUM_ORGANIZATION = '0f1e2d3c-4b5a-4968-8776-655443322110';

export async function startPodiumFake(options: { tokens?: string[]; pageLimit?: number } = {}): Promise<PodiumFake> {
  const tokens = (options.tokens ?? [DEFAULT_PODIUM_TOKEN]).map((token) => Buffer.from(token));
  const conversations: PodiumFakeConversation[] = [];
  const messages: PodiumFakeMessage[] = [];
  let violations: string[] = [];
  let url = '';

  const conversationFor = (locationUid: string, identifier: string, contactName: string | undefined): PodiumFakeConversation => {
    let conversation = conversations.find((candidate) => candidate.locationUid === locationUid && candidate.channel.identifier === identifier);
    if (!conversation) {
      conversation = { uid: randomUUID(), locationUid, channel: { type: 'phone', identifier }, contactName: contactName ?? '', createdAt: new Date() };
      conversations.push(conversation);
    } else if (contactName) {
      // "If a contact already exists for the channel then their name will be updated."
      conversation.contactName = contactName;
    }
    return conversation;
  };

  const messageJson = (message: PodiumFakeMessage): Record<string, unknown> => {
    const conversation = conversations.find((candidate) => candidate.uid === message.conversationUid)!;
    const createdAt = message.createdAt.toISOString();
    return {
      uid: message.uid,
      body: message.body,
      items: [{ uid: randomUUID(), type: 'text', body: message.body, createdAt, deliveryStatus: message.direction === 'outbound' ? 'sent' : 'received', sourceType: 'api' }],
      contact: { name: message.contactName ?? conversation.contactName, uid: randomUUID() },
      contactName: message.contactName ?? conversation.contactName,
      conversation: { uid: conversation.uid, channel: { ...conversation.channel }, startedAt: conversation.createdAt.toISOString() },
      location: { uid: message.locationUid, organizationUid: DEFAULT_PODIUM_ORGANIZATION },
      createdAt,
      failureReason: null,
    };
  };

  const envelope = (request: RecordedRequest, data: unknown, extra: Record<string, unknown> = {}): FakeResponse => ({
    status: 200,
    body: { data, metadata: { url: `${url}${request.path}`, version: '2021.04.01', ...extra } },
  });

  const handle = (request: RecordedRequest): FakeResponse => {
    if (!authenticated(request, tokens)) {
      violations.push(`${request.method} ${request.path}: missing or wrong bearer token`);
      return podiumError(401, 'unauthorized', 'The authentication header was not provided or is not valid.');
    }
    if (request.method === 'POST' && request.path === '/v4/messages') {
      const problem = sendProblem(request);
      if (problem) {
        violations.push(`POST /v4/messages: ${problem}`);
        return podiumError(400, 'invalid_request', problem);
      }
      const body = JSON.parse(request.rawBody.toString('utf8')) as { body: string; channel: { identifier: string }; locationUid: string; contactName?: string };
      const conversation = conversationFor(body.locationUid, body.channel.identifier, body.contactName);
      const message: PodiumFakeMessage = {
        uid: randomUUID(),
        conversationUid: conversation.uid,
        locationUid: body.locationUid,
        body: body.body,
        contactName: body.contactName,
        direction: 'outbound',
        createdAt: new Date(),
      };
      messages.push(message);
      return envelope(request, messageJson(message));
    }
    if (request.method === 'GET' && request.path === '/v4/conversations') {
      const page = pageOf(request, options.pageLimit);
      if (typeof page === 'string') return badQuery(request, page);
      const locationUid = page.params.get('locationUid');
      const matching = conversations.filter((conversation) => !locationUid || conversation.locationUid === locationUid);
      return listAnswer(request, matching.map(conversationJson), page);
    }
    const messagesOf = /^\/v4\/conversations\/([0-9a-f-]{36})\/messages$/.exec(request.path);
    if (request.method === 'GET' && messagesOf) {
      const page = pageOf(request, options.pageLimit);
      if (typeof page === 'string') return badQuery(request, page);
      if (!conversations.some((conversation) => conversation.uid === messagesOf[1])) return podiumError(404, 'not_found', 'Conversation not found.');
      const inConversation = messages.filter((message) => message.conversationUid === messagesOf[1]).map(messageJson);
      return listAnswer(request, inConversation, page);
    }
    violations.push(`${request.method} ${request.path}: not a route of the Podium fake`);
    return podiumError(404, 'not_found', 'Not found.');
  };

  const listAnswer = (request: RecordedRequest, items: unknown[], page: Page): FakeResponse => {
    const slice = items.slice(page.offset, page.offset + page.limit);
    const next = page.offset + page.limit < items.length ? encodeCursor(page.params, page.offset + page.limit) : null;
    return envelope(request, slice, { nextCursor: next });
  };

  const badQuery = (request: RecordedRequest, problem: string): FakeResponse => {
    violations.push(`${request.method} ${request.path}: ${problem}`);
    return podiumError(400, 'invalid_request', problem);
  };

  const fake = await startFakeServer(handle);
  violations = fake.violations;
  url = fake.url;
  return Object.assign(fake, {
    conversations,
    messages,
    messageJson,
    receive(inbound: { locationUid: string; from: string; body: string; contactName?: string }) {
      const conversation = conversationFor(inbound.locationUid, inbound.from, inbound.contactName);
      const message: PodiumFakeMessage = {
        uid: randomUUID(),
        conversationUid: conversation.uid,
        locationUid: inbound.locationUid,
        body: inbound.body,
        contactName: inbound.contactName,
        direction: 'inbound',
        createdAt: new Date(),
      };
      messages.push(message);
      return message;
    },
  });
}

/**
 * The `podium-signature` header for a delivery, as Podium computes it: HMAC-SHA256 over
 * `${timestampMs}.${rawBody}` keyed by the webhook secret, in the encoding asked for (Podium does
 * not document which one it sends).
 */
export function signPodiumRequest(secret: string, timestampMs: number | string, rawBody: Buffer | string, encoding: 'hex' | 'base64'): string {
  return createHmac('sha256', secret).update(`${timestampMs}.`).update(rawBody).digest(encoding);
}

/** A webhook delivery body for a message event, in the envelope Podium sends. */
export function podiumMessageEvent(
  eventType: 'message.received' | 'message.sent' | 'message.failed',
  data: Record<string, unknown>,
  metadata: Record<string, unknown> = {},
): string {
  return JSON.stringify({ data, metadata: { eventType, eventUid: randomUUID(), locationUid: DEFAULT_PODIUM_LOCATION, version: '2021.04.01', ...metadata } });
}

interface Page {
  params: URLSearchParams;
  offset: number;
  limit: number;
}

/**
 * `limit` (1–100, default 10) and `cursor`. A cursor stands for the whole query it came from;
 * Podium ignores other parameters next to it, and so does the fake.
 */
function pageOf(request: RecordedRequest, forcedLimit: number | undefined): Page | string {
  const cursor = request.query.get('cursor');
  if (cursor !== null) {
    const decoded = decodeCursor(cursor);
    if (!decoded) return 'cursor is not one the fake issued';
    return { ...decoded, limit: forcedLimit ?? decoded.limit };
  }
  const limitText = request.query.get('limit');
  const limit = limitText === null ? 10 : Number(limitText);
  if (!Number.isInteger(limit) || limit < 1 || limit > 100) return 'limit must be an integer between 1 and 100';
  return { params: request.query, offset: 0, limit: forcedLimit ?? limit };
}

function encodeCursor(params: URLSearchParams, offset: number): string {
  const carried = new URLSearchParams(params);
  carried.delete('cursor');
  carried.set('offset', String(offset));
  return Buffer.from(carried.toString()).toString('base64url');
}

function decodeCursor(cursor: string): Page | undefined {
  const params = new URLSearchParams(Buffer.from(cursor, 'base64url').toString('utf8'));
  const offset = Number(params.get('offset'));
  const limit = Number(params.get('limit') ?? 10);
  if (!Number.isInteger(offset) || offset < 0 || !Number.isInteger(limit)) return undefined;
  params.delete('offset');
  return { params, offset, limit };
}

function sendProblem(request: RecordedRequest): string | undefined {
  if (!String(request.headers['content-type'] ?? '').startsWith('application/json')) return 'Content-Type must be application/json';
  let body: unknown;
  try {
    body = JSON.parse(request.rawBody.toString('utf8'));
  } catch {
    return 'body is not JSON';
  }
  const object = typeof body === 'object' && body !== null ? (body as Record<string, unknown>) : {};
  const channel = typeof object['channel'] === 'object' && object['channel'] !== null ? (object['channel'] as Record<string, unknown>) : undefined;
  if (typeof object['body'] !== 'string' || object['body'] === '') return 'body is required';
  if (!channel || typeof channel['type'] !== 'string' || typeof channel['identifier'] !== 'string' || channel['identifier'] === '') return 'channel.type and channel.identifier are required';
  if (typeof object['locationUid'] !== 'string' || !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(object['locationUid'])) return 'locationUid must be a uuid';
  if (object['contactName'] !== undefined && typeof object['contactName'] !== 'string') return 'contactName must be a string';
  const known = new Set(['body', 'channel', 'locationUid', 'contactName', 'senderName', 'setOpenInbox', 'subject']);
  const unknown = Object.keys(object).filter((key) => !known.has(key));
  return unknown.length > 0 ? `unknown fields: ${unknown.join(', ')}` : undefined;
}

function conversationJson(conversation: PodiumFakeConversation): Record<string, unknown> {
  return {
    uid: conversation.uid,
    closed: false,
    channel: { ...conversation.channel },
    locationUid: conversation.locationUid,
    contactName: conversation.contactName,
    createdAt: conversation.createdAt.toISOString(),
    updatedAt: conversation.createdAt.toISOString(),
    lastItemAt: conversation.createdAt.toISOString(),
    assignedUserUid: null,
  };
}

function authenticated(request: RecordedRequest, tokens: Buffer[]): boolean {
  const match = /^Bearer (\S+)$/.exec(request.headers.authorization ?? '');
  if (!match) return false;
  const presented = Buffer.from(match[1]!);
  return tokens.some((token) => token.length === presented.length && timingSafeEqual(token, presented));
}

function podiumError(status: number, code: string, message: string): FakeResponse {
  return { status, body: { code, message } };
}
