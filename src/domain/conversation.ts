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
