/**
 * The columns Ciphergate writes to and reads from the tenant's Airtable table: one row per
 * message, merged on "Ciphergate ID". docs/providers.md tells operators to create them.
 */
export const AIRTABLE_FIELDS = {
  id: 'Ciphergate ID',
  conversation: 'Conversation ID',
  direction: 'Direction',
  author: 'Author',
  phone: 'Phone',
  name: 'Name',
  body: 'Body',
  aiReply: 'AI Reply',
  status: 'Status',
  created: 'Created',
  /** Staff edit these two: a checkbox that pauses the AI for the conversation, and a reply to send. */
  pauseAi: 'Pause AI',
  manualReply: 'Manual Reply',
} as const;
