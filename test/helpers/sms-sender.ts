import { TenantRepository } from '../../src/store/repositories/tenants.js';
import { DEFAULT_TWILIO_ACCOUNT, startTwilioFake, type TwilioFake } from '../fakes/twilio.js';
import type { Backend } from './database.js';
import { openIdentityHarness, type IdentityHarness } from './identity.js';
import { TENANT_FROM_NUMBER } from './relay.js';

/** The tenant whose Twilio account texts second-factor codes (CIPHERGATE_SMS_SENDER_TENANT). */
export const SMS_SENDER_TENANT = 'sms-sender';

/** An identity harness that can text codes, and the Twilio fake whose `messages` are every phone's inbox. */
export interface SmsHarness {
  harness: IdentityHarness;
  twilio: TwilioFake;
  /** Closes the harness, then the Twilio fake. */
  close(): Promise<void>;
}

/**
 * SMS codes go out through a tenant's Twilio account, as in production: the sender tenant is
 * stored (its auth token sealed) with the Twilio fake's account and the from-number
 * TENANT_FROM_NUMBER, and the harness is pointed at the fake.
 */
export async function openSmsHarness(backend: Backend): Promise<SmsHarness> {
  const twilio = await startTwilioFake();
  const harness = await openIdentityHarness(backend, { env: { CIPHERGATE_TWILIO_API_URL: twilio.url, CIPHERGATE_SMS_SENDER_TENANT: SMS_SENDER_TENANT } });
  await new TenantRepository(harness.db, harness.sealing.fields, harness.sealing.keyring).put(
    SMS_SENDER_TENANT,
    { name: 'The agency', twilio: { accountSid: DEFAULT_TWILIO_ACCOUNT.accountSid, authToken: DEFAULT_TWILIO_ACCOUNT.authToken, fromNumber: TENANT_FROM_NUMBER } },
    { type: 'system' },
  );
  return {
    harness,
    twilio,
    async close() {
      await harness.close();
      await twilio.close();
    },
  };
}
