import { EventEmitter } from 'node:events';
import { AuditAggregator } from '../audit/aggregator.js';
import { JOB } from '../domain/job-kinds.js';
import { mayAiAnswer, optChangeOf } from '../domain/keywords.js';
import { isSetupTestMessage } from '../domain/setup-test.js';
import type { TenantSummary } from '../domain/tenant.js';
import type { Logger } from '../log/logger.js';
import { createBasePacer } from '../providers/airtable/base-pacer.js';
import { createAirtableRecordsClient } from '../providers/airtable/records-client.js';
import { createAirtableWebhooksClient } from '../providers/airtable/webhooks-client.js';
import { createAiReplyClient } from '../providers/openai/reply-client.js';
import { createPodiumClient } from '../providers/podium/client.js';
import { createTwilioSmsClient } from '../providers/twilio/sms-client.js';
import type { StoredKeyring } from '../seal/keyring.js';
import type { SealedFields } from '../seal/sealed-fields.js';
import type { Db } from '../store/connection.js';
import { JobQueue, type RetryPolicy } from '../store/job-queue.js';
import { AirtableCursors } from '../store/repositories/airtable-cursors.js';
import { ConversationRepository } from '../store/repositories/conversations.js';
import { listTenants, slugOf, TenantRepository } from '../store/repositories/tenants.js';
import type { Caller } from './caller.js';
import { airtableSyncHandler } from './handlers/airtable-sync.js';
import { airtableWebhookHandler } from './handlers/airtable-webhook.js';
import { aiReplyHandler } from './handlers/ai-reply.js';
import type { HandlerContext, RelayClients } from './handlers/context.js';
import { sendHandler } from './handlers/send.js';
import type { InboundDelivery, InboundRelay } from './inbound/context.js';
import { InboundGate } from './inbound/gate.js';
import { JobWorker, type JobHandler } from './job-worker.js';
import { aiReplyJob, airtableWebhookJob, syncJobs } from './jobs.js';
import { listConversations, type ListConversationsRequest } from './list-conversations.js';
import { readConversation } from './read-conversations.js';
import { sendMessage, type SendMessageRequest, type SentMessage } from './send-message.js';
import { listTenantsFor, showTenant } from './tenant-catalogue.js';
import { TenantDirectory, type TenantContext } from './tenant-directory.js';
import { RelayMetrics } from './webhook-metrics.js';

export interface RelayConfig {
  publicUrl: string;
  providers: { twilioApiUrl: string; openaiBaseUrl: string; airtableApiUrl: string; podiumApiUrl: string };
}

export interface RelayOptions {
  config: RelayConfig;
  db: Db;
  fields: SealedFields;
  keyring: StoredKeyring;
  logger: Logger;
  /** Tests pass shorter retry delays; production uses the queue's defaults. */
  retry?: Partial<RetryPolicy>;
  leaseMs?: number;
  /** Replaces provider clients (tests that count calls); defaults to the official SDKs. */
  clients?: Partial<RelayClients>;
  /** Tests skip Airtable's 30-second wait. */
  airtableSleep?: (ms: number) => Promise<void>;
  historyLimit?: number;
}

/**
 * The message pipeline: what the webhooks hand over (inbound messages, status updates, Airtable
 * pings; verified by src/relay/inbound/), the job handlers that follow up, and the use cases the
 * API calls (sending a message, reading conversations, the tenant catalogue), each in its own
 * module. One instance per process; the HTTP routes and the workers share it.
 */
export class Relay implements InboundRelay {
  readonly tenants: TenantDirectory;
  readonly conversations: ConversationRepository;
  readonly queue: JobQueue;
  readonly handlers: Record<string, JobHandler>;
  readonly clients: RelayClients;
  /** Webhook and job counters and the queue gauges of this relay; `/metrics` serves them. */
  readonly metrics: RelayMetrics;
  /**
   * Refused webhook deliveries, audited as one entry per provider, tenant, reason and minute (and
   * messages stored from senders that are no phone number, likewise aggregated).
   * Whoever closes the process calls `rejectionAudit.stop()` before the database closes.
   */
  readonly rejectionAudit: AuditAggregator;
  /** The checks every inbound webhook shares (src/relay/inbound/gate.ts). */
  readonly gate: InboundGate;
  private readonly enqueued = new EventEmitter();

  constructor(private readonly options: RelayOptions) {
    const { config, db, fields, keyring, logger } = options;
    this.tenants = new TenantDirectory(db, new TenantRepository(db, fields, keyring));
    this.conversations = new ConversationRepository(db, fields);
    this.queue = new JobQueue(db, { ...(options.retry ? { retry: options.retry } : {}), ...(options.leaseMs ? { leaseMs: options.leaseMs } : {}) });
    this.metrics = new RelayMetrics(this.queue);
    this.rejectionAudit = new AuditAggregator(db, { logger });
    this.gate = new InboundGate(this.tenants, this.metrics, this.rejectionAudit);
    // One pacer for both Airtable clients: they share each base's 5 requests per second.
    const pacer = createBasePacer();
    this.clients = {
      twilio: options.clients?.twilio ?? createTwilioSmsClient({ apiUrl: config.providers.twilioApiUrl }),
      podium: options.clients?.podium ?? createPodiumClient({ apiUrl: config.providers.podiumApiUrl }),
      openai: options.clients?.openai ?? createAiReplyClient({ baseUrl: config.providers.openaiBaseUrl }),
      airtableRecords:
        options.clients?.airtableRecords ?? createAirtableRecordsClient({ apiUrl: config.providers.airtableApiUrl, pacer, ...(options.airtableSleep ? { sleep: options.airtableSleep } : {}) }),
      airtableWebhooks: options.clients?.airtableWebhooks ?? createAirtableWebhooksClient({ apiUrl: config.providers.airtableApiUrl, pacer }),
    };
    const context: HandlerContext = {
      queue: this.queue,
      tenants: this.tenants,
      conversations: this.conversations,
      airtableCursors: new AirtableCursors(db),
      clients: this.clients,
      logger: logger.child({ component: 'relay' }),
      publicUrl: config.publicUrl,
      historyLimit: options.historyLimit ?? 20,
    };
    this.handlers = {
      [JOB.aiReply]: aiReplyHandler(context),
      [JOB.send]: sendHandler(context),
      [JOB.airtableSync]: airtableSyncHandler(context),
      [JOB.airtableWebhook]: airtableWebhookHandler({ ...context, airtableApiUrl: config.providers.airtableApiUrl, pacer }),
    };
  }

  /**
   * Stores an inbound message and its follow-up jobs in one transaction. Resolves after the
   * commit: the caller answers the provider 2xx only then.
   *
   * Every sender is stored. One that cannot receive an SMS (a short code, an alphanumeric id:
   * no `sender.replyTo`) gets no AI reply job, since the answer could go nowhere; the
   * message is still synced, and the log says why no reply was made.
   */
  async receive(tenant: TenantContext, inbound: InboundDelivery): Promise<{ duplicate: boolean; messageId: string }> {
    const { sender, ...message } = inbound;
    // A setup test (`ciphergate tenants test`, src/relay/setup-test.ts; only ever asked after the
    // signature was verified) is stored, so "stored" is real, but gets no follow-up job: it must
    // never reach OpenAI, Twilio or Airtable.
    const setupTest = isSetupTestMessage(message.providerMessageId, message.body);
    const wantsAiReply = !setupTest && tenant.settings.openai !== undefined && mayAiAnswer(message.body);
    const answerable = wantsAiReply && sender.replyTo !== undefined;
    const optChange = optChangeOf(message.body);
    const stored = await this.conversations.storeInbound(
      { ...message, phone: sender.address, senderKind: sender.kind, tenantId: tenant.id, ...(optChange ? { optChange } : {}) },
      ({ messageId }) => (setupTest ? [] : [...(answerable ? [aiReplyJob(tenant.id, messageId)] : []), ...syncJobs(tenant, messageId)]),
    );
    if (!stored.duplicate) {
      if (setupTest) this.options.logger.info({ tenantId: tenant.id, messageId: stored.messageId }, 'AI skipped: setup test');
      if (wantsAiReply && !answerable) {
        this.options.logger.info({ tenantId: tenant.id, messageId: stored.messageId, senderKind: sender.kind }, 'no AI reply: the sender cannot receive SMS (a short code or an alphanumeric id)');
      }
      this.announce();
    }
    return { duplicate: stored.duplicate, messageId: stored.messageId };
  }

  /** A delivery status from a provider callback; a status older than the stored one changes nothing. */
  async updateStatus(tenant: TenantContext, which: { messageId: string } | { providerMessageId: string }, status: string, errorCode: string | null): Promise<boolean> {
    const moved = await this.conversations.applyStatus(tenant.id, which, status, errorCode, (messageId) => syncJobs(tenant, messageId));
    if (moved) this.announce();
    return moved !== undefined;
  }

  /** `POST /api/v1/messages`: see src/relay/send-message.ts. */
  sendMessage(caller: Caller, request: SendMessageRequest): Promise<SentMessage> {
    return sendMessage(this.useCaseContext(), caller, request);
  }

  /** A page of a tenant's conversations, filtered, or a contact's found by number (src/relay/list-conversations.ts). */
  listConversations(caller: Caller, request: ListConversationsRequest): ReturnType<typeof listConversations> {
    return listConversations({ ...this.useCaseContext(), fields: this.options.fields }, caller, request);
  }

  /** A page of a conversation's messages, opened and audited (src/relay/read-conversations.ts). */
  readConversation(caller: Caller, request: { id: string; limit: number; before?: string | undefined }): ReturnType<typeof readConversation> {
    return readConversation(this.useCaseContext(), caller, request);
  }

  /** The tenants the caller may see (src/relay/tenant-catalogue.ts). */
  listTenants(caller: Caller): Promise<TenantSummary[]> {
    return listTenantsFor(this.options.db, caller);
  }

  /** Whether a tenant with this id exists (an API key or a user names one). */
  async tenantExists(tenantId: string): Promise<boolean> {
    return (await slugOf(this.options.db, tenantId)) !== undefined;
  }

  /** One tenant the caller may see (src/relay/tenant-catalogue.ts). */
  showTenant(caller: Caller, slug: string): Promise<TenantSummary> {
    return showTenant(this.options.db, caller, slug);
  }

  /** Airtable said something changed: one fetch job per tenant, however many pings. */
  async airtableChanged(tenant: TenantContext): Promise<void> {
    await this.queue.enqueue(airtableWebhookJob(tenant.id));
    this.announce();
  }

  /**
   * Airtable webhooks made with a personal access token expire 7 days after their last refresh
   * (https://airtable.com/developers/web/api/refresh-a-webhook); reading payloads refreshes them,
   * but a table nobody edits for a week would lose its webhook. Workers call this twice a day.
   * A failure for one tenant is logged and the others still get theirs.
   */
  async refreshAirtableWebhooks(): Promise<{ refreshed: number; failed: number }> {
    let refreshed = 0;
    let failed = 0;
    for (const summary of await listTenants(this.options.db)) {
      if (!summary.providers.includes('airtable')) continue;
      const tenant = await this.tenants.bySlug(summary.slug);
      const airtable = tenant?.settings.airtable;
      if (!tenant || !airtable?.webhookId || !tenant.secrets.airtableApiKey) continue;
      try {
        await this.clients.airtableWebhooks.refreshWebhook({ apiKey: tenant.secrets.airtableApiKey, baseId: airtable.baseId }, airtable.webhookId);
        refreshed += 1;
      } catch (error) {
        failed += 1;
        this.options.logger.warn({ err: error, tenantId: tenant.id }, 'could not refresh the Airtable webhook');
      }
    }
    return { refreshed, failed };
  }

  /** A worker running these handlers in this process; `start()` it, `stop()` before the database closes. */
  createWorker(options: { concurrency?: number; pollIntervalMs?: number; onOutcome?: (kind: string, outcome: 'done' | 'retry' | 'dead') => void } = {}): JobWorker {
    const { onOutcome, ...rest } = options;
    const worker = new JobWorker({
      queue: this.queue,
      handlers: this.handlers,
      logger: this.options.logger.child({ component: 'worker' }),
      ...rest,
      onAttempt: (kind) => this.metrics.jobAttempts.inc({ kind }),
      onOutcome: (kind, outcome) => {
        this.metrics.recordOutcome(kind, outcome);
        onOutcome?.(kind, outcome);
      },
    });
    const wake = () => worker.wake();
    this.enqueued.on('jobs', wake);
    const stop = worker.stop.bind(worker);
    worker.stop = async (stopOptions) => {
      this.enqueued.off('jobs', wake);
      return stop(stopOptions);
    };
    return worker;
  }

  /** Jobs were committed: a worker in this process looks now rather than at its next poll. */
  announce(): void {
    this.enqueued.emit('jobs');
  }

  private useCaseContext() {
    return { db: this.options.db, tenants: this.tenants, conversations: this.conversations, announce: () => this.announce() };
  }
}
