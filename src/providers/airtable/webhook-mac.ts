import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Checks the `X-Airtable-Content-MAC` header of an Airtable webhook notification.
 *
 * Airtable's rule (https://airtable.com/developers/web/api/webhooks-overview, "Webhook
 * notification delivery"): the header is `hmac-sha256=` followed by the lowercase hex HMAC-SHA256
 * of the exact request body, keyed by the webhook's MAC secret. The quirk that trips people up:
 * the key is the base64-DECODED `macSecretBase64` returned when the webhook was created, not the
 * base64 text itself (the text as key gives a valid-looking but never-matching MAC).
 *
 * Fails closed: a missing header, another scheme, a malformed digest or an empty secret is `false`.
 */
export function verifyAirtableMac(input: { macSecretBase64: string; header: string | undefined; rawBody: Buffer }): boolean {
  if (typeof input.header !== 'string') return false;
  const match = MAC_HEADER.exec(input.header.trim());
  if (!match?.[1]) return false;
  const secret = Buffer.from(input.macSecretBase64, 'base64');
  if (secret.length === 0) return false;
  const expected = createHmac('sha256', secret).update(input.rawBody).digest();
  const given = Buffer.from(match[1], 'hex');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** Exactly 32 bytes of hex after the scheme; case-insensitive hex so an uppercase digest still verifies. */
const MAC_HEADER = /^hmac-sha256=([0-9a-fA-F]{64})$/;
