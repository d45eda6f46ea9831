import type { AuditAggregator } from '../../audit/aggregator.js';
import { isTenantSlug } from '../../domain/ids.js';
import type { InboundSender } from '../../domain/normalise.js';
import type { Logger } from '../../log/logger.js';
import type { TenantContext, TenantDirectory } from '../tenant-directory.js';
import type { RelayMetrics } from '../webhook-metrics.js';
import { isAddressAllowed } from './ip-allowlist.js';

/**
 * What every provider's inbound webhook shares before its own signature check: the tenant the
 * URL names, the tenant's address allowlist, the decoy secret that makes an unknown tenant cost
 * what a known one does, and the record of a refusal (metrics, the request's log, the audit trail
 * aggregated per minute). Each provider module (twilio.ts, podium.ts, airtable.ts) exports
 * `verify` (delivery → verified delivery or a rejection) and `accept` (store, update, enqueue).
 */

export type InboundProvider = 'twilio' | 'podium' | 'airtable';

/**
 * Why a delivery was refused. Recorded in the audit trail (aggregated per minute) and the
 * metrics; the caller always hears the same 403, so an unknown tenant cannot be told apart from
 * a bad signature.
 */
export type RejectionReason =
  | 'unknown-tenant'
  | 'provider-not-configured'
  | 'address-not-allowed'
  | 'missing-signature'
  | 'bad-signature'
  | 'stale-timestamp'
  | 'account-mismatch'
  | 'malformed-payload'
  | 'body-too-large';

/** A webhook request as the relay checks it: the bytes received and the few facts a signature covers. */
export interface Delivery {
  /** The tenant slug of the webhook path, as received (nothing about it is checked yet). */
  tenantSlug: string;
  /** The body exactly as received: signatures are over these bytes. */
  rawBody: Buffer;
  /** A request header by lower-case name (the first one when repeated). */
  header(name: string): string | undefined;
  /**
   * The URL the provider signed: our public URL (CIPHERGATE_PUBLIC_URL) with the path and query
   * as received. Never one rebuilt from the Host header, which the caller writes.
   */
  signedUrl: string;
  /** The caller's address as the HTTP layer settled it (X-Forwarded-For only from CIPHERGATE_TRUST_PROXY). */
  sourceIp: string;
}

/** A refused delivery: the reason, and the tenant when the URL named a known one. */
export interface Rejection {
  ok: false;
  reason: RejectionReason;
  tenant?: TenantContext;
}

/** What `accept` did with a verified delivery; counted per provider (`ciphergate_webhook_accepted_total`). */
export type AcceptOutcome = 'stored' | 'duplicate' | 'ignored' | 'status' | 'ping';

export type Accepted = { ok: true; outcome: AcceptOutcome } | Rejection;

/** Where the refusal of one request is logged: that request's logger, so the line carries its id. */
export type RejectionLog = Pick<Logger, 'warn'>;

/** A message stored from a verified delivery: whose, and from which sender. */
export interface StoredFrom {
  tenant: TenantContext;
  sender: InboundSender;
}

/**
 * Checked when the tenant is unknown, so the work done (and the time it takes) matches a real
 * check that fails: the answer and its timing say nothing about which tenants exist.
 */
export const DECOY_SECRET = 'ciphergate-decoy-secret-that-matches-nothing';
/** The decoy as Airtable's MAC secrets are written (base64). */
export const DECOY_MAC_SECRET_BASE64 = Buffer.from(DECOY_SECRET).toString('base64');

export class InboundGate {
  constructor(
    private readonly tenants: TenantDirectory,
    private readonly metrics: RelayMetrics,
    private readonly rejectionAudit: AuditAggregator,
  ) {}

  /**
   * The tenant the delivery names and its address allowlist for `provider`. The tenant is
   * undefined when unknown (a malformed slug is unknown without a lookup): the caller still
   * checks the signature, against the decoy, before refusing.
   */
  async admit(provider: InboundProvider, delivery: Delivery): Promise<{ ok: true; tenant: TenantContext | undefined } | Rejection> {
    const tenant = isTenantSlug(delivery.tenantSlug) ? await this.tenants.bySlug(delivery.tenantSlug) : undefined;
    if (tenant && !isAddressAllowed(tenant.settings.allowIps[provider], delivery.sourceIp)) return { ok: false, reason: 'address-not-allowed', tenant };
    return { ok: true, tenant };
  }

  /**
   * Records a refusal: counted in the metrics and the request log per request, audited per
   * minute (one entry per provider, tenant and reason with its count, src/audit/aggregator.ts),
   * so a flood of forged deliveries costs a bounded number of audit rows and no database write
   * per request. `provider` is undefined when the path named none (a refusal before routing).
   */
  refused(provider: InboundProvider | undefined, rejection: Omit<Rejection, 'ok'>, request: { sourceIp: string; log: RejectionLog; signedUrl?: string }): void {
    const { reason, tenant } = rejection;
    this.metrics.webhookRejections.inc({ provider: provider ?? 'unknown', reason });
    // The commonest setup mistake is a public URL that differs from the one the provider was
    // given (host, port, http vs https, a path prefix the proxy strips): the operator needs the
    // URL we checked the signature against to compare. Without its query: only the origin and
    // path can differ by configuration, and the query is the provider's to fill.
    const checkedUrl = reason === 'bad-signature' && request.signedUrl ? urlWithoutQuery(request.signedUrl) : undefined;
    request.log.warn({ provider, reason, tenantId: tenant?.id, ...(checkedUrl ? { checkedUrl } : {}) }, 'webhook rejected');
    this.rejectionAudit.count({ action: 'webhook.rejected', outcome: 'failure', tenantId: tenant?.id ?? null, labels: { provider: provider ?? 'unknown', reason } }, request.sourceIp);
  }

  /** A delivery refused by the per-address rate limit, before anything was read: counted, never audited. */
  rateLimited(provider: InboundProvider | undefined): void {
    this.metrics.webhookRejections.inc({ provider: provider ?? 'unknown', reason: 'rate-limited' });
  }

  /**
   * A verified delivery was committed (or knowingly ignored). A new message from a sender that
   * is no valid phone number (`stored`) is counted (`ciphergate_inbound_sender_not_e164_total`)
   * and audited per minute like the refusals, one entry per provider, tenant and sender kind
   * with its count: a flood of them costs a bounded number of audit rows.
   */
  accepted(provider: InboundProvider, outcome: AcceptOutcome, stored?: StoredFrom): Accepted {
    this.metrics.webhookAccepted.inc({ provider, outcome });
    if (stored && stored.sender.kind !== 'e164') {
      this.metrics.sendersNotE164.inc({ provider, kind: stored.sender.kind });
      this.rejectionAudit.count({ action: 'webhook.sender-not-e164', outcome: 'success', tenantId: stored.tenant.id, labels: { provider, kind: stored.sender.kind } }, null);
    }
    return { ok: true, outcome };
  }
}

function urlWithoutQuery(url: string): string {
  const queryAt = url.indexOf('?');
  return queryAt === -1 ? url : url.slice(0, queryAt);
}
