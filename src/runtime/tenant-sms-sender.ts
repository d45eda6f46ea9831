import type { Config } from '../config/load.js';
import type { SmsCodeSender } from '../identity/factors/sms/sms-sender.js';
import type { Logger } from '../log/logger.js';
import { TwilioCodeSender } from '../providers/twilio/code-sender.js';
import type { TwilioSmsClient } from '../providers/twilio/sms-client.js';
import type { SealedFields } from '../seal/sealed-fields.js';
import type { Db } from '../store/connection.js';
import { findTwilioAccount } from '../store/repositories/tenants.js';

/**
 * Identity's SMS sender, wired from the store and the Twilio provider (identity builds no
 * provider client; it takes this as its `SmsCodeSender` port). Staff belong to no tenant, so one
 * tenant, named by CIPHERGATE_SMS_SENDER_TENANT, lends its Twilio account and `fromNumber` to
 * every user's codes, client users included: one number people learn to recognise, and one
 * account whose failure or compromise is the operator's to watch, not each client's.
 */
export interface TenantSmsSenderOptions {
  /** The sender tenant's slug; undefined turns SMS codes off. */
  slug: string | undefined;
  publicUrl: string;
  twilioApiUrl: string;
  timeoutMs?: number;
  client?: TwilioSmsClient;
}

export class TenantSmsSender implements SmsCodeSender {
  private readonly twilio: TwilioCodeSender;
  private warnedMisconfigured = false;

  constructor(db: Db, fields: SealedFields, logger: Logger, options: TenantSmsSenderOptions) {
    const slug = options.slug;
    this.twilio = new TwilioCodeSender({
      account: async () => {
        if (slug === undefined) return undefined;
        const account = await findTwilioAccount(db, fields, slug);
        if (!account && !this.warnedMisconfigured) {
          this.warnedMisconfigured = true;
          logger.warn({ tenant: slug }, 'CIPHERGATE_SMS_SENDER_TENANT names no tenant with Twilio settings; SMS codes are not offered');
        }
        return account;
      },
      apiUrl: options.twilioApiUrl,
      // The sender tenant's status webhook accepts it (signed with that tenant's token) and finds
      // no relay message with this sid, so it changes nothing; no identity code is tracked after it left.
      statusCallbackUrl: `${options.publicUrl}/webhooks/twilio/${slug}/status`,
      logger,
      ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
      ...(options.client ? { client: options.client } : {}),
    });
  }

  configured(): Promise<boolean> {
    return this.twilio.configured();
  }

  send(to: string, body: string) {
    return this.twilio.send(to, body);
  }
}

/** The SMS sender of this deployment's configuration (none without CIPHERGATE_SMS_SENDER_TENANT). */
export function identitySmsSender(config: Pick<Config, 'publicUrl' | 'providers' | 'smsSenderTenant'>, db: Db, fields: SealedFields, logger: Logger): SmsCodeSender {
  return new TenantSmsSender(db, fields, logger, {
    slug: config.smsSenderTenant,
    publicUrl: config.publicUrl.replace(/\/+$/, ''),
    twilioApiUrl: config.providers.twilioApiUrl,
  });
}
