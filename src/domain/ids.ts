/**
 * The shapes of the identifiers that cross our boundaries: row ids (UUIDs, which we always mint
 * with `randomUUID`) and tenant slugs (the operator's names, in URLs and webhook paths).
 * Checked before any lookup, so a malformed id is "not found" without a query.
 */

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(value: unknown): value is string {
  return typeof value === 'string' && UUID_PATTERN.test(value);
}

/** Lower-case letters, digits and dashes, 1–63 characters, not starting with a dash: a DNS label, so it fits any URL. */
export const TENANT_SLUG_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;

export function isTenantSlug(value: unknown): value is string {
  return typeof value === 'string' && TENANT_SLUG_PATTERN.test(value);
}
