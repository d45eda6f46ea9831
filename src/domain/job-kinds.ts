/** The relay's job kinds, the names stored in `jobs.kind`. Payloads are ids only (src/store/job-queue.ts checks). */
export const JOB = {
  aiReply: 'ai-reply',
  send: 'send',
  airtableSync: 'airtable-sync',
  airtableWebhook: 'airtable-webhook',
} as const;

export type JobKind = (typeof JOB)[keyof typeof JOB];
