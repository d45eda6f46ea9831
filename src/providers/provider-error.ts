/**
 * What went wrong when calling a provider, as data the job queue can act on: whether trying
 * again can help, and how long the provider asked us to wait. Adapters translate their SDK's
 * errors into this one type, so the queue never parses provider messages.
 */
export class ProviderError extends Error {
  override readonly name = 'ProviderError';
  readonly provider: 'twilio' | 'openai' | 'airtable' | 'podium';
  /** HTTP status when the provider answered; undefined for timeouts and dropped connections. */
  readonly status: number | undefined;
  /** The provider's own error code (Twilio 21211, OpenAI `rate_limit_exceeded`, …) when given. */
  readonly code: string | undefined;
  /** Timeouts, dropped connections, 408, 409 (Airtable), 429 and 5xx are retryable; other 4xx are not. */
  readonly retryable: boolean;
  /** From Retry-After (seconds or HTTP date), when the provider sent one. */
  readonly retryAfterSeconds: number | undefined;

  constructor(init: {
    provider: ProviderError['provider'];
    message: string;
    status?: number | undefined;
    code?: string | number | undefined;
    retryable: boolean;
    retryAfterSeconds?: number | undefined;
    cause?: unknown;
  }) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.provider = init.provider;
    this.status = init.status;
    this.code = init.code === undefined ? undefined : String(init.code);
    this.retryable = init.retryable;
    this.retryAfterSeconds = init.retryAfterSeconds;
  }
}

/** Whether an HTTP status is worth retrying: the provider was busy or broken, not our request. */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

/** Retry-After as seconds: either delta-seconds or an HTTP date (RFC 9110 §10.2.3). Capped at one hour. */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const trimmed = value.trim();
  let seconds: number;
  if (/^\d+$/.test(trimmed)) seconds = Number(trimmed);
  else {
    const at = Date.parse(trimmed);
    if (Number.isNaN(at)) return undefined;
    seconds = Math.max(0, Math.ceil((at - now) / 1000));
  }
  return Math.min(seconds, 3600);
}
