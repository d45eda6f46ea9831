import Airtable from 'airtable';
import { ProviderError, isRetryableStatus, parseRetryAfter } from '../provider-error.js';

/**
 * Airtable failures as ProviderErrors. Two transports reach Airtable: the `airtable` SDK (which
 * rejects with its own AirtableError objects, not Error instances) and plain fetch for the
 * webhooks API; both end here.
 *
 * Messages carry the status and Airtable's error type only. Airtable's own messages can quote the
 * cell value it refused ("Cannot parse value … for field Phone"), and ProviderError messages
 * reach logs and job records, so they are never copied, and neither is the SDK error as `cause`.
 */

/**
 * Airtable documents no Retry-After; its rule is "wait 30 seconds before subsequent requests will
 * succeed" (https://airtable.com/developers/web/api/rate-limits).
 */
export const AIRTABLE_RATE_LIMIT_WAIT_SECONDS = 30;

/** An HTTP error answer (from either transport) as a ProviderError. */
export function airtableStatusError(status: number, type: string | undefined, retryAfterHeader?: string | null): ProviderError {
  const retryAfterSeconds = status === 429 ? (parseRetryAfter(retryAfterHeader) ?? AIRTABLE_RATE_LIMIT_WAIT_SECONDS) : status >= 500 ? parseRetryAfter(retryAfterHeader) : undefined;
  return new ProviderError({
    provider: 'airtable',
    message: `Airtable answered ${status}${type ? ` (${type})` : ''}`,
    status,
    code: type,
    // 409: Airtable's answer to conflicting concurrent writes on the same records; retrying later works.
    // 422 (INVALID_REQUEST, unknown field, too many records…) stays false: the same request fails again.
    retryable: isRetryableStatus(status) || status === 409,
    retryAfterSeconds,
  });
}

/** Whatever an Airtable call threw, as a ProviderError. */
export function toAirtableProviderError(error: unknown): ProviderError {
  if (error instanceof ProviderError) return error;
  if (isAirtableSdkError(error)) {
    // The SDK reports timeouts (its AbortController firing) and dropped connections as
    // CONNECTION_ERROR with no status (node_modules/airtable/lib/base.js, makeRequest).
    if (typeof error.statusCode !== 'number') return connectionError(error.error === 'CONNECTION_ERROR' ? undefined : error.error);
    return airtableStatusError(error.statusCode, error.error);
  }
  // fetch (undici): TypeError('fetch failed') for refused or dropped connections, a
  // DOMException named TimeoutError / AbortError when AbortSignal.timeout fires.
  if (error instanceof TypeError || (error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError'))) {
    return connectionError(undefined, error);
  }
  return new ProviderError({ provider: 'airtable', message: 'unexpected failure calling Airtable', retryable: false });
}

function connectionError(code: string | undefined, cause?: unknown): ProviderError {
  return new ProviderError({
    provider: 'airtable',
    message: 'no answer from Airtable (timeout or dropped connection)',
    code,
    retryable: true,
    cause,
  });
}

function isAirtableSdkError(error: unknown): error is Airtable.Error {
  return error instanceof Airtable.Error;
}
