import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, beforeEach, describe, test } from 'node:test';
import { ProviderError } from '../../../src/providers/provider-error.js';
import { createAiReplyClient, type AiReplyClient, type AiReplyRequest } from '../../../src/providers/openai/reply-client.js';
import { DEFAULT_OPENAI_KEY, startOpenAiFake, type OpenAiFake } from '../../fakes/openai.js';
import { rejection } from '../../helpers/provider-errors.js';

/**
 * The reply client end to end through the official SDK against the OpenAI fake: what leaves
 * (store:false, a hashed safety identifier, no retries of its own) and how each way OpenAI fails
 * becomes a ProviderError the job queue can act on.
 */

const SAFETY_ID = createHash('sha256').update('tenant-1:contact-1').digest('hex');

function request(overrides: Partial<AiReplyRequest> = {}): AiReplyRequest {
  return {
    model: 'gpt-4o-mini',
    systemPrompt: 'You answer SMS for a dental practice.',
    history: [
      { role: 'user', content: 'Hi, can I book a cleaning?' },
      { role: 'assistant', content: 'Sure, what number can we call you on?' },
      { role: 'user', content: 'Call me at [PHONE_1] please' },
    ],
    safetyIdentifier: SAFETY_ID,
    ...overrides,
  };
}


describe('OpenAI reply client', () => {
  let fake: OpenAiFake;
  let client: AiReplyClient;

  before(async () => {
    fake = await startOpenAiFake();
    client = createAiReplyClient({ baseUrl: `${fake.url}/v1`, timeoutMs: 10_000 });
  });
  after(async () => {
    assert.deepEqual(fake.violations, [], 'every request the SDK sent conforms to OpenAI\'s OpenAPI document');
    await fake.close();
  });
  beforeEach(() => {
    fake.requests.length = 0;
    fake.completions.length = 0;
  });

  test('sends the history with store:false and the safety identifier, and returns the answer', async () => {
    const answer = await client.reply(DEFAULT_OPENAI_KEY, request());

    assert.match(answer.text, /\[PHONE_1\]/);
    assert.match(answer.responseId, /^chatcmpl-/);
    assert.equal(fake.completions.length, 1);
    const body = fake.completions[0]!;
    assert.equal(body.store, false);
    assert.equal(body.safety_identifier, SAFETY_ID);
    assert.equal(body.model, 'gpt-4o-mini');
    assert.deepEqual(
      body.messages.map((message) => message.role),
      ['system', 'user', 'assistant', 'user'],
    );
    assert.equal(body.messages[0]!.content, 'You answer SMS for a dental practice.');
    assert.equal(body.user, undefined, 'the deprecated `user` field is not sent');
    assert.equal(fake.requests[0]!.headers.authorization, `Bearer ${DEFAULT_OPENAI_KEY}`);
    assert.ok(!fake.requests[0]!.rawBody.toString().includes(DEFAULT_OPENAI_KEY), 'the key travels only in the header');
    assert.deepEqual(fake.violations, []);
  });

  test('omits the system message when the tenant has no system prompt', async () => {
    await client.reply(DEFAULT_OPENAI_KEY, request({ systemPrompt: undefined }));
    assert.deepEqual(
      fake.completions[0]!.messages.map((message) => message.role),
      ['user', 'assistant', 'user'],
    );
  });

  test('keeps one SDK client per key: two tenants with different keys each authenticate as themselves', async () => {
    const twoKeys = await startOpenAiFake({ apiKeys: ['sk-tenant-a', 'sk-tenant-b'] });
    try {
      const shared = createAiReplyClient({ baseUrl: `${twoKeys.url}/v1` });
      await shared.reply('sk-tenant-a', request());
      await shared.reply('sk-tenant-b', request());
      await shared.reply('sk-tenant-a', request());
      assert.deepEqual(
        twoKeys.requests.map((recorded) => recorded.headers.authorization),
        ['Bearer sk-tenant-a', 'Bearer sk-tenant-b', 'Bearer sk-tenant-a'],
      );
    } finally {
      await twoKeys.close();
    }
  });

  test('a wrong key → 401, not retryable', async () => {
    const error = await rejection(client.reply('sk-wrong', request()));
    assert.equal(error.provider, 'openai');
    assert.equal(error.status, 401);
    assert.equal(error.code, 'invalid_api_key');
    assert.equal(error.retryable, false);
    assert.ok(!error.message.includes('sk-wrong'), 'the message never repeats the key');
  });

  test('429 with Retry-After → retryable with the wait, and the SDK does not retry by itself', async () => {
    fake.failNext({ kind: 'rate-limit', retryAfterSeconds: 7, body: { error: { message: 'Rate limit reached', type: 'requests', param: null, code: 'rate_limit_exceeded' } } });
    const error = await rejection(client.reply(DEFAULT_OPENAI_KEY, request()));
    assert.equal(error.status, 429);
    assert.equal(error.retryable, true);
    assert.equal(error.retryAfterSeconds, 7);
    assert.equal(error.code, 'rate_limit_exceeded');
    assert.equal(fake.requests.length, 1, 'maxRetries: 0, the queue retries');
  });

  test('500 → retryable, one request only', async () => {
    fake.failNext({ kind: 'status', status: 500, body: { error: { message: 'The server had an error', type: 'server_error', param: null, code: null } } });
    const error = await rejection(client.reply(DEFAULT_OPENAI_KEY, request()));
    assert.equal(error.status, 500);
    assert.equal(error.retryable, true);
    assert.equal(fake.requests.length, 1);
  });

  test('503 with a non-JSON body → still retryable', async () => {
    fake.failNext({ kind: 'status', status: 503, body: 'upstream unavailable' });
    const error = await rejection(client.reply(DEFAULT_OPENAI_KEY, request()));
    assert.equal(error.status, 503);
    assert.equal(error.retryable, true);
  });

  for (const status of [400, 403, 404]) {
    test(`${status} → not retryable`, async () => {
      fake.failNext({ kind: 'status', status, body: { error: { message: 'nope', type: 'invalid_request_error', param: null, code: 'model_not_found' } } });
      const error = await rejection(client.reply(DEFAULT_OPENAI_KEY, request()));
      assert.equal(error.status, status);
      assert.equal(error.retryable, false);
    });
  }

  test('an answer slower than the timeout → retryable, no status', async () => {
    const impatient = createAiReplyClient({ baseUrl: `${fake.url}/v1`, timeoutMs: 200 });
    fake.failNext({ kind: 'slow', delayMs: 1_500 });
    const error = await rejection(impatient.reply(DEFAULT_OPENAI_KEY, request()));
    assert.equal(error.status, undefined);
    assert.equal(error.retryable, true);
    assert.match(error.message, /timeout/);
    assert.equal(fake.requests.length, 1);
  });

  test('a dropped connection → retryable, no status', async () => {
    fake.failNext({ kind: 'drop' });
    const error = await rejection(client.reply(DEFAULT_OPENAI_KEY, request()));
    assert.equal(error.status, undefined);
    assert.equal(error.retryable, true);
    assert.equal(fake.requests.length, 1);
  });

  test('a refusal → not retryable, nothing to send', async () => {
    fake.failNext({ kind: 'status', status: 200, body: completionWith({ content: null, refusal: "I can't help with that." }) });
    const error = await rejection(client.reply(DEFAULT_OPENAI_KEY, request()));
    assert.equal(error.retryable, false);
    assert.equal(error.code, 'refusal');
  });

  test('an empty answer → not retryable', async () => {
    fake.failNext({ kind: 'status', status: 200, body: completionWith({ content: '   ', refusal: null }) });
    const error = await rejection(client.reply(DEFAULT_OPENAI_KEY, request()));
    assert.equal(error.retryable, false);
    assert.equal(error.code, 'empty_answer');
  });

  test('the fake holds requests to OpenAI\'s spec: a body the real API would refuse is a violation', async () => {
    const strict = await startOpenAiFake();
    try {
      await fetch(`${strict.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${DEFAULT_OPENAI_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'customer', content: 'hi' }], store: 'no' }),
      });
      assert.ok(strict.violations.length > 0);
    } finally {
      await strict.close();
    }
  });

  test('a safety identifier that is a phone number or an email never leaves', async () => {
    for (const safetyIdentifier of ['+15551234567', '15551234567', '(555) 123-4567', 'jane@example.com', '', 'x'.repeat(65)]) {
      await assert.rejects(client.reply(DEFAULT_OPENAI_KEY, request({ safetyIdentifier })), RangeError);
    }
    assert.equal(fake.requests.length, 0);
  });
});

function completionWith(message: { content: string | null; refusal: string | null }) {
  return {
    id: 'chatcmpl-refused',
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model: 'gpt-4o-mini',
    choices: [{ index: 0, message: { role: 'assistant', ...message }, logprobs: null, finish_reason: 'stop' }],
    usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
  };
}
