import twilio from 'twilio';
import { ProviderError, isRetryableStatus, parseRetryAfter } from '../provider-error.js';

export interface TwilioCredentials {
  accountSid: string;
  authToken: string;
}

export interface SentSms {
  sid: string;
  status: string;
}

export interface TwilioSmsClient {
  send(credentials: TwilioCredentials, message: { from: string; to: string; body: string; statusCallback: string }): Promise<SentSms>;
  /**
   * For reconciling an uncertain send: a message we may have sent already, matched by from, to,
   * body and date sent >= sentAfter's date. `excluding` names sids already recorded for other
   * messages, so an earlier identical text ("Thanks!") is never taken for this one.
   */
  findSent(credentials: TwilioCredentials, message: { from: string; to: string; body: string; sentAfter: Date; excluding?: readonly string[] }): Promise<SentSms | undefined>;
}

/**
 * Outbound SMS through the official `twilio` SDK, pointed at CIPHERGATE_TWILIO_API_URL.
 *
 * How the base URL is overridden: every SDK client gets one shared `httpClient`, a subclass of the
 * SDK's own RequestClient (axios) that replaces the origin of each request URL with `apiUrl`,
 * keeping path and query. The alternative, assigning `client.api.baseUrl`, is weaker: the SDK's
 * `BaseTwilio.request` rewrites the hostname afterwards from TWILIO_EDGE / TWILIO_REGION
 * (`getHostname`, read from process.env when not given), which would turn `127.0.0.1` into
 * nonsense and `api.twilio.com` into `api.<edge>.<region>.twilio.com`; pagination URLs are also
 * built per domain. Rewriting at the last step catches every URL the SDK builds, so no request
 * can leave for the real Twilio when a test or an operator points the gateway elsewhere.
 *
 * The same RequestClient turns every HTTP error into a failure carrying the response headers
 * before the SDK builds its RestException, which keeps only status, code and message: that is
 * how Retry-After reaches the job queue. The SDK's own 429 auto-retry stays off so the queue, not
 * the SDK, decides when to try again.
 */
export function createTwilioSmsClient(options: { apiUrl: string; timeoutMs?: number; maxCachedClients?: number }): TwilioSmsClient {
  const httpClient = new RebasingRequestClient(new URL(options.apiUrl), options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  const clients = new BoundedClientCache(options.maxCachedClients ?? DEFAULT_MAX_CACHED_CLIENTS, httpClient);

  return {
    async send(credentials, message) {
      try {
        const created = await clients.get(credentials).messages.create({
          from: message.from,
          to: message.to,
          body: message.body,
          statusCallback: message.statusCallback,
        });
        return { sid: created.sid, status: created.status };
      } catch (error) {
        throw toProviderError(error, 'send');
      }
    },

    async findSent(credentials, message) {
      try {
        const client = clients.get(credentials);
        // Twilio's resource carries seconds only (RFC 2822 dates).
        const notBefore = Math.floor(message.sentAfter.getTime() / 1000) * 1000;
        const excluded = new Set(message.excluding ?? []);
        const isOurs = (candidate: ListedMessage) =>
          candidate.body === message.body && candidate.direction.startsWith('outbound') && candidate.dateCreated.getTime() >= notBefore && !excluded.has(candidate.sid);

        // DateSent filters by day in GMT ("DateSent>=YYYY-MM-DD", on and after midnight:
        // https://www.twilio.com/docs/messaging/api/message-resource#read-multiple-message-resources).
        // A Date at UTC midnight serialises to a date-time the spec accepts and means the same day.
        const sentSinceThatDay = await client.messages.list({
          from: message.from,
          to: message.to,
          dateSentAfter: utcMidnight(message.sentAfter),
          pageSize: LOOKUP_PAGE_SIZE,
          limit: LOOKUP_LIMIT,
        });
        const sent = oldest(sentSinceThatDay.filter(isOurs));
        if (sent) return { sid: sent.sid, status: sent.status };

        // A message still queued (or failed before leaving) has date_sent null, so the DateSent
        // filter cannot see it, and a dropped answer to our create is exactly that case. Look at
        // the newest messages between the two numbers without a date filter as well.
        const recent = await client.messages.list({ from: message.from, to: message.to, pageSize: LOOKUP_PAGE_SIZE, limit: LOOKUP_LIMIT });
        const pending = oldest(recent.filter(isOurs));
        return pending ? { sid: pending.sid, status: pending.status } : undefined;
      } catch (error) {
        throw toProviderError(error, 'lookup');
      }
    },
  };
}

const DEFAULT_TIMEOUT_MS = 15_000;
/** One SDK client per tenant account is plenty; the bound only stops a leak when tokens rotate. */
const DEFAULT_MAX_CACHED_CLIENTS = 256;
const LOOKUP_PAGE_SIZE = 100;
/** Reconciliation looks at most this many messages per query between one pair of numbers. */
const LOOKUP_LIMIT = 200;

type TwilioClient = ReturnType<typeof twilio>;
type ListedMessage = Awaited<ReturnType<TwilioClient['messages']['list']>>[number];
type RequestOptions = Parameters<InstanceType<typeof twilio.RequestClient>['request']>[0];
type RequestResult = Awaited<ReturnType<InstanceType<typeof twilio.RequestClient>['request']>>;

/** An HTTP answer of 400 or more, with what the SDK's RestException would drop. */
class TwilioHttpFailure extends Error {
  override readonly name = 'TwilioHttpFailure';
  constructor(
    readonly status: number,
    readonly twilioCode: number | undefined,
    readonly retryAfter: string | undefined,
  ) {
    super(`Twilio answered HTTP ${status}`);
  }
}

class RebasingRequestClient extends twilio.RequestClient {
  private readonly apiBase: string;

  constructor(apiUrl: URL, timeoutMs: number) {
    // `timeout` is the axios request timeout and the agent's socket timeout.
    super({ timeout: timeoutMs, autoRetry: false });
    this.apiBase = apiUrl.origin + apiUrl.pathname.replace(/\/+$/, '');
  }

  override async request<TData>(opts: RequestOptions & { data?: TData }): Promise<RequestResult & { body: TData }> {
    const sdkUrl = new URL(opts.uri);
    let response: RequestResult & { body: TData };
    try {
      // logLevel is dropped: with TWILIO_LOG_LEVEL=debug in the environment the SDK would print
      // each request's query (To, From) to stdout.
      response = await super.request<TData>({ ...opts, logLevel: undefined, uri: this.apiBase + sdkUrl.pathname + sdkUrl.search });
    } finally {
      // The SDK keeps the last request (form body: phone numbers, message text) and answer on
      // this shared object until the next call; plaintext must not outlive the job.
      this.lastRequest = undefined;
      this.lastResponse = undefined;
    }
    if (response.statusCode >= 400) {
      throw new TwilioHttpFailure(response.statusCode, twilioErrorCode(response.body), headerValue(response.headers, 'retry-after'));
    }
    return response;
  }
}

/** A small LRU of SDK clients keyed by account and token, so each send does not rebuild one. */
class BoundedClientCache {
  private readonly entries = new Map<string, TwilioClient>();

  constructor(
    private readonly capacity: number,
    private readonly httpClient: RebasingRequestClient,
  ) {}

  get(credentials: TwilioCredentials): TwilioClient {
    const key = `${credentials.accountSid}\n${credentials.authToken}`;
    const cached = this.entries.get(key);
    if (cached) {
      this.entries.delete(key);
      this.entries.set(key, cached);
      return cached;
    }
    const client = twilio(credentials.accountSid, credentials.authToken, { httpClient: this.httpClient, autoRetry: false });
    this.entries.set(key, client);
    if (this.entries.size > this.capacity) {
      const eldest = this.entries.keys().next().value;
      if (eldest !== undefined) this.entries.delete(eldest);
    }
    return client;
  }
}

/**
 * The queue's view of a failure. Messages never include Twilio's own text (it can quote the phone
 * number) and no cause is attached: the SDK's axios errors carry the request config, which holds
 * the Basic credentials and the form body.
 */
function toProviderError(error: unknown, action: 'send' | 'lookup'): ProviderError {
  if (error instanceof ProviderError) return error;
  if (error instanceof TwilioHttpFailure) {
    return new ProviderError({
      provider: 'twilio',
      message: `Twilio ${action} failed: HTTP ${error.status}${error.twilioCode === undefined ? '' : ` (error ${error.twilioCode})`}`,
      status: error.status,
      code: error.twilioCode,
      retryable: isRetryableStatus(error.status),
      retryAfterSeconds: parseRetryAfter(error.retryAfter),
    });
  }
  if (isTransportError(error)) {
    // Timeouts, resets, refused connections: nothing or an unknown outcome; the queue retries
    // (a retried send first reconciles with findSent).
    return new ProviderError({ provider: 'twilio', message: `Twilio ${action} failed: ${error.code ?? 'network error'}`, code: error.code, retryable: true });
  }
  if (isRestException(error)) {
    return new ProviderError({
      provider: 'twilio',
      message: `Twilio ${action} failed: HTTP ${error.status}`,
      status: error.status,
      code: error.code,
      retryable: isRetryableStatus(error.status),
    });
  }
  // The SDK refusing our input (an accountSid not starting with AC, a missing parameter): a bug
  // or bad tenant configuration that no retry fixes.
  const reason = error instanceof Error ? error.message : String(error);
  return new ProviderError({ provider: 'twilio', message: `Twilio ${action} failed before any request: ${reason}`, retryable: false });
}

function isTransportError(error: unknown): error is { code?: string } {
  return typeof error === 'object' && error !== null && (error as { isAxiosError?: unknown }).isAxiosError === true;
}

function isRestException(error: unknown): error is { status: number; code?: number } {
  return error instanceof twilio.RestException && typeof (error as { status?: unknown }).status === 'number';
}

/** Twilio's error body is `{code, message, more_info, status}`; the body may still be a string. */
function twilioErrorCode(body: unknown): number | undefined {
  let parsed = body;
  if (typeof body === 'string') {
    try {
      parsed = JSON.parse(body);
    } catch {
      return undefined;
    }
  }
  const code = (parsed as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

function headerValue(headers: unknown, name: string): string | undefined {
  if (typeof headers !== 'object' || headers === null) return undefined;
  const value = (headers as Record<string, unknown>)[name];
  if (typeof value === 'string') return value;
  if (Array.isArray(value) && typeof value[0] === 'string') return value[0];
  return undefined;
}

function utcMidnight(at: Date): Date {
  return new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth(), at.getUTCDate()));
}

function oldest(messages: ListedMessage[]): ListedMessage | undefined {
  return messages.reduce<ListedMessage | undefined>((found, candidate) => (!found || candidate.dateCreated < found.dateCreated ? candidate : found), undefined);
}
