import { isUtf8 } from 'node:buffer';
import twilio from 'twilio';

/**
 * Whether a webhook request really comes from Twilio: X-Twilio-Signature is an HMAC-SHA1, keyed
 * by the account's auth token, over the exact URL Twilio called followed by the sorted POST
 * parameters (https://www.twilio.com/docs/usage/webhooks/webhooks-security). The check itself is
 * the official SDK's (`twilio.validateRequest`, `twilio.validateRequestWithBody`); this module
 * only decides which of the two applies and feeds it the right inputs.
 *
 * `url` must be the public URL Twilio was configured with: CIPHERGATE_PUBLIC_URL + path + query,
 * never one rebuilt from the Host header, which the caller controls.
 *
 * Quirks of twilio-node 6.x (lib/webhooks/webhooks.js) that decide what passes:
 * - Port variants: the signature is tried against the URL without its port and with the scheme's
 *   default port added (:443 / :80), because Twilio signs whichever form the webhook was
 *   configured with. `removePort` strips any port, so a URL on a non-default port also matches a
 *   signature made for the same URL without a port. Harmless for us because `url` never comes
 *   from the request.
 * - Only when those fail, the URL as normalised by `new URL()` (percent-encoding `'` and the like)
 *   is tried, with and without Node's legacy querystring re-encoding
 *   (https://github.com/twilio/twilio-node/issues/1183).
 * - Repeated form keys (`MediaUrl0=a&MediaUrl0=b`, Conversations' `MessagingBinding.Address`)
 *   are signed as `key+value` once per value, values sorted
 *   (https://github.com/twilio/twilio-node/pull/723); twilio-node also drops duplicate identical
 *   values (`new Set`), so `a=1&a=1` is checked as if it were `a=1`.
 * - Only the default scheme is supported: HMAC-SHA1 with the auth token. Newer twilio-node
 *   releases also verify "Webhook Rules" signatures (HMAC-SHA256 with a shared key, announced by an
 *   X-Twilio-Webhooks-Signature-Settings header); 6.x does not, so such requests fail here.
 * - JSON bodies are not covered by the parameters: Twilio adds `bodySHA256=<hex sha256 of the
 *   body>` to the query and signs the URL alone; `validateRequestWithBody` checks both.
 */
export function verifyTwilioRequest(input: {
  authToken: string;
  url: string;
  signature: string | undefined;
  contentType: string | undefined;
  rawBody: Buffer;
  /** The flat parse of `rawBody` (repeated keys as arrays); parsed here from `rawBody` when absent. */
  formParams?: Record<string, string | string[]>;
}): boolean {
  const { authToken, signature } = input;
  if (!signature || !authToken) return false;
  let parsedUrl: URL;
  try {
    parsedUrl = new URL(input.url);
  } catch {
    return false;
  }

  if (parsedUrl.searchParams.has('bodySHA256')) {
    // The hash binds the raw body whatever Content-Type claims. The SDK hashes a string
    // (Buffer.from(body, 'utf-8')), so bytes that are not UTF-8 could decode to the same string
    // as other bytes; refuse them rather than hash a lossy decoding. Twilio sends UTF-8 JSON.
    if (!isUtf8(input.rawBody)) return false;
    return safely(() => twilio.validateRequestWithBody(authToken, signature, input.url, input.rawBody.toString('utf8')));
  }

  if (mediaType(input.contentType) === 'application/x-www-form-urlencoded') {
    const params = input.formParams ?? parseFormBody(input.rawBody);
    return safely(() => twilio.validateRequest(authToken, signature, input.url, params));
  }

  // A body that is neither form parameters nor bound by bodySHA256 is not covered by the
  // signature at all: accepting it would let anyone replace the body of a signed request.
  return false;
}

/**
 * X-Twilio-Signature for form parameters posted to `url`, as Twilio computes it (the official
 * SDK's `getExpectedTwilioSignature`): the setup test signs its deliveries with it.
 */
export function signTwilioRequest(authToken: string, url: string, params: Record<string, string>): string {
  return twilio.getExpectedTwilioSignature(authToken, url, params);
}

/** `application/x-www-form-urlencoded` as Twilio sends it: `+` is a space, repeated keys become arrays. */
export function parseFormBody(rawBody: Buffer): Record<string, string | string[]> {
  // No prototype: a parameter named `__proto__` or `constructor` is just a parameter.
  const params = Object.create(null) as Record<string, string | string[]>;
  for (const [key, value] of new URLSearchParams(rawBody.toString('utf8'))) {
    const existing = params[key];
    if (existing === undefined) params[key] = value;
    else if (Array.isArray(existing)) existing.push(value);
    else params[key] = [existing, value];
  }
  return params;
}

function mediaType(contentType: string | undefined): string {
  return (contentType ?? '').split(';', 1)[0]!.trim().toLowerCase();
}

/** The SDK throws on some malformed input (e.g. a URL `new URL()` rejects); that is a failed check. */
function safely(check: () => boolean): boolean {
  try {
    return check();
  } catch {
    return false;
  }
}
