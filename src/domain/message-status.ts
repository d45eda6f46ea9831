/**
 * Where a message stands, and the order statuses come in. Providers deliver status callbacks
 * out of order (Twilio says so: https://www.twilio.com/docs/messaging/guides/track-outbound-message-status),
 * so an update is applied only when its rank is higher than the stored one; a late `sent` never
 * overwrites `delivered`.
 */
const RANKS: Record<string, number> = {
  // Ours, before the provider has the message.
  pending: 0,
  // Twilio's message statuses (https://www.twilio.com/docs/messaging/api/message-resource#message-status-values).
  accepted: 1,
  scheduled: 1,
  queued: 2,
  sending: 3,
  sent: 4,
  delivered: 5,
  undelivered: 5,
  failed: 5,
  canceled: 5,
  read: 6,
  // Ours: not sent because the contact opted out.
  suppressed: 7,
  // An inbound message is simply received.
  received: 0,
  receiving: 0,
};

export const OUTBOUND_INITIAL_STATUS = 'pending';
export const INBOUND_STATUS = 'received';

/** Rank of a status; an unknown one (a provider's new status) ranks just above `sending`, below the terminal ones. */
export function statusRank(status: string): number {
  return RANKS[status] ?? 3;
}

/** Twilio's and Podium's status words, lower-cased and limited to a safe token; anything else is `unknown`. */
export function normaliseStatus(status: string | undefined): string {
  const lowered = (status ?? '').trim().toLowerCase();
  return /^[a-z_-]{1,32}$/.test(lowered) ? lowered : 'unknown';
}
