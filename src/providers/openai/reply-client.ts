import { createHash } from 'node:crypto';
import OpenAI from 'openai';
import type { ChatCompletion, ChatCompletionMessageParam } from 'openai/resources/chat/completions';
import { ProviderError } from '../provider-error.js';
import { toOpenAiProviderError } from './openai-errors.js';

/**
 * The AI reply call: a conversation history (already redacted by the caller) goes to OpenAI's
 * Chat Completions through the official `openai` SDK, and the answer text comes back.
 */

export interface ChatTurn {
  role: 'user' | 'assistant';
  content: string;
}

export interface AiReplyRequest {
  model: string;
  systemPrompt?: string;
  history: ChatTurn[];
  /** A stable hash identifying the end user to OpenAI's abuse detection; never the phone number itself. */
  safetyIdentifier: string;
}

export interface AiReplyClient {
  reply(apiKey: string, request: AiReplyRequest): Promise<{ text: string; responseId: string }>;
}

export function createAiReplyClient(options: { baseUrl: string; timeoutMs?: number }): AiReplyClient {
  const clients = new SdkClientCache({
    baseUrl: options.baseUrl,
    timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
  });
  return {
    async reply(apiKey, request) {
      assertSafetyIdentifier(request.safetyIdentifier);
      const client = clients.get(apiKey);
      let completion: ChatCompletion;
      try {
        completion = await client.chat.completions.create({
          model: request.model,
          messages: toMessages(request),
          // Conversations with customers must not be retained by OpenAI for evals or distillation:
          // https://platform.openai.com/docs/api-reference/chat/create#chat-create-store
          store: false,
          // https://platform.openai.com/docs/guides/safety-best-practices#safety-identifiers
          safety_identifier: request.safetyIdentifier,
        });
      } catch (error) {
        throw toOpenAiProviderError(error);
      }
      return { text: answerText(completion), responseId: completion.id };
    },
  };
}

/** Long enough for a slow model on a short SMS thread, short enough that a stuck call frees its job lease. */
const DEFAULT_TIMEOUT_MS = 30_000;
/** SDK clients kept warm (each keeps its own connection pool); tenants beyond this are rebuilt on demand. */
const MAX_CACHED_CLIENTS = 100;

/**
 * One SDK client per API key, least recently used dropped first. The map is keyed by a digest of
 * the key so that the key itself is not copied into yet another structure.
 */
class SdkClientCache {
  private readonly clients = new Map<string, OpenAI>();

  constructor(private readonly settings: { baseUrl: string; timeoutMs: number }) {}

  get(apiKey: string): OpenAI {
    const slot = createHash('sha256').update(apiKey).digest('base64url');
    const cached = this.clients.get(slot);
    if (cached) {
      this.clients.delete(slot);
      this.clients.set(slot, cached);
      return cached;
    }
    const client = new OpenAI({
      apiKey,
      baseURL: this.settings.baseUrl,
      timeout: this.settings.timeoutMs,
      // The SDK would retry 408/409/429/5xx and timeouts itself, twice by default, inside one job
      // attempt and without our backoff. Our job queue owns retries instead: it backs off with
      // jitter, honours Retry-After (carried on ProviderError), dead-letters after the last
      // attempt, and frees the worker in between.
      maxRetries: 0,
      // Explicit nulls stop the SDK from reading OPENAI_ORG_ID / OPENAI_PROJECT_ID from the
      // environment: the tenant's key alone decides which account is billed.
      organization: null,
      project: null,
    });
    this.clients.set(slot, client);
    if (this.clients.size > MAX_CACHED_CLIENTS) {
      const oldest = this.clients.keys().next().value;
      if (oldest !== undefined) this.clients.delete(oldest);
    }
    return client;
  }
}

function toMessages(request: AiReplyRequest): ChatCompletionMessageParam[] {
  const messages: ChatCompletionMessageParam[] = [];
  // `system` rather than the newer `developer` role: every chat model and every
  // OpenAI-compatible server behind CIPHERGATE_OPENAI_BASE_URL accepts it.
  if (request.systemPrompt) messages.push({ role: 'system', content: request.systemPrompt });
  for (const turn of request.history) messages.push({ role: turn.role, content: turn.content });
  return messages;
}

/**
 * The reply text, or a non-retryable error: a refusal or an empty answer would be the same on
 * the next attempt, and nothing must be sent to the customer.
 */
function answerText(completion: ChatCompletion): string {
  const choice = completion.choices[0];
  const content = choice?.message.content?.trim();
  if (content) return content;
  const refused = Boolean(choice?.message.refusal) || choice?.finish_reason === 'content_filter';
  throw new ProviderError({
    provider: 'openai',
    message: refused ? 'OpenAI refused to answer' : 'OpenAI returned an empty answer',
    code: refused ? 'refusal' : 'empty_answer',
    retryable: false,
  });
}

/**
 * OpenAI allows at most 64 characters (openai_openapi.yaml, safety_identifier) and asks for a
 * hash, not an identifier. A value that looks like a phone number is a caller bug that would
 * send personal data out, so it is refused before any request is made.
 */
function assertSafetyIdentifier(value: string): void {
  if (value.length === 0 || value.length > 64) throw new RangeError('safetyIdentifier must be 1 to 64 characters');
  if (/^\+?[\d\s().-]{7,20}$/.test(value) || value.includes('@')) {
    throw new RangeError('safetyIdentifier must be a hash, not a phone number or email address');
  }
}
