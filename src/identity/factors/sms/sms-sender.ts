import { eq } from 'drizzle-orm';
import type { Logger } from '../../../log/logger.js';
import { ProviderError } from '../../../providers/provider-error.js';
import { createTwilioSmsClient, type TwilioSmsClient } from '../../../providers/twilio/sms-client.js';
import { sqlNameOf, type SealedFields } from '../../../seal/sealed-fields.js';
import type { Db } from '../../../store/connection.js';
import { tenantsSealed } from '../../../store/sealed-tables.js';
import { tenants } from '../../../store/schema.js';

/**
 * Where identity SMS codes leave from. Staff belong to no tenant, so one tenant, named by
 * CIPHERGATE_SMS_SENDER_TENANT, lends its Twilio account and `fromNumber` to every user's
 * codes, client users included: one number people learn to recognise, and one account whose
 * failure or compromise is the operator's to watch, not each client's.
 */
export interface IdentitySmsSender {
  /** A sender tenant is named and has Twilio settings; without one, SMS is not offered. */
  configured(): Promise<boolean>;
  /** Sends one text now. Never logs `to` or `body`. */
  send(to: string, body: string): Promise<SmsSendResult>;
}

export type SmsSendResult =
  | { sent: true }
  /**
   * Twilio refused this number with HTTP 400 (e.g. 21211 invalid To,
   * https://www.twilio.com/docs/api/errors/21211; 21614 not a mobile number,
   * https://www.twilio.com/docs/api/errors/21614): retrying will not help.
   */
  | { sent: false; reason: 'rejected' }
  /** Twilio did not answer, failed, or refused our credentials: nothing the user can fix. */
  | { sent: false; reason: 'unavailable' }
  | { sent: false; reason: 'not-configured' };

export interface TenantSmsSenderOptions {
  /** The sender tenant's slug; undefined turns SMS codes off. */
  slug: string | undefined;
  publicUrl: string;
  twilioApiUrl: string;
  /**
   * A login code is useless once the login gave up, so sends are bounded well below the
   * relay's 15 s: the user sees `sms-unavailable` and can use another method.
   */
  timeoutMs?: number;
  client?: TwilioSmsClient;
}

const DEFAULT_TIMEOUT_MS = 10_000;

export class TenantSmsSender implements IdentitySmsSender {
  private client: TwilioSmsClient | undefined;
  private warnedMisconfigured = false;

  constructor(
    private readonly db: Db,
    private readonly fields: SealedFields,
    private readonly logger: Logger,
    private readonly options: TenantSmsSenderOptions,
  ) {
    this.client = options.client;
  }

  async configured(): Promise<boolean> {
    return (await this.account()) !== undefined;
  }

  async send(to: string, body: string): Promise<SmsSendResult> {
    const account = await this.account();
    if (!account) return { sent: false, reason: 'not-configured' };
    const authToken = await this.fields.openFresh(
      { scope: account.id, table: tenantsSealed.name, column: sqlNameOf(tenantsSealed, 'twilioAuthToken'), rowId: account.id },
      account.sealedAuthToken,
    );
    try {
      // Made on first use: most processes (CLI commands, deployments without SMS) never text.
      this.client ??= createTwilioSmsClient({ apiUrl: this.options.twilioApiUrl, timeoutMs: this.options.timeoutMs ?? DEFAULT_TIMEOUT_MS });
      await this.client.send(
        { accountSid: account.accountSid, authToken },
        {
          from: account.fromNumber,
          to,
          body,
          // The client always asks for a status callback. The sender tenant's status webhook
          // accepts it (signed with that tenant's token) and finds no relay message with this
          // sid, so it changes nothing; no identity code is tracked after it left.
          statusCallback: `${this.options.publicUrl}/webhooks/twilio/${this.options.slug}/status`,
        },
      );
      return { sent: true };
    } catch (error) {
      if (!(error instanceof ProviderError)) throw error;
      // ProviderError messages never quote Twilio's text (which can name the number).
      this.logger.warn({ provider: error.provider, status: error.status, code: error.code, retryable: error.retryable }, 'identity SMS code not sent');
      return { sent: false, reason: error.status === 400 ? 'rejected' : 'unavailable' };
    }
  }

  /** The sender tenant's Twilio account, read per use: identity texts are few, and a `tenants put` applies at once. */
  private async account(): Promise<{ id: string; accountSid: string; fromNumber: string; sealedAuthToken: Buffer } | undefined> {
    const slug = this.options.slug;
    if (slug === undefined) return undefined;
    const [row] = await this.db
      .select({ id: tenants.id, settings: tenants.settings, twilioAuthToken: tenants.twilioAuthToken })
      .from(tenants)
      .where(eq(tenants.slug, slug))
      .limit(1);
    const twilio = row?.settings.twilio;
    if (!row || !twilio || !row.twilioAuthToken) {
      if (!this.warnedMisconfigured) {
        this.warnedMisconfigured = true;
        this.logger.warn({ tenant: slug }, 'CIPHERGATE_SMS_SENDER_TENANT names no tenant with Twilio settings; SMS codes are not offered');
      }
      return undefined;
    }
    return { id: row.id, accountSid: twilio.accountSid, fromNumber: twilio.fromNumber, sealedAuthToken: row.twilioAuthToken };
  }
}
