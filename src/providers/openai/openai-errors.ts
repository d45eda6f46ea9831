import { APIConnectionError, APIConnectionTimeoutError, APIError } from 'openai';
import { ProviderError, isRetryableStatus, parseRetryAfter } from '../provider-error.js';

/**
 * Translates what the `openai` SDK throws into a ProviderError the job queue can act on.
 *
 * The message names only the status and OpenAI's error code, never OpenAI's own message: those
 * messages can quote parts of the request (a masked API key, an invalid parameter value), and
 * ProviderError messages end up in logs and job records.
 */
export function toOpenAiProviderError(error: unknown): ProviderError {
  if (error instanceof ProviderError) return error;
  // APIConnectionTimeoutError extends APIConnectionError: both mean no answer arrived, so a retry
  // can succeed. Checked before APIError because the SDK models them as status-less APIErrors.
  if (error instanceof APIConnectionError) {
    const timedOut = error instanceof APIConnectionTimeoutError;
    return new ProviderError({
      provider: 'openai',
      message: timedOut ? 'OpenAI did not answer before the timeout' : 'the connection to OpenAI failed',
      retryable: true,
      cause: error,
    });
  }
  if (error instanceof APIError && typeof error.status === 'number') {
    const status = error.status;
    const code = error.code ?? error.type ?? undefined;
    return new ProviderError({
      provider: 'openai',
      message: `OpenAI answered ${status}${code ? ` (${code})` : ''}`,
      status,
      code,
      // 409 is retried by the SDK itself (client.js shouldRetry: 408, 409, 429, >= 500); we keep
      // its judgement, only moving the retry into our queue.
      retryable: isRetryableStatus(status) || status === 409,
      retryAfterSeconds: status === 429 || status >= 500 ? retryAfterFrom(error.headers) : undefined,
    });
  }
  return new ProviderError({
    provider: 'openai',
    message: 'unexpected failure calling OpenAI',
    retryable: false,
    cause: error,
  });
}

/**
 * OpenAI sends both `retry-after-ms` (its own, finer) and the standard `retry-after`; the SDK
 * prefers the former (node_modules/openai/client.js, "retry-after-ms"), and so do we.
 */
function retryAfterFrom(headers: Headers | undefined): number | undefined {
  if (!headers) return undefined;
  const millis = Number(headers.get('retry-after-ms'));
  if (headers.get('retry-after-ms') !== null && Number.isFinite(millis) && millis >= 0) return Math.min(Math.ceil(millis / 1000), 3600);
  return parseRetryAfter(headers.get('retry-after'));
}
