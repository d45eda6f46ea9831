import { inboundSenderOf } from '../../domain/normalise.js';
import type { ClaimedJob } from '../../store/job-queue.js';
import type { MessageForJob } from '../../store/repositories/conversations.js';
import { PermanentJobError } from '../job-worker.js';
import { syncJobs } from '../jobs.js';
import type { TenantContext } from '../tenant-directory.js';
import type { HandlerContext } from './context.js';

/**
 * How far before the recorded start an uncertain send is looked for: the provider's clock and
 * ours differ, and Twilio dates carry whole seconds only.
 */
const LOOKBACK_MS = 2 * 60_000;

/**
 * Job `send` (payload: the outbound message id). Sends once, even across crashes:
 *
 * 1. A message with a provider id was sent: done.
 * 2. `sendStartedAt` is committed before the provider is called. Finding it set without a
 *    provider id means an earlier attempt died between the call and recording its result (or
 *    the connection dropped with the answer in flight), so the provider is asked first whether
 *    it has the message, and only a clear "no" sends again.
 * 3. The provider's id and status are recorded with the Airtable sync in one transaction.
 */
export function sendHandler(context: HandlerContext) {
  return async (job: ClaimedJob): Promise<void> => {
    const message = await context.conversations.messageForJob(String(job.payload.messageId));
    if (!message || message.direction !== 'outbound' || message.providerMessageId) return;
    const tenant = await context.tenants.byId(message.tenantId);
    if (!tenant) return;
    const followUps = syncJobs(tenant, message.id);
    // Opted out: nothing may reach them. Paused: staff took over, so an AI answer stays unsent.
    if (message.contactOptedOut || (message.author === 'ai' && message.contactAiPaused)) {
      await context.conversations.applyStatus(message.tenantId, { messageId: message.id }, 'suppressed', null, () => followUps);
      return;
    }
    const body = await context.conversations.openBody(message);
    const contact = await context.conversations.openContact({ id: message.contactId, tenantId: message.tenantId });
    // A contact that is no valid phone number is stored as received: a 555 number is sent to in
    // its E.164 shape; a short code or an alphanumeric id cannot receive anything, which the
    // dead letter says (staff replying to one through Airtable learn it there).
    const to = inboundSenderOf(contact.phone)?.replyTo;
    if (to === undefined) throw new PermanentJobError('the contact is a sender that cannot receive SMS (a short code or an alphanumeric id)');
    const channel = message.channel === 'podium' ? podiumChannel(context, tenant) : twilioChannel(context, tenant, message);

    if (message.sendStartedAt) {
      // Messages already recorded to this contact are not candidates: the same words sent
      // minutes ago ("Thanks!") must not be taken for this one.
      const excluding = await context.conversations.providerIdsSentTo(message.contactId, message.id);
      const found = await channel.findSent({ to, body, sentAfter: new Date(message.sendStartedAt.getTime() - LOOKBACK_MS), excluding });
      if (found) {
        context.logger.info({ messageId: message.id, channel: message.channel }, 'an earlier attempt had sent this message; recorded it instead of sending again');
        await context.conversations.recordSent(message.id, found.id, found.status, followUps);
        return;
      }
    }
    await context.conversations.markSendStarted(message.id, new Date());
    const sent = await channel.send({ to, body, contactName: contact.name });
    await context.conversations.recordSent(message.id, sent.id, sent.status, followUps);
  };
}

interface Channel {
  send(message: { to: string; body: string; contactName: string | null }): Promise<{ id: string; status: string }>;
  findSent(message: { to: string; body: string; sentAfter: Date; excluding: readonly string[] }): Promise<{ id: string; status: string } | undefined>;
}

function twilioChannel(context: HandlerContext, tenant: TenantContext, message: MessageForJob): Channel {
  const settings = tenant.settings.twilio;
  const authToken = tenant.secrets.twilioAuthToken;
  if (!settings || !authToken) throw new PermanentJobError('tenant has no Twilio settings');
  const credentials = { accountSid: settings.accountSid, authToken };
  return {
    async send({ to, body }) {
      const statusCallback = `${context.publicUrl}/webhooks/twilio/${encodeURIComponent(tenant.slug)}/status?m=${message.id}`;
      const sent = await context.clients.twilio.send(credentials, { from: settings.fromNumber, to, body, statusCallback });
      return { id: sent.sid, status: sent.status };
    },
    async findSent({ to, body, sentAfter, excluding }) {
      const found = await context.clients.twilio.findSent(credentials, { from: settings.fromNumber, to, body, sentAfter, excluding });
      return found ? { id: found.sid, status: found.status } : undefined;
    },
  };
}

function podiumChannel(context: HandlerContext, tenant: TenantContext): Channel {
  const settings = tenant.settings.podium;
  const apiKey = tenant.secrets.podiumApiKey;
  if (!settings || !apiKey) throw new PermanentJobError('tenant has no Podium settings');
  return {
    async send({ to, body, contactName }) {
      const sent = await context.clients.podium.send(apiKey, { locationUid: settings.locationUid, to, body, ...(contactName ? { contactName } : {}) });
      return { id: sent.uid, status: 'sent' };
    },
    async findSent({ to, body, sentAfter, excluding }) {
      const found = await context.clients.podium.findSent(apiKey, { locationUid: settings.locationUid, to, body, sentAfter, excluding });
      return found ? { id: found.uid, status: 'sent' } : undefined;
    },
  };
}
