/**
 * A setup test delivery (`ciphergate tenants test`): a correctly signed message that travels the
 * operator's real path (public URL, proxy, TLS, signature check, store) but never reaches OpenAI,
 * Twilio, Podium or Airtable for real. It is recognised by BOTH a fixed body marker AND a
 * provider message id of the test shape, and only after its signature was verified (the relay
 * asks only then), so nobody without the tenant's webhook secret can mark a message as a test,
 * and a customer who writes the marker text still gets an answer.
 */

/** The body of every setup test message; a nonce follows it. */
export const SETUP_TEST_BODY_MARKER = 'Ciphergate setup test';

/**
 * The test shape of each provider's message id. Twilio's is a valid Message SID (the inbound
 * check requires one) that starts with the hex digits `7e57` ("test") after `SM`; Podium's is a
 * uid starting with `test-`.
 */
const SETUP_TEST_MESSAGE_ID = /^(SM7e57[0-9a-f]{28}|test-[0-9a-f-]{36})$/;

/** Whether a verified inbound message is a setup test. */
export function isSetupTestMessage(providerMessageId: string | undefined, body: string): boolean {
  return providerMessageId !== undefined && SETUP_TEST_MESSAGE_ID.test(providerMessageId) && body.startsWith(`${SETUP_TEST_BODY_MARKER} `);
}
