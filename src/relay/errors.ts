import { isDatabaseUnavailable } from '../store/connection-errors.js';

/**
 * Relay errors as data: a use case throws a RelayError carrying one of these codes, and the
 * HTTP error table (src/http/error-handler.ts) maps the code to a status and problem type.
 * Nothing reads the message. `detail` is written for the caller and never holds a phone number,
 * a body or a secret.
 */
export const RELAY_ERROR_CODES = [
  /** No tenant by that slug, or one the caller may not act on: the two read the same. */
  'tenant-not-found',
  /** No conversation by that id, or one of a tenant the caller may not act on. */
  'conversation-not-found',
  /** The tenant has no settings for the provider the request needs. */
  'provider-not-configured',
  /** An input (`field`) that is no phone number. */
  'invalid-phone',
  /** A paging cursor (`field`) this API never gave out, or gave out for another tenant or other filters. */
  'invalid-cursor',
  /** A range whose start (`field`) is not before its end. */
  'invalid-range',
  /** An idempotency key already used for a different message. */
  'idempotency-key-reused',
] as const;

export type RelayErrorCode = (typeof RELAY_ERROR_CODES)[number];

export class RelayError extends Error {
  override readonly name = 'RelayError';
  constructor(
    readonly code: RelayErrorCode,
    readonly detail: string,
    /** The input member the error is about, as the use case's request names it. */
    readonly field?: string,
  ) {
    super(field === undefined ? detail : `${field}: ${detail}`);
  }
}

/**
 * The service a use case needs (the database) cannot be reached: not the caller's fault and not a
 * bug, so the answer is "retry later" (503) and the outage is logged once, by the connection.
 */
export function isServiceUnavailable(error: unknown): boolean {
  return isDatabaseUnavailable(error);
}
