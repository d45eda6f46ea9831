import type { InboundSender } from '../../domain/normalise.js';
import type { InboundMessage } from '../../store/repositories/conversations.js';
import type { TenantContext } from '../tenant-directory.js';
import type { InboundGate } from './gate.js';

/** What the inbound use cases work with; the Relay is one. */
export interface InboundRelay {
  readonly gate: InboundGate;
  /**
   * Stores a message and its follow-up jobs in one transaction; resolves after the commit. Every
   * sender is stored, a phone number or not (`sender.kind`).
   */
  receive(tenant: TenantContext, inbound: InboundDelivery): Promise<{ duplicate: boolean }>;
  /** A delivery status; a status older than the stored one changes nothing. */
  updateStatus(tenant: TenantContext, which: { messageId: string } | { providerMessageId: string }, status: string, errorCode: string | null): Promise<boolean>;
  /** Airtable said something changed: one fetch job per tenant. */
  airtableChanged(tenant: TenantContext): Promise<void>;
}

/** An inbound message as a provider's `accept` hands it over: the store's fields, the sender as parsed. */
export type InboundDelivery = Omit<InboundMessage, 'tenantId' | 'phone' | 'senderKind'> & { sender: InboundSender };
