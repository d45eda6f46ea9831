import { verifyAirtableMac } from '../../providers/airtable/webhook-mac.js';
import type { TenantContext } from '../tenant-directory.js';
import type { InboundRelay } from './context.js';
import { DECOY_MAC_SECRET_BASE64, type Accepted, type Delivery, type InboundGate, type Rejection } from './gate.js';

/**
 * Airtable's webhook notification (`/webhooks/airtable/:tenant`): a ping that carries no data,
 * MAC'd with the webhook's base64 secret (src/providers/airtable/webhook-mac.ts). What changed is
 * fetched by the `airtable-webhook` job.
 */

export interface VerifiedAirtable {
  ok: true;
  tenant: TenantContext;
}

/**
 * Checks, in this order: the tenant and its allowlist, the MAC (against the decoy when the
 * tenant is unknown), the tenant has an Airtable webhook, the MAC is there and right, and the
 * ping names the tenant's webhook: one for another webhook of the base is not ours to act on.
 */
export async function verify(gate: InboundGate, delivery: Delivery): Promise<VerifiedAirtable | Rejection> {
  const admitted = await gate.admit('airtable', delivery);
  if (!admitted.ok) return admitted;
  const { tenant } = admitted;
  const header = delivery.header('x-airtable-content-mac');
  const valid = verifyAirtableMac({ macSecretBase64: tenant?.secrets.airtableMacSecret ?? DECOY_MAC_SECRET_BASE64, header, rawBody: delivery.rawBody });
  if (!tenant) return { ok: false, reason: 'unknown-tenant' };
  if (!tenant.settings.airtable?.webhookId || !tenant.secrets.airtableMacSecret) return { ok: false, reason: 'provider-not-configured', tenant };
  if (!header) return { ok: false, reason: 'missing-signature', tenant };
  if (!valid) return { ok: false, reason: 'bad-signature', tenant };
  let notification: { webhook?: { id?: unknown } };
  try {
    notification = JSON.parse(delivery.rawBody.toString('utf8')) as typeof notification;
  } catch {
    return { ok: false, reason: 'malformed-payload', tenant };
  }
  if (notification?.webhook?.id !== tenant.settings.airtable.webhookId) return { ok: false, reason: 'malformed-payload', tenant };
  return { ok: true, tenant };
}

/** One fetch job per tenant, however many pings. */
export async function accept(relay: InboundRelay, verified: VerifiedAirtable): Promise<Accepted> {
  await relay.airtableChanged(verified.tenant);
  return relay.gate.accepted('airtable', 'ping');
}
