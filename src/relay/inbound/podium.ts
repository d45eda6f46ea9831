import { normaliseStatus } from '../../domain/message-status.js';
import { inboundSenderOf } from '../../domain/normalise.js';
import { parsePodiumEvent, PodiumEventError, type PodiumEvent } from '../../providers/podium/events.js';
import { verifyPodiumRequest } from '../../providers/podium/webhook-signature.js';
import type { TenantContext } from '../tenant-directory.js';
import type { InboundRelay } from './context.js';
import { DECOY_SECRET, type Accepted, type Delivery, type InboundGate, type Rejection } from './gate.js';

/**
 * Podium's webhook (`/webhooks/podium/:tenant`): an HMAC-SHA256 over `timestamp.body` with the
 * webhook's secret, in a five-minute window (src/providers/podium/webhook-signature.ts), then the
 * event (src/providers/podium/events.ts).
 */

export interface VerifiedPodium {
  ok: true;
  tenant: TenantContext;
  event: PodiumEvent;
}

/**
 * Checks, in this order: the tenant and its allowlist, the signature and timestamp (against the
 * decoy when the tenant is unknown), the tenant has Podium settings, then the event parses and
 * belongs to the tenant's location: one secret may sign a whole organization's events.
 */
export async function verify(gate: InboundGate, delivery: Delivery): Promise<VerifiedPodium | Rejection> {
  const admitted = await gate.admit('podium', delivery);
  if (!admitted.ok) return admitted;
  const { tenant } = admitted;
  const check = verifyPodiumRequest({
    secret: tenant?.secrets.podiumWebhookSecret ?? DECOY_SECRET,
    timestamp: delivery.header('podium-timestamp'),
    signature: delivery.header('podium-signature'),
    rawBody: delivery.rawBody,
  });
  if (!tenant) return { ok: false, reason: 'unknown-tenant' };
  if (!tenant.settings.podium || !tenant.secrets.podiumWebhookSecret) return { ok: false, reason: 'provider-not-configured', tenant };
  if (!check.ok) return { ok: false, reason: check.reason === 'missing-header' ? 'missing-signature' : check.reason, tenant };
  let event: PodiumEvent;
  try {
    event = parsePodiumEvent(delivery.rawBody);
  } catch (error) {
    if (error instanceof PodiumEventError) return { ok: false, reason: 'malformed-payload', tenant };
    throw error;
  }
  if (event.locationUid !== undefined && event.locationUid !== tenant.settings.podium.locationUid) return { ok: false, reason: 'account-mismatch', tenant };
  return { ok: true, tenant, event };
}

/**
 * A message a customer wrote is stored with its follow-up jobs, whatever its channel: a sender
 * that is no phone number (an email address, a Facebook id, a short code) is stored flagged as
 * not E.164 and gets no AI reply (src/domain/normalise.ts, `inboundSenderOf`); one whose address
 * names no sender is malformed and refused with 400. A sent or failed event moves our message's
 * status. Any other event is acknowledged and ignored: it carries no message.
 */
export async function accept(relay: InboundRelay, verified: VerifiedPodium): Promise<Accepted> {
  const { tenant, event } = verified;
  if (event.message && event.message.direction !== 'outbound' && event.eventType === 'message.received') {
    const message = event.message;
    const sender = inboundSenderOf(message.channelIdentifier);
    if (sender === undefined) return { ok: false, reason: 'malformed-payload', tenant };
    const stored = await relay.receive(tenant, {
      channel: 'podium',
      dedupeKey: `podium:${message.uid}`,
      providerMessageId: message.uid,
      sender,
      name: message.contactName ?? null,
      body: message.body,
      providerConversationId: message.conversationUid,
    });
    return relay.gate.accepted('podium', stored.duplicate ? 'duplicate' : 'stored', stored.duplicate ? undefined : { tenant, sender });
  }
  if (event.status) {
    await relay.updateStatus(tenant, { providerMessageId: event.status.messageUid }, normaliseStatus(event.status.state), null);
    return relay.gate.accepted('podium', 'status');
  }
  return relay.gate.accepted('podium', 'ignored');
}
