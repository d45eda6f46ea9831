import { randomBytes, timingSafeEqual } from 'node:crypto';
import twilio from 'twilio';
import { startFakeServer, type FakeResponse, type FakeServer, type RecordedRequest } from './fake-server.js';
import { twilioSpecValidator } from './openapi-validator.js';

/**
 * A local Twilio REST API (2010-04-01) for the Messages resource, speaking the real wire format:
 * form-encoded requests with HTTP Basic auth (AccountSid:AuthToken), the Message JSON of the
 * spec's `api.v2010.account.message` schema, Twilio's paginated list shape and its error shape
 * `{code, message, more_info, status}` (the `more_info` links point at
 * https://www.twilio.com/docs/errors/<code>).
 * Every request is also checked against ../shared/specs/twilio_api_v2010.json; a violation, or a
 * request with wrong credentials, lands in `violations`.
 *
 * Routes:
 * - `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` → 201, status `queued`, date_sent null
 *   (a queued message has not left yet: https://www.twilio.com/docs/messaging/api/message-resource)
 * - `GET  /2010-04-01/Accounts/{AccountSid}/Messages.json` with To, From, DateSent, DateSent<,
 *   DateSent> (day granularity, GMT), PageSize, Page, PageToken
 * - `GET  /2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json`
 */

export interface TwilioFakeMessage {
  sid: string;
  accountSid: string;
  from: string;
  to: string;
  body: string;
  status: string;
  statusCallback: string | undefined;
  dateCreated: Date;
  /** Null until the message leaves Twilio (see `setStatus`). */
  dateSent: Date | null;
  dateUpdated: Date;
}

export interface TwilioFake extends FakeServer {
  /** Every message the fake accepted, in creation order. */
  readonly messages: TwilioFakeMessage[];
  /**
   * Moves a message on as Twilio would (`sent`, `delivered`, `failed`…); the first status that
   * means it left (`sending`, `sent`, `delivered`, `undelivered`) stamps date_sent.
   */
  setStatus(sid: string, status: string, at?: Date): TwilioFakeMessage;
  /** The Message JSON Twilio would return for this message. */
  messageJson(message: TwilioFakeMessage): Record<string, unknown>;
}

/** An account that exists in every fake started without `accounts`. */
export const DEFAULT_TWILIO_ACCOUNT = {
  accountSid: 'AC0123456789abcdef0123456789abcdef',
  authToken: 'fake-twilio-auth-token-0123456789ab',
} as const;

export async function startTwilioFake(options: { accounts?: Record<string, string /* authToken */> } = {}): Promise<TwilioFake> {
  const accounts = new Map(Object.entries(options.accounts ?? { [DEFAULT_TWILIO_ACCOUNT.accountSid]: DEFAULT_TWILIO_ACCOUNT.authToken }));
  const messages: TwilioFakeMessage[] = [];
  let violations: string[] = [];

  const handle = (request: RecordedRequest): FakeResponse => {
    const route = matchRoute(request);
    if (!route) return twilioError(404, 20404, `The requested resource ${request.path} was not found`);
    if (!authenticated(request, route.accountSid, accounts)) {
      violations.push(`${request.method} ${request.path}: wrong or missing credentials for ${route.accountSid}`);
      return { ...twilioError(401, 20003, 'Authenticate'), headers: { 'www-authenticate': 'Basic realm="Twilio API"' } };
    }
    switch (route.kind) {
      case 'create':
        return createMessage(request, route.accountSid, messages);
      case 'list':
        return listMessages(request, route.accountSid, messages);
      case 'fetch': {
        const found = messages.find((message) => message.sid === route.sid && message.accountSid === route.accountSid);
        return found ? { status: 200, body: messageJson(found) } : twilioError(404, 20404, `The requested resource ${request.path} was not found`);
      }
    }
  };

  const fake = await startFakeServer(handle, { check: (request) => twilioSpecValidator().check(request) });
  violations = fake.violations;
  return Object.assign(fake, {
    messages,
    messageJson,
    setStatus(sid: string, status: string, at = new Date()) {
      const message = messages.find((candidate) => candidate.sid === sid);
      if (!message) throw new Error(`no message ${sid} in the Twilio fake`);
      message.status = status;
      message.dateUpdated = at;
      if (message.dateSent === null && LEFT_TWILIO.has(status)) message.dateSent = at;
      return message;
    },
  });
}

/**
 * X-Twilio-Signature for a request to `url` with these form parameters, as Twilio computes it,
 * so tests can sign (or forge) inbound webhooks. For a JSON body, put `bodySHA256` in the URL's
 * query and pass `{}` as params.
 */
export function signTwilioRequest(authToken: string, url: string, params: Record<string, string | string[]>): string {
  return twilio.getExpectedTwilioSignature(authToken, url, params);
}

/** Statuses of a message that has left Twilio for the carrier. */
const LEFT_TWILIO = new Set(['sending', 'sent', 'delivered', 'undelivered', 'read']);

const ACCOUNT = '(AC[0-9a-fA-F]{32})';
const MESSAGES_PATH = new RegExp(`^/2010-04-01/Accounts/${ACCOUNT}/Messages\\.json$`);
const MESSAGE_PATH = new RegExp(`^/2010-04-01/Accounts/${ACCOUNT}/Messages/((?:SM|MM)[0-9a-fA-F]{32})\\.json$`);

type Route = { kind: 'create' | 'list'; accountSid: string } | { kind: 'fetch'; accountSid: string; sid: string };

function matchRoute(request: RecordedRequest): Route | undefined {
  const collection = MESSAGES_PATH.exec(request.path);
  if (collection && request.method === 'POST') return { kind: 'create', accountSid: collection[1]! };
  if (collection && request.method === 'GET') return { kind: 'list', accountSid: collection[1]! };
  const single = MESSAGE_PATH.exec(request.path);
  if (single && request.method === 'GET') return { kind: 'fetch', accountSid: single[1]!, sid: single[2]! };
  return undefined;
}

/** HTTP Basic with the path's account and its token, compared in constant time. */
function authenticated(request: RecordedRequest, accountSid: string, accounts: Map<string, string>): boolean {
  const header = request.headers.authorization ?? '';
  const match = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(header);
  if (!match) return false;
  const decoded = Buffer.from(match[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return false;
  const username = decoded.slice(0, colon);
  const password = Buffer.from(decoded.slice(colon + 1));
  const expected = accounts.get(accountSid);
  if (username !== accountSid || expected === undefined) return false;
  const expectedBytes = Buffer.from(expected);
  return password.length === expectedBytes.length && timingSafeEqual(password, expectedBytes);
}

function createMessage(request: RecordedRequest, accountSid: string, messages: TwilioFakeMessage[]): FakeResponse {
  const form = new URLSearchParams(request.rawBody.toString('utf8'));
  const to = form.get('To');
  const from = form.get('From');
  const body = form.get('Body');
  // Twilio's checks, in its order and with its codes (https://www.twilio.com/docs/api/errors).
  if (!to) return twilioError(400, 21604, "A 'To' phone number is required.");
  if (!from && !form.get('MessagingServiceSid')) return twilioError(400, 21603, "A 'From' phone number is required.");
  if (!body && !form.get('MediaUrl') && !form.get('ContentSid')) return twilioError(400, 21602, 'Message body is required.');
  if (!/^\+[1-9]\d{1,14}$/.test(to)) return twilioError(400, 21211, "Invalid 'To' Phone Number");
  const now = wholeSecond(new Date());
  const message: TwilioFakeMessage = {
    sid: `SM${randomBytes(16).toString('hex')}`,
    accountSid,
    from: from ?? '',
    to,
    body: body ?? '',
    status: 'queued',
    statusCallback: form.get('StatusCallback') ?? undefined,
    dateCreated: now,
    dateSent: null,
    dateUpdated: now,
  };
  messages.push(message);
  return { status: 201, body: messageJson(message) };
}

function listMessages(request: RecordedRequest, accountSid: string, messages: TwilioFakeMessage[]): FakeResponse {
  const query = request.query;
  const pageSize = clampInteger(query.get('PageSize'), 50, 1, 1000);
  const page = clampInteger(query.get('Page'), 0, 0, Number.MAX_SAFE_INTEGER);
  const sentOn = dayOf(query.get('DateSent'));
  const sentOnOrBefore = dayOf(query.get('DateSent<'));
  const sentOnOrAfter = dayOf(query.get('DateSent>'));
  const dateFiltered = sentOn !== undefined || sentOnOrBefore !== undefined || sentOnOrAfter !== undefined;

  const matching = messages
    .filter((message) => message.accountSid === accountSid)
    .filter((message) => !query.has('To') || message.to === query.get('To'))
    .filter((message) => !query.has('From') || message.from === query.get('From'))
    .filter((message) => {
      if (!dateFiltered) return true;
      if (message.dateSent === null) return false;
      const day = utcDay(message.dateSent);
      return (sentOn === undefined || day === sentOn) && (sentOnOrBefore === undefined || day <= sentOnOrBefore) && (sentOnOrAfter === undefined || day >= sentOnOrAfter);
    })
    // Twilio lists the most recently sent first. Where a not-yet-sent message (date_sent null)
    // goes is undocumented; the fake puts them first, newest created first.
    .map((message, index) => ({ message, index }))
    .sort((a, b) => newestFirst(a.message, b.message) || b.index - a.index)
    .map(({ message }) => message);

  const start = page * pageSize;
  const slice = matching.slice(start, start + pageSize);
  const base = `/2010-04-01/Accounts/${accountSid}/Messages.json`;
  const pageUri = (pageNumber: number) => {
    const params = new URLSearchParams();
    for (const name of ['To', 'From', 'DateSent', 'DateSent<', 'DateSent>']) {
      const value = query.get(name);
      if (value !== null) params.set(name, value);
    }
    params.set('PageSize', String(pageSize));
    params.set('Page', String(pageNumber));
    if (pageNumber > 0) params.set('PageToken', `PA${String(pageNumber).padStart(32, '0')}`);
    return `${base}?${params.toString()}`;
  };
  return {
    status: 200,
    body: {
      first_page_uri: pageUri(0),
      end: start + Math.max(slice.length - 1, 0),
      previous_page_uri: page > 0 ? pageUri(page - 1) : null,
      messages: slice.map(messageJson),
      uri: pageUri(page),
      page_size: pageSize,
      start,
      next_page_uri: start + pageSize < matching.length ? pageUri(page + 1) : null,
      page,
    },
  };
}

function messageJson(message: TwilioFakeMessage): Record<string, unknown> {
  const uri = `/2010-04-01/Accounts/${message.accountSid}/Messages/${message.sid}.json`;
  return {
    account_sid: message.accountSid,
    api_version: '2010-04-01',
    body: message.body,
    date_created: rfc2822(message.dateCreated),
    date_sent: message.dateSent ? rfc2822(message.dateSent) : null,
    date_updated: rfc2822(message.dateUpdated),
    direction: 'outbound-api',
    error_code: message.status === 'failed' || message.status === 'undelivered' ? 30003 : null,
    error_message: null,
    from: message.from,
    messaging_service_sid: null,
    num_media: '0',
    num_segments: String(Math.max(1, Math.ceil(message.body.length / 160))),
    price: null,
    price_unit: 'USD',
    sid: message.sid,
    status: message.status,
    subresource_uris: { media: `/2010-04-01/Accounts/${message.accountSid}/Messages/${message.sid}/Media.json` },
    to: message.to,
    uri,
  };
}

function twilioError(status: number, code: number, message: string): FakeResponse {
  return { status, body: { code, message, more_info: `https://www.twilio.com/docs/errors/${code}`, status } };
}

/** "Thu, 24 Aug 2023 05:01:45 +0000", the form of every date in Twilio's 2010 API. */
function rfc2822(date: Date): string {
  return date.toUTCString().replace('GMT', '+0000');
}

function wholeSecond(date: Date): Date {
  return new Date(Math.floor(date.getTime() / 1000) * 1000);
}

/** Unsent messages before sent ones; within each, the most recent first. */
function newestFirst(a: TwilioFakeMessage, b: TwilioFakeMessage): number {
  if ((a.dateSent === null) !== (b.dateSent === null)) return a.dateSent === null ? -1 : 1;
  return (b.dateSent ?? b.dateCreated).getTime() - (a.dateSent ?? a.dateCreated).getTime();
}

/** A DateSent value (`YYYY-MM-DD`, or a date-time as the SDK sends) as its GMT day number. */
function dayOf(value: string | null): number | undefined {
  if (value === null) return undefined;
  const at = /^\d{4}-\d{2}-\d{2}$/.test(value) ? Date.parse(`${value}T00:00:00Z`) : Date.parse(value);
  return Number.isNaN(at) ? undefined : utcDay(new Date(at));
}

function utcDay(date: Date): number {
  return Math.floor(date.getTime() / 86_400_000);
}

function clampInteger(value: string | null, fallback: number, min: number, max: number): number {
  const parsed = value === null ? Number.NaN : Number(value);
  return Number.isInteger(parsed) ? Math.min(Math.max(parsed, min), max) : fallback;
}
