import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import twilio from 'twilio';
import { openAiSpecValidator, twilioSpecValidator, type CheckedRequest } from '../fakes/openapi-validator.js';
import { normaliseOpenApiSchemas } from '../fakes/openapi-schema-dialect.js';
import { startFakeServer } from '../fakes/fake-server.js';

const ACCOUNT_SID = `AC${'0123456789abcdef'.repeat(2)}`;
const MESSAGES_PATH = `/2010-04-01/Accounts/${ACCOUNT_SID}/Messages.json`;

function twilioForm(method: string, path: string, fields: Record<string, string | string[]>): CheckedRequest {
  const form = new URLSearchParams();
  for (const [name, value] of Object.entries(fields)) for (const item of [value].flat()) form.append(name, item);
  return { method, path, query: new URLSearchParams(), headers: { 'content-type': 'application/x-www-form-urlencoded' }, rawBody: Buffer.from(form.toString()) };
}

function get(path: string, query: Record<string, string> | URLSearchParams = {}): CheckedRequest {
  return { method: 'GET', path, query: new URLSearchParams(query), headers: {}, rawBody: Buffer.alloc(0) };
}

function openAiJson(path: string, body: unknown): CheckedRequest {
  return { method: 'POST', path, query: new URLSearchParams(), headers: { 'content-type': 'application/json' }, rawBody: Buffer.from(JSON.stringify(body)) };
}

const createMessage = { To: '+15005550006', From: '+15005550001', Body: 'Your table is ready', StatusCallback: 'https://gateway.example/webhooks/twilio/t1/status' };

const chatCompletion = {
  model: 'gpt-4o-mini',
  messages: [
    { role: 'system', content: 'You answer for the restaurant.' },
    { role: 'user', content: 'Do you have a table for [PERSON_1]?' },
  ],
  store: false,
  safety_identifier: 'f'.repeat(64),
};

describe('Twilio spec validator', () => {
  const validator = twilioSpecValidator();

  test('is loaded once and shared', () => {
    assert.equal(twilioSpecValidator(), validator);
  });

  test('a Create Message form with To, From, Body and StatusCallback conforms', () => {
    assert.deepEqual(validator.check(twilioForm('POST', MESSAGES_PATH, createMessage)), []);
  });

  test('form values are read as the types the spec declares: booleans, integers, repeated keys as arrays', () => {
    const fields = { ...createMessage, ProvideFeedback: 'true', ValidityPeriod: '600', MediaUrl: ['https://a.example/1.png', 'https://a.example/2.png'] };
    assert.deepEqual(validator.check(twilioForm('POST', MESSAGES_PATH, fields)), []);
    assert.deepEqual(validator.check(twilioForm('POST', MESSAGES_PATH, { ...createMessage, MediaUrl: 'https://a.example/1.png' })), []);
  });

  test('a form without To fails, naming To', () => {
    const { To: _omitted, ...withoutTo } = createMessage;
    const problems = validator.check(twilioForm('POST', MESSAGES_PATH, withoutTo));
    assert.equal(problems.length, 1, problems.join('\n'));
    assert.match(problems[0]!, /POST \/2010-04-01\/Accounts\/\{AccountSid\}\/Messages\.json: body must have required property 'To'/);
  });

  test('values that are not the declared type or not in the enum fail, each named', () => {
    const problems = validator.check(twilioForm('POST', MESSAGES_PATH, { ...createMessage, ProvideFeedback: 'maybe', ValidityPeriod: 'soon', ContentRetention: 'forever' }));
    assert.equal(problems.length, 3, problems.join('\n'));
    assert.ok(problems.some((problem) => problem.includes('body/ProvideFeedback must be boolean')));
    assert.ok(problems.some((problem) => problem.includes('body/ValidityPeriod must be integer')));
    assert.ok(problems.some((problem) => problem.includes('body/ContentRetention must be equal to one of the allowed values')));
  });

  test('a scalar parameter sent twice fails', () => {
    const problems = validator.check(twilioForm('POST', MESSAGES_PATH, { ...createMessage, To: ['+15005550006', '+15005550007'] }));
    assert.ok(problems.some((problem) => problem.includes('body/To must be string')), problems.join('\n'));
  });

  test('an AccountSid that does not match the spec pattern fails', () => {
    for (const accountSid of ['ACnot-a-sid', `SM${'0'.repeat(32)}`, `${ACCOUNT_SID}0`]) {
      const problems = validator.check(twilioForm('POST', `/2010-04-01/Accounts/${accountSid}/Messages.json`, createMessage));
      assert.ok(problems.length > 0 && problems.every((problem) => problem.includes('path parameter AccountSid')), problems.join('\n'));
    }
  });

  test('an unknown path fails', () => {
    const problems = validator.check(twilioForm('POST', `/2010-04-01/Accounts/${ACCOUNT_SID}/Mesages.json`, createMessage));
    assert.deepEqual(problems, [`POST /2010-04-01/Accounts/${ACCOUNT_SID}/Mesages.json: no path in the spec matches`]);
    assert.equal(validator.check(get('/2010-04-01/Accounts.json/extra')).length, 1);
  });

  test('a method the path does not have fails', () => {
    const problems = validator.check(twilioForm('PUT', MESSAGES_PATH, createMessage));
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /method not in the spec/);
  });

  test('a JSON body where the spec wants a form fails', () => {
    const problems = validator.check({ ...twilioForm('POST', MESSAGES_PATH, {}), headers: { 'content-type': 'application/json' }, rawBody: Buffer.from(JSON.stringify(createMessage)) });
    assert.deepEqual(problems, ['POST /2010-04-01/Accounts/{AccountSid}/Messages.json: Content-Type "application/json" is not one of application/x-www-form-urlencoded']);
  });

  test('a body on an operation that takes none fails', () => {
    const problems = validator.check({ ...get(MESSAGES_PATH), rawBody: Buffer.from('To=%2B15005550006') });
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /takes no request body/);
  });

  test('listing messages with the To, From and DateSent> filters conforms', () => {
    // Twilio names the range filters with the operator in the parameter name: DateSent<, DateSent>.
    const query = { To: '+15005550006', From: '+15005550001', 'DateSent>': '2024-05-01T00:00:00Z', 'DateSent<': '2024-06-01T00:00:00Z', PageSize: '50' };
    assert.deepEqual(validator.check(get(MESSAGES_PATH, query)), []);
  });

  test('a query parameter the operation does not declare, or of the wrong type, fails', () => {
    const problems = validator.check(get(MESSAGES_PATH, { 'DateSent>=': '2024-05-01', PageSize: 'fifty' }));
    assert.deepEqual(problems.sort(), [
      'GET /2010-04-01/Accounts/{AccountSid}/Messages.json: query parameter DateSent>= is not declared by the operation',
      'GET /2010-04-01/Accounts/{AccountSid}/Messages.json: query parameter PageSize must be integer',
    ]);
  });

  test('problems name the rule broken, never the values sent', () => {
    const secretNumber = '+15557654321';
    const problems = validator.check(twilioForm('POST', `/2010-04-01/Accounts/AC${secretNumber}/Messages.json`, { From: secretNumber, Body: 'my card is 4111 1111 1111 1111', ProvideFeedback: secretNumber }));
    assert.ok(problems.length > 0);
    for (const problem of problems) {
      assert.ok(!problem.includes('5557654321') && !problem.includes('4111'), problem);
    }
  });
});

describe('OpenAI spec validator', () => {
  const validator = openAiSpecValidator();

  test('is loaded once and shared', () => {
    assert.equal(openAiSpecValidator(), validator);
  });

  test('a chat completion with model, messages, store:false and safety_identifier conforms', () => {
    assert.deepEqual(validator.check(openAiJson('/v1/chat/completions', chatCompletion)), []);
  });

  test('the spec knows safety_identifier: one over its 64-character limit fails', () => {
    const problems = validator.check(openAiJson('/v1/chat/completions', { ...chatCompletion, safety_identifier: 'f'.repeat(65) }));
    assert.ok(problems.some((problem) => problem.includes('body/safety_identifier must NOT have more than 64 characters')), problems.join('\n'));
  });

  test('a body without messages fails, naming messages', () => {
    const { messages: _omitted, ...withoutMessages } = chatCompletion;
    assert.deepEqual(validator.check(openAiJson('/v1/chat/completions', withoutMessages)), ["POST /chat/completions: body must have required property 'messages'"]);
  });

  test('a message with a role OpenAI does not have fails, naming the role', () => {
    const problems = validator.check(openAiJson('/v1/chat/completions', { ...chatCompletion, messages: [{ role: 'wizard', content: 'hello' }] }));
    assert.ok(problems.length > 0);
    assert.ok(problems.some((problem) => problem.includes('body/messages/0/role must be equal to one of the allowed values')), problems.join('\n'));
    assert.ok(problems.some((problem) => problem.includes('body/messages/0 must match exactly one schema in oneOf')), problems.join('\n'));
  });

  test('store must be a boolean; fields the spec marks nullable take null', () => {
    assert.ok(validator.check(openAiJson('/v1/chat/completions', { ...chatCompletion, store: 'false' })).some((problem) => problem.includes('body/store must be boolean')));
    assert.deepEqual(validator.check(openAiJson('/v1/chat/completions', { ...chatCompletion, max_completion_tokens: null, stop: null, temperature: null })), []);
  });

  test('a body that is not JSON fails', () => {
    const request = { ...openAiJson('/v1/chat/completions', {}), rawBody: Buffer.from('{"model":') };
    assert.deepEqual(validator.check(request), ['POST /chat/completions: body is not valid JSON']);
  });

  test('an empty body where one is required fails', () => {
    assert.deepEqual(validator.check({ ...openAiJson('/v1/chat/completions', {}), rawBody: Buffer.alloc(0) }), ['POST /chat/completions: request body is required']);
  });

  test('a path without the /v1 base, or an unknown one under it, fails', () => {
    assert.deepEqual(validator.check(openAiJson('/chat/completions', chatCompletion)), ['POST /chat/completions: path is outside the API base path /v1']);
    assert.deepEqual(validator.check(openAiJson('/v10/chat/completions', chatCompletion)), ['POST /v10/chat/completions: path is outside the API base path /v1']);
    assert.deepEqual(validator.check(openAiJson('/v1/chat/complete', chatCompletion)), ['POST /v1/chat/complete: no path in the spec matches']);
  });

  test('query objects in bracket notation (as the SDK sends them) are read as objects', () => {
    assert.deepEqual(validator.check(get('/v1/chat/completions', new URLSearchParams('metadata[tenant]=t1&limit=10'))), []);
    assert.deepEqual(validator.check(get('/v1/chat/completions', { limit: 'ten' })), ['GET /chat/completions: query parameter limit must be integer']);
  });
});

describe('the official SDKs pass the checks against a fake', () => {
  test('openai chat.completions.create sends a conforming request', async (t) => {
    const fake = await startFakeServer(
      () => ({
        status: 200,
        body: { id: 'chatcmpl-1', object: 'chat.completion', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, finish_reason: 'stop', logprobs: null, message: { role: 'assistant', content: 'Yes.', refusal: null } }] },
      }),
      { check: (request) => openAiSpecValidator().check(request) },
    );
    t.after(() => fake.close());
    const client = new OpenAI({ apiKey: 'sk-test', baseURL: `${fake.url}/v1`, maxRetries: 0 });
    await client.chat.completions.create({ model: 'gpt-4o-mini', messages: chatCompletion.messages as OpenAI.ChatCompletionMessageParam[], store: false, safety_identifier: 'f'.repeat(64) });
    assert.equal(fake.requests.length, 1);
    assert.deepEqual(fake.violations, []);
  });

  test('twilio messages.create and messages.list send conforming requests', async (t) => {
    const message = { sid: `SM${'0'.repeat(32)}`, account_sid: ACCOUNT_SID, status: 'queued', to: createMessage.To, from: createMessage.From, body: '' };
    const fake = await startFakeServer(
      (request) => (request.method === 'POST' ? { status: 201, body: message } : { status: 200, body: { messages: [], next_page_uri: null, page: 0, page_size: 50 } }),
      { check: (request) => twilioSpecValidator().check(request) },
    );
    t.after(() => fake.close());
    const client = twilio(ACCOUNT_SID, 'test-auth-token');
    client.api.baseUrl = fake.url;
    await client.messages.create({ to: createMessage.To, from: createMessage.From, body: createMessage.Body, statusCallback: createMessage.StatusCallback, mediaUrl: ['https://a.example/1.png'] });
    await client.messages.list({ to: createMessage.To, dateSentAfter: new Date('2024-05-01T00:00:00Z'), limit: 20 });
    assert.equal(fake.requests.length, 2);
    assert.deepEqual(fake.violations, []);
  });
});

describe('OpenAPI schema dialect', () => {
  test('nullable forms become JSON Schema that accepts null', () => {
    const document = {
      paths: {},
      components: {
        schemas: {
          Plain: { type: 'string', nullable: true },
          WithEnum: { type: 'string', enum: ['a'], nullable: true },
          BesideRef: { $ref: '#/components/schemas/Plain', nullable: true, description: 'kept' },
          InAllOf: { allOf: [{ $ref: '#/components/schemas/Plain' }, { nullable: true, description: 'null too' }] },
          Anything: { nullable: true, description: 'no constraint' },
        },
      },
    };
    normaliseOpenApiSchemas(document);
    assert.deepEqual(document.components.schemas, {
      Plain: { type: ['string', 'null'] },
      WithEnum: { anyOf: [{ type: 'null' }, { type: 'string', enum: ['a'] }] },
      BesideRef: { description: 'kept', anyOf: [{ type: 'null' }, { $ref: '#/components/schemas/Plain' }] },
      InAllOf: { anyOf: [{ type: 'null' }, { allOf: [{ $ref: '#/components/schemas/Plain' }] }] },
      Anything: { description: 'no constraint' },
    });
  });

  test('boolean exclusive bounds and $recursiveRef become their 2020-12 forms', () => {
    const document = {
      paths: {},
      components: {
        schemas: {
          Positive: { type: 'number', minimum: 0, exclusiveMinimum: true, maximum: 2, exclusiveMaximum: false },
          Filter: { type: 'object', properties: { filters: { type: 'array', items: { oneOf: [{ type: 'string' }, { $recursiveRef: '#' }] } } } },
        },
      },
    };
    normaliseOpenApiSchemas(document);
    assert.deepEqual(document.components.schemas.Positive, { type: 'number', exclusiveMinimum: 0, maximum: 2 });
    assert.deepEqual(document.components.schemas.Filter.properties.filters.items.oneOf[1], { $ref: '#/components/schemas/Filter' });
  });

  test('data that looks like a keyword is left alone: a property named nullable, examples, defaults', () => {
    const properties = { nullable: { type: 'boolean' } };
    const example = { nullable: true, type: 'string' };
    const document = {
      paths: { '/x': { post: { requestBody: { content: { 'application/json': { schema: { type: 'object', properties, example, default: example } } } } } } },
    };
    normaliseOpenApiSchemas(document);
    const schema = document.paths['/x'].post.requestBody.content['application/json'].schema;
    assert.deepEqual(schema.properties, { nullable: { type: 'boolean' } });
    assert.deepEqual(schema.example, { nullable: true, type: 'string' });
    assert.deepEqual(schema.default, { nullable: true, type: 'string' });
  });
});
