import { createHmac, timingSafeEqual } from 'node:crypto';

export type PodiumVerification = { ok: true } | { ok: false; reason: 'missing-header' | 'bad-signature' | 'stale-timestamp' };

/**
 * Whether a webhook request really comes from Podium, and recently.
 *
 * Podium's rule (https://docs.podium.com/docs/verifying-webhook-signatures): take the
 * `podium-timestamp` header (milliseconds since the epoch, e.g. 1620771659663), join it to the raw
 * JSON body with a `.`, and HMAC-SHA256 that `signed_payload` with the webhook's secret as the
 * key; the result must equal the `podium-signature` header.
 *
 * What Podium leaves open, and how we close it:
 * - The digest's text encoding is not documented (the page links a web tool instead of showing a
 *   value). We accept lowercase or uppercase hex (64 characters) and base64 or base64url (43
 *   characters, optional `=`), decode either to the 32 digest bytes and compare bytes with
 *   timingSafeEqual; anything else is a bad signature.
 * - No replay window is documented. We refuse timestamps more than `toleranceMs` (default five
 *   minutes) away from our clock in either direction.
 *
 * Order: the MAC is checked first, then the window. The timestamp is inside the MAC, so a
 * forged request always reports `bad-signature` and `stale-timestamp` means a genuine delivery
 * that arrived too late or was replayed; the HMAC costs microseconds, so there is nothing to save
 * by looking at the clock first. Either way both are refused.
 */
export function verifyPodiumRequest(input: {
  secret: string;
  timestamp: string | undefined;
  signature: string | undefined;
  rawBody: Buffer;
  now?: number;
  toleranceMs?: number /* default 5 min */;
}): PodiumVerification {
  const { timestamp, signature } = input;
  if (!timestamp || !signature) return { ok: false, reason: 'missing-header' };
  // An empty secret would make anyone able to sign; a tenant without one cannot be verified.
  if (!input.secret) return { ok: false, reason: 'bad-signature' };

  const presented = decodeDigest(signature.trim());
  const expected = createHmac('sha256', input.secret).update(`${timestamp}.`).update(input.rawBody).digest();
  if (!presented || presented.length !== expected.length || !timingSafeEqual(presented, expected)) {
    return { ok: false, reason: 'bad-signature' };
  }

  if (!/^\d{1,16}$/.test(timestamp)) return { ok: false, reason: 'stale-timestamp' };
  const now = input.now ?? Date.now();
  if (Math.abs(now - Number(timestamp)) > (input.toleranceMs ?? DEFAULT_TOLERANCE_MS)) return { ok: false, reason: 'stale-timestamp' };
  return { ok: true };
}

const DEFAULT_TOLERANCE_MS = 5 * 60 * 1000;

/** The presented digest as bytes: hex when it is 64 hex characters, else base64 / base64url. */
function decodeDigest(text: string): Buffer | undefined {
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, 'hex');
  // Buffer.from(…, 'base64') skips characters it does not know; check the alphabet first so only
  // one spelling of the 32 bytes is accepted per alphabet.
  if (/^[A-Za-z0-9+/]{43}=?$/.test(text)) return Buffer.from(text, 'base64');
  if (/^[A-Za-z0-9_-]{43}=?$/.test(text)) return Buffer.from(text, 'base64url');
  return undefined;
}

/**
 * The `podium-signature` of a delivery as verifyPodiumRequest checks it (lowercase hex of the
 * HMAC over `timestamp.body`): the setup test signs its deliveries with it.
 */
export function signPodiumRequest(secret: string, timestampMs: number, rawBody: string): string {
  return createHmac('sha256', secret).update(`${timestampMs}.`).update(rawBody).digest('hex');
}
