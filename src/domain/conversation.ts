/**
 * Conversations as every layer names them: the channel a thread runs on, who wrote a message, and
 * the shapes a conversation and an opened message are shown in. Holds no personal data itself.
 */

export type Channel = 'sms' | 'podium';

export const MESSAGE_AUTHORS = ['contact', 'ai', 'staff', 'api'] as const;
export type MessageAuthor = (typeof MESSAGE_AUTHORS)[number];

export type Direction = 'inbound' | 'outbound';

/** A conversation without anything sealed: ids, channel and times. */
export interface ConversationSummary {
  id: string;
  tenantId: string;
  channel: Channel;
  contactId: string;
  createdAt: Date;
  lastMessageAt: Date;
}

/** A message with its body opened: exists only in the memory of one authorized request or job. */
export interface OpenedMessage {
  id: string;
  direction: Direction;
  author: MessageAuthor;
  body: string;
  status: string;
  createdAt: Date;
}

/** A conversation's contact with the number and name opened: like OpenedMessage, only for one authorized, audited read. */
export interface OpenedContact {
  id: string;
  /** As received: E.164 for a number that parses, else the sender as the provider gave it. */
  phone: string;
  name: string | null;
}

/** A conversation as a list shows it: the summary, the contact's flags, and its number masked (src/domain/contact-mask.ts). */
export interface ConversationListItem extends ConversationSummary {
  contactMasked: string;
  aiPaused: boolean;
  optedOut: boolean;
}

/** What a list of a tenant's conversations may be narrowed to; every filter is optional. */
export interface ConversationFilter {
  channel?: Channel;
  /** Last activity at or after this instant. */
  since?: Date;
  /** Last activity before this instant. */
  until?: Date;
  aiPaused?: boolean;
  optedOut?: boolean;
}

/** A position in a list ordered by last activity, newest first: the last item of the page before. */
export interface ConversationListPosition {
  lastMessageAt: Date;
  id: string;
}
