import type { Logger } from '../../log/logger.js';
import type { AirtableRecordsClient } from '../../providers/airtable/records-client.js';
import type { AirtableWebhooksClient } from '../../providers/airtable/webhooks-client.js';
import type { AiReplyClient } from '../../providers/openai/reply-client.js';
import type { TwilioSmsClient } from '../../providers/twilio/sms-client.js';
import type { JobQueue } from '../../store/job-queue.js';
import type { AirtableCursors } from '../../store/repositories/airtable-cursors.js';
import type { ConversationRepository } from '../../store/repositories/conversations.js';
import type { TenantDirectory } from '../tenant-directory.js';

/** What Podium sends need; the adapter in src/providers/podium implements it. */
export interface PodiumSender {
  send(apiKey: string, message: { locationUid: string; to: string; body: string; contactName?: string }): Promise<{ uid: string }>;
  findSent(apiKey: string, message: { locationUid: string; to: string; body: string; sentAfter: Date; excluding?: readonly string[] }): Promise<{ uid: string } | undefined>;
}

export interface RelayClients {
  twilio: TwilioSmsClient;
  podium: PodiumSender;
  openai: AiReplyClient;
  airtableRecords: AirtableRecordsClient;
  airtableWebhooks: AirtableWebhooksClient;
}

/** Everything a job handler works with. */
export interface HandlerContext {
  queue: JobQueue;
  tenants: TenantDirectory;
  conversations: ConversationRepository;
  airtableCursors: AirtableCursors;
  clients: RelayClients;
  logger: Logger;
  /** CIPHERGATE_PUBLIC_URL: status callbacks point back at it. */
  publicUrl: string;
  /** How many earlier messages an AI reply sees. */
  historyLimit: number;
}
