import { ProviderError, isRetryableStatus, parseRetryAfter } from '../provider-error.js';

export interface PodiumSendRequest {
  locationUid: string;
  /** The customer's phone number, E.164. */
  to: string;
  body: string;
  contactName?: string;
}

export interface PodiumClient {
  send(apiKey: string, message: PodiumSendRequest): Promise<{ uid: string }>;
  /**
   * For reconciling an uncertain send: a message in the location's conversation with `to` whose
   * body is `body`, created at or after `sentAfter` (to the second). Undefined when the whole
   * conversation was read and holds none; a ProviderError (`lookup-inconclusive`, not retryable)
   * when the page bound was reached first, so the caller never sends twice on a guess.
   */
  findSent(apiKey: string, message: { locationUid: string; to: string; body: string; sentAfter: Date; excluding?: readonly string[] }): Promise<{ uid: string } | undefined>;
}

/**
 * Podium's REST API v4 over fetch. Podium has no official Node SDK.
 *
 * - Auth: `Authorization: Bearer <access token>` (Podium API reference, "Authentication": OAuth 2
 *   access tokens); the tenant's `podium.apiKey` is used as that token.
 * - Send: `POST /v4/messages` with `{ body, channel: { type: 'phone', identifier }, locationUid,
 *   contactName? }`, answered `{ data: <message object>, metadata }`
 *   (https://docs.podium.com/reference/messagesend-1). Podium takes no idempotency key.
 * - Lists answer `{ data: [...], metadata: { nextCursor } }` and take `limit` (1–100) and `cursor`;
 *   with `cursor`, other parameters are ignored (Podium API reference, "Pagination", and the
 *   list-conversations operation's notes).
 * - Reconciliation: Podium documents no search of messages by recipient. We list the location's
 *   conversations (`GET /v4/conversations?locationUid=`), pick the one whose channel identifier is
 *   the phone number, and read its messages (`GET /v4/conversations/{uid}/messages`). That last
 *   endpoint is not in the parts of Podium's reference we could read; it is what integrations use
 *   and what the fake implements. Verify it against a real account before relying on it.
 * - Errors: 401, 403, 404, 400 are final; 429 (300 requests per minute on most endpoints) and 5xx
 *   are retried, honouring Retry-After.
 */
export function createPodiumClient(options: { apiUrl: string; timeoutMs?: number; maxLookupPages?: number }): PodiumClient {
  const apiBase = options.apiUrl.replace(/\/+$/, '');
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const maxLookupPages = options.maxLookupPages ?? DEFAULT_MAX_LOOKUP_PAGES;

  async function call(apiKey: string, action: string, method: 'GET' | 'POST', path: string, body?: unknown): Promise<unknown> {
    if (!apiKey) throw new ProviderError({ provider: 'podium', message: `Podium ${action} failed: no API token configured`, retryable: false });
    let response: Response;
    let text: string;
    try {
      response = await fetch(`${apiBase}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${apiKey}`,
          accept: 'application/json',
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        // Covers connecting, the headers and the body alike.
        signal: AbortSignal.timeout(timeoutMs),
      });
      text = await response.text();
    } catch (error) {
      // A timeout (TimeoutError) or a dropped or refused connection (TypeError: fetch failed):
      // the outcome is unknown, the queue retries and a retried send reconciles first. The cause
      // is not attached: it can hold the request.
      const reason = error instanceof Error && error.name === 'TimeoutError' ? 'timeout' : transportCode(error);
      throw new ProviderError({ provider: 'podium', message: `Podium ${action} failed: ${reason}`, code: reason, retryable: true });
    }
    if (!response.ok) {
      throw new ProviderError({
        provider: 'podium',
        // Podium's own message is left out: it can quote the request.
        message: `Podium ${action} failed: HTTP ${response.status}`,
        status: response.status,
        code: podiumErrorCode(text),
        retryable: isRetryableStatus(response.status),
        retryAfterSeconds: parseRetryAfter(response.headers.get('retry-after')),
      });
    }
    try {
      return JSON.parse(text) as unknown;
    } catch {
      throw new ProviderError({ provider: 'podium', message: `Podium ${action} failed: the answer is not JSON`, status: response.status, retryable: true });
    }
  }

  /** Every item of a cursor-paginated list, page by page, until `found` says stop or pages run out. */
  async function scan<T>(apiKey: string, action: string, firstPath: string, found: (item: Record<string, unknown>) => T | undefined): Promise<{ result: T | undefined; exhausted: boolean }> {
    let path = firstPath;
    for (let page = 0; page < maxLookupPages; page += 1) {
      const answer = objectOf(await call(apiKey, action, 'GET', path));
      const items = Array.isArray(answer?.['data']) ? answer['data'] : [];
      for (const item of items) {
        const object = objectOf(item);
        const result = object ? found(object) : undefined;
        if (result !== undefined) return { result, exhausted: false };
      }
      const nextCursor = objectOf(answer?.['metadata'])?.['nextCursor'];
      if (typeof nextCursor !== 'string' || nextCursor === '') return { result: undefined, exhausted: true };
      // With a cursor Podium ignores every other parameter; the cursor carries them.
      path = `${firstPath.split('?')[0]}?${new URLSearchParams({ cursor: nextCursor }).toString()}`;
    }
    return { result: undefined, exhausted: false };
  }

  return {
    async send(apiKey, message) {
      const request: Record<string, unknown> = {
        body: message.body,
        channel: { type: 'phone', identifier: message.to },
        locationUid: message.locationUid,
      };
      if (message.contactName) request['contactName'] = message.contactName;
      const answer = objectOf(await call(apiKey, 'send', 'POST', '/v4/messages', request));
      const uid = objectOf(answer?.['data'])?.['uid'];
      if (typeof uid !== 'string' || uid === '') {
        // Podium accepted something; without its uid we cannot track it. Not retried blindly.
        throw new ProviderError({ provider: 'podium', message: 'Podium send answered without a message uid', retryable: false, code: 'no-message-uid' });
      }
      return { uid };
    },

    async findSent(apiKey, message) {
      const notBefore = Math.floor(message.sentAfter.getTime() / 1000) * 1000;
      // Uids already recorded for other messages: an earlier identical text is not this one.
      const excluded = new Set(message.excluding ?? []);
      const conversations = await scan(
        apiKey,
        'lookup',
        `/v4/conversations?${new URLSearchParams({ locationUid: message.locationUid, limit: String(PAGE_LIMIT) }).toString()}`,
        (conversation) => {
          const channel = objectOf(conversation['channel']);
          const identifier = channel?.['identifier'];
          const uid = conversation['uid'];
          return typeof uid === 'string' && typeof identifier === 'string' && samePhoneNumber(identifier, message.to) ? uid : undefined;
        },
      );
      if (conversations.result === undefined) {
        if (conversations.exhausted) return undefined;
        throw inconclusive();
      }
      const messages = await scan(
        apiKey,
        'lookup',
        `/v4/conversations/${encodeURIComponent(conversations.result)}/messages?${new URLSearchParams({ limit: String(PAGE_LIMIT) }).toString()}`,
        (candidate) => {
          const uid = candidate['uid'];
          const createdAt = typeof candidate['createdAt'] === 'string' ? Date.parse(candidate['createdAt']) : Number.NaN;
          return typeof uid === 'string' && candidate['body'] === message.body && createdAt >= notBefore && !excluded.has(uid) ? uid : undefined;
        },
      );
      if (messages.result !== undefined) return { uid: messages.result };
      if (messages.exhausted) return undefined;
      throw inconclusive();
    },
  };
}

const DEFAULT_TIMEOUT_MS = 15_000;
/** Podium's largest page. */
const PAGE_LIMIT = 100;
/** How many pages of conversations, then of messages, reconciliation reads before giving up. */
const DEFAULT_MAX_LOOKUP_PAGES = 20;

function inconclusive(): ProviderError {
  return new ProviderError({
    provider: 'podium',
    message: 'Podium lookup was inconclusive: the page bound was reached before the message or the end of the list',
    code: 'lookup-inconclusive',
    retryable: false,
  });
}

/**
 * Podium stores US numbers with or without +1 ("Non-US/Canada numbers must include the country
 * code": https://docs.podium.com/reference/the-conversation-object), so compare digits, allowing a
 * missing leading 1.
 */
function samePhoneNumber(podiumIdentifier: string, e164: string): boolean {
  const a = podiumIdentifier.replace(/\D/g, '');
  const b = e164.replace(/\D/g, '');
  if (a === '' || b === '') return false;
  return a === b || (a.length === 10 && b === `1${a}`) || (b.length === 10 && a === `1${b}`);
}

/** Podium's error body is not documented in detail; a top-level or nested `code` is kept when present. */
function podiumErrorCode(text: string): string | undefined {
  try {
    const parsed = objectOf(JSON.parse(text));
    const code = parsed?.['code'] ?? objectOf(parsed?.['error'])?.['code'];
    return typeof code === 'string' || typeof code === 'number' ? String(code) : undefined;
  } catch {
    return undefined;
  }
}

function transportCode(error: unknown): string {
  const cause = error instanceof Error ? (error.cause as { code?: unknown } | undefined) : undefined;
  return typeof cause?.code === 'string' ? cause.code : 'network error';
}

function objectOf(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}
