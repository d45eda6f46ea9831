import { randomBytes } from 'node:crypto';
import { signTwilioRequest } from '../fakes/twilio.js';
import { PUBLIC_URL, TENANT_FROM_NUMBER } from './relay.js';

/**
 * One inbound SMS as Twilio delivers it to a running server at `baseUrl`: form-encoded, signed
 * over PUBLIC_URL (the server's configured public URL) with the tenant's auth token.
 */
export async function deliverTwilioSms(
  baseUrl: string,
  tenant: { slug: string; accountSid: string; authToken: string },
  from: string,
  body: string,
): Promise<{ status: number; text: string }> {
  const sid = `SM${randomBytes(16).toString('hex')}`;
  const params = { MessageSid: sid, SmsSid: sid, AccountSid: tenant.accountSid, From: from, To: TENANT_FROM_NUMBER, Body: body, NumMedia: '0' };
  const path = `/webhooks/twilio/${tenant.slug}/sms`;
  const response = await fetch(`${baseUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': signTwilioRequest(tenant.authToken, `${PUBLIC_URL}${path}`, params) },
    body: new URLSearchParams(params).toString(),
  });
  return { status: response.status, text: await response.text() };
}
