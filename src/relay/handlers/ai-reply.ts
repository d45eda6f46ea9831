import { createHash } from 'node:crypto';
import type { ClaimedJob } from '../../store/job-queue.js';
import { PermanentJobError } from '../job-worker.js';
import { sendJobs } from '../jobs.js';
import { mayAiAnswer } from '../../domain/keywords.js';
import { redactTexts, restorePlaceholders } from '../redact.js';
import type { HandlerContext } from './context.js';

/**
 * Tells the model about the placeholders, so it keeps them intact where it needs them (we put
 * the real values back afterwards) and does not ask for what it cannot see.
 */
const PLACEHOLDER_NOTE =
  'Personal details in this conversation were replaced by placeholders such as [PHONE_1], [EMAIL_1], [NAME_1], [CARD_1] or [ADDRESS_1]. ' +
  'Use a placeholder exactly as written when you need to refer to that detail; never ask the customer to repeat it.';

/**
 * Job `ai-reply` (payload: the inbound message id). Answers the contact through OpenAI with the
 * personal data in the history replaced by placeholders, stores the answer sealed, and enqueues
 * its send, all idempotently: the answer's dedupe key is `ai:<inbound id>`, so a retried job
 * finds the answer it already stored instead of asking twice. (A crash between OpenAI's answer
 * and the commit does ask again; the unique key still stores and sends one answer.)
 */
export function aiReplyHandler(context: HandlerContext) {
  return async (job: ClaimedJob): Promise<void> => {
    const messageId = String(job.payload.messageId);
    const message = await context.conversations.messageForJob(messageId);
    // Gone with its tenant (shredded); nothing to answer.
    if (!message || message.direction !== 'inbound') return;
    if (message.contactOptedOut || message.contactAiPaused) return;
    const tenant = await context.tenants.byId(message.tenantId);
    if (!tenant) return;
    const openai = tenant.settings.openai;
    if (!openai || !tenant.secrets.openaiApiKey) throw new PermanentJobError('tenant has no OpenAI settings');
    // Answered already (a retry after a crash that followed the commit): the answer's send job
    // was committed with it, so there is nothing left to do and nothing to pay OpenAI for again.
    if ((await context.conversations.idByDedupeKey(message.tenantId, `ai:${message.id}`)) !== undefined) return;
    // A burst of messages gets one answer: the newest one's job sees the others in its history.
    if ((await context.conversations.latestInboundId(message.conversationId)) !== message.id) return;
    const inboundBody = await context.conversations.openBody(message);
    // STOP, START and HELP are carrier commands; Twilio answers them, the AI never does.
    if (!mayAiAnswer(inboundBody)) return;

    const history = await context.conversations.recentHistory({ id: message.conversationId, tenantId: message.tenantId }, context.historyLimit);
    const contact = await context.conversations.openContact({ id: message.contactId, tenantId: message.tenantId });
    const redaction = redactTexts(
      history.map((turn) => turn.body),
      { knownNames: contact.name ? [contact.name] : [] },
    );
    const systemPrompt = [openai.systemPrompt, PLACEHOLDER_NOTE].filter(Boolean).join('\n\n');
    const answer = await context.clients.openai.reply(tenant.secrets.openaiApiKey, {
      model: openai.model,
      systemPrompt,
      history: history.map((turn, index) => ({ role: turn.direction === 'inbound' ? ('user' as const) : ('assistant' as const), content: redaction.text[index]! })),
      safetyIdentifier: safetyIdentifierOf(message.tenantId, message.contactId),
    });
    const replyText = restorePlaceholders(answer.text, redaction.placeholders).trim();
    if (replyText.length === 0) throw new PermanentJobError('the model answered with nothing to send');

    // The call took seconds: staff may have taken over, or the contact opted out, meanwhile.
    const fresh = await context.conversations.messageForJob(messageId);
    if (!fresh || fresh.contactOptedOut || fresh.contactAiPaused) return;
    await context.conversations.storeOutbound(
      {
        tenantId: message.tenantId,
        conversationId: message.conversationId,
        contactId: message.contactId,
        author: 'ai',
        body: replyText,
        dedupeKey: `ai:${message.id}`,
        inReplyTo: message.id,
      },
      (replyId) => sendJobs(tenant, replyId),
    );
  };
}

/**
 * OpenAI's `safety_identifier`: stable per contact so abuse can be traced to one end user,
 * derived from random ids only, so it reveals nothing about the person.
 */
export function safetyIdentifierOf(tenantId: string, contactId: string): string {
  return createHash('sha256').update(`ciphergate:${tenantId}:${contactId}`).digest('hex');
}
