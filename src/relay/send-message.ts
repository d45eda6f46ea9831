import { e164OrUndefined } from '../domain/normalise.js';
import type { Db } from '../store/connection.js';
import type { ConversationRepository } from '../store/repositories/conversations.js';
import { auditDone, tenantFor, type Caller } from './caller.js';
import { RelayError } from './errors.js';
import { sendJobs } from './jobs.js';
import type { TenantDirectory } from './tenant-directory.js';

/** What sending needs of the relay. */
export interface SendMessageContext {
  db: Db;
  tenants: TenantDirectory;
  conversations: ConversationRepository;
  /** Jobs were committed: wake a worker of this process. */
  announce(): void;
}

export interface SendMessageRequest {
  /** The tenant's slug. */
  tenant: string;
  /** The recipient; anything libphonenumber reads as a valid number (E.164 preferred). */
  to: string;
  body: string;
  /** A unique key per message from this caller; a retry with the same key sends nothing new. */
  idempotencyKey: string;
}

export interface SentMessage {
  id: string;
  conversationId: string;
  status: string;
  /** The key was used before for this same message: nothing new was stored or sent. */
  duplicate: boolean;
  /** The recipient opted out: the message is stored and will be suppressed, not sent. */
  recipientOptedOut: boolean;
}

/**
 * A person or a machine sends an SMS through the tenant's Twilio number. Everything the request
 * says is checked before anything is written (the tenant and the caller's access to it, the
 * tenant's Twilio settings, the number); then one transaction stores the contact, conversation,
 * message and its jobs, sealed, or (the key already used) nothing at all. The send itself follows
 * in the queue, retried there. The idempotency key is the caller's: the same key from the same
 * caller returns the first message, and the same key with a different message is refused
 * (`idempotency-key-reused`), as Stripe does.
 */
export async function sendMessage(context: SendMessageContext, caller: Caller, request: SendMessageRequest): Promise<SentMessage> {
  const tenant = await tenantFor(context.db, caller, await context.tenants.bySlug(request.tenant));
  if (!tenant.settings.twilio) throw new RelayError('provider-not-configured', 'this tenant has no Twilio settings to send with');
  const to = e164OrUndefined(request.to);
  if (to === undefined) throw new RelayError('invalid-phone', 'not a valid phone number', 'to');
  const person = caller.actor.type === 'user';
  const dedupeKey = `api:${person ? 'u' : 'k'}:${caller.actor.id}:${request.idempotencyKey}`;
  const stored = await context.conversations.storeOutboundToPhone(
    { tenantId: tenant.id, phone: to, channel: 'sms', author: person ? 'staff' : 'api', body: request.body, dedupeKey },
    (messageId) => sendJobs(tenant, messageId),
  );
  const message = (await context.conversations.messageForJob(stored.messageId))!;
  const sent = { id: stored.messageId, conversationId: message.conversationId, status: message.status, duplicate: stored.duplicate, recipientOptedOut: message.contactOptedOut };
  if (stored.duplicate) {
    // The same key must mean the same message: the recipient and text the first call stored.
    const first = await context.conversations.openContact({ id: message.contactId, tenantId: tenant.id });
    const sameMessage = first.phone === to && (await context.conversations.openBody(message)) === request.body;
    if (!sameMessage) throw new RelayError('idempotency-key-reused', 'this Idempotency-Key was used for a different message');
    return sent;
  }
  context.announce();
  await auditDone(context.db, caller, { action: 'message.send', target: { type: 'message', id: stored.messageId }, tenantId: tenant.id, details: { conversationId: stored.conversationId } });
  return sent;
}
