import { randomBytes } from 'node:crypto';
import { startFakeServer, type FakeResponse, type FakeServer, type RecordedRequest } from './fake-server.js';
import { openAiSpecValidator } from './openapi-validator.js';

/**
 * A local OpenAI that speaks Chat Completions on the wire: `POST /v1/chat/completions` with
 * Bearer auth, answering the real `chat.completion` object and the real error shape
 * (https://platform.openai.com/docs/api-reference/chat/object,
 * https://platform.openai.com/docs/guides/error-codes). Point the SDK's `baseURL` at
 * `${fake.url}/v1`.
 *
 * Every request is checked against OpenAI's OpenAPI document (openapi-validator.ts), and also for
 * a Bearer header and a JSON body; each problem is recorded in `violations`, which tests assert
 * stays empty. A well-formed request with an unknown key just gets the 401 OpenAI would give.
 */

/** A Chat Completions request body as the fake reads it (only what it needs, the rest is kept). */
export interface ChatCompletionBody {
  model: string;
  messages: Array<{ role: string; content: string | Array<{ type: string; text?: string }> | null }>;
  store?: boolean;
  safety_identifier?: string;
  [key: string]: unknown;
}

export interface OpenAiFake extends FakeServer {
  /** Every body that reached the completions route (including those answered 401), parsed. */
  readonly completions: ChatCompletionBody[];
}

export const DEFAULT_OPENAI_KEY = 'sk-test-ciphergate-fake';

export async function startOpenAiFake(options: { apiKeys?: string[]; answer?: (request: ChatCompletionBody) => string } = {}): Promise<OpenAiFake> {
  const apiKeys = new Set(options.apiKeys ?? [DEFAULT_OPENAI_KEY]);
  const answer = options.answer ?? echoPlaceholders;
  const completions: ChatCompletionBody[] = [];

  const handle = (request: RecordedRequest): FakeResponse => {
    if (request.method !== 'POST' || request.path !== '/v1/chat/completions') {
      return openAiError(404, `Unknown request URL: ${request.method} ${request.path}.`, 'invalid_request_error', 'unknown_url');
    }
    const body = parseJson(request.rawBody) as ChatCompletionBody | undefined;
    if (body) completions.push(body);
    const token = bearerToken(request);
    if (!token || !apiKeys.has(token)) {
      return openAiError(401, 'Incorrect API key provided.', 'invalid_request_error', 'invalid_api_key');
    }
    if (!body || typeof body.model !== 'string' || !Array.isArray(body.messages)) {
      return openAiError(400, 'We could not parse the JSON body of your request.', 'invalid_request_error', null);
    }
    return { status: 200, headers: { 'x-request-id': `req_${randomBytes(12).toString('hex')}` }, body: chatCompletion(body.model, answer(body)) };
  };

  const fake = await startFakeServer(handle, { check: (request) => [...checkRequest(request), ...openAiSpecValidator().check(request)] });
  return Object.assign(fake, { completions });
}

/**
 * The default answer: deterministic, and it repeats every placeholder (`[PHONE_1]`, `[EMAIL_2]`,
 * the salted `[PHONE_1_k3x9]` of src/relay/redact.ts, `[NAME]`…) found in the last user message,
 * so a test can check that the relay restores them.
 */
export function echoPlaceholders(request: ChatCompletionBody): string {
  const lastUser = [...request.messages].reverse().find((message) => message.role === 'user');
  const text = lastUser ? contentText(lastUser.content) : '';
  const placeholders = [...new Set(text.match(/\[[A-Z][A-Za-z0-9_]*\]/g) ?? [])];
  if (placeholders.length === 0) return 'Thanks for your message. A team member will follow up shortly.';
  return `Thanks for your message. We noted ${placeholders.join(', ')}.`;
}

function chatCompletion(model: string, content: string) {
  const promptTokens = 20;
  const completionTokens = Math.max(1, Math.ceil(content.length / 4));
  return {
    id: `chatcmpl-${randomBytes(15).toString('base64url')}`,
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model,
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content, refusal: null, annotations: [] },
        logprobs: null,
        finish_reason: 'stop',
      },
    ],
    usage: {
      prompt_tokens: promptTokens,
      completion_tokens: completionTokens,
      total_tokens: promptTokens + completionTokens,
      prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
      completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
    },
    service_tier: 'default',
    system_fingerprint: null,
  };
}

/** OpenAI's error body: https://platform.openai.com/docs/guides/error-codes */
function openAiError(status: number, message: string, type: string, code: string | null): FakeResponse {
  return { status, body: { error: { message, type, param: null, code } } };
}

function checkRequest(request: RecordedRequest): string[] {
  const problems: string[] = [];
  const authorization = request.headers.authorization;
  if (!authorization || !/^Bearer \S+$/.test(authorization)) problems.push(`${request.method} ${request.path}: no Bearer Authorization header`);
  if (request.method === 'POST') {
    if (!String(request.headers['content-type'] ?? '').startsWith('application/json')) problems.push(`${request.method} ${request.path}: body is not application/json`);
    if (parseJson(request.rawBody) === undefined) problems.push(`${request.method} ${request.path}: body is not valid JSON`);
  }
  return problems;
}

function bearerToken(request: RecordedRequest): string | undefined {
  return /^Bearer (\S+)$/.exec(request.headers.authorization ?? '')?.[1];
}

function contentText(content: ChatCompletionBody['messages'][number]['content']): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) return content.map((part) => part.text ?? '').join(' ');
  return '';
}

function parseJson(raw: Buffer): unknown {
  try {
    return JSON.parse(raw.toString('utf8')) as unknown;
  } catch {
    return undefined;
  }
}
