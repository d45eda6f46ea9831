import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { MachineAuth } from '../../src/identity/machines/machine-auth.js';
import { queryRows } from '../../src/store/connection.js';
import { describeEachBackend, tablesState } from '../helpers/database.js';
import { assertProblem } from '../helpers/problems.js';
import { openRelayHarness, randomPhone, TENANT_FROM_NUMBER, type RelayHarness } from '../helpers/relay.js';

const TABLES = ['contacts', 'conversations', 'messages', 'jobs'] as const;

/**
 * `POST /api/v1/messages` and the conversation reads, with their abuse cases: no credential,
 * the wrong role or scope, another tenant, bad input, a reused Idempotency-Key.
 */
await describeEachBackend('messages and conversations API', (backend) => {
  let harness: RelayHarness;
  let tenantId: string;
  let otherTenantId: string;
  before(async () => {
    harness = await openRelayHarness(backend);
    tenantId = (await harness.putTenant('clinic')).id;
    otherTenantId = (await harness.putTenant('other-clinic')).id;
  });
  after(async () => harness?.close());

  const send = (token: string | undefined, body: unknown, idempotencyKey?: string) =>
    harness.request({ method: 'POST', url: '/api/v1/messages', body, ...(token ? { token } : {}), headers: idempotencyKey ? { 'idempotency-key': idempotencyKey } : {} });

  async function apiKey(tenant: string, scopes: string[]): Promise<string> {
    const { key } = await new MachineAuth(harness.identity).createKey(null, { name: 'test', tenantId: tenant, scopes: scopes as never, expiresAt: null });
    return key;
  }

  test('an API key with messages:send sends once per Idempotency-Key; the message goes out through Twilio', async () => {
    const key = await apiKey(tenantId, ['messages:send']);
    const to = randomPhone();
    const first = await send(key, { tenant: 'clinic', to, body: 'Your appointment is confirmed for 3pm.' }, 'reminder-000001');
    assert.equal(first.statusCode, 202, first.body);
    const again = await send(key, { tenant: 'clinic', to, body: 'Your appointment is confirmed for 3pm.' }, 'reminder-000001');
    assert.equal(again.statusCode, 200);
    assert.equal(again.json().id, first.json().id);
    await harness.drain();
    const sent = harness.twilio.messages.filter((message) => message.to === to);
    assert.equal(sent.length, 1);
    assert.equal(sent[0]!.from, TENANT_FROM_NUMBER);
    const [row] = await queryRows<{ author: string; status: string }>(harness.db, sql`select author, status from messages where id = ${first.json().id}`);
    assert.equal(row!.author, 'api');
    assert.equal(row!.status, 'queued');
  });

  test('the same Idempotency-Key with a different message is refused (422) and sends nothing', async () => {
    const key = await apiKey(tenantId, ['messages:send']);
    const to = randomPhone();
    assert.equal((await send(key, { tenant: 'clinic', to, body: 'First text' }, 'reuse-key-0001')).statusCode, 202);
    const state = await tablesState(harness, TABLES);
    const reused = await send(key, { tenant: 'clinic', to, body: 'A different text' }, 'reuse-key-0001');
    assertProblem(reused, 422, 'idempotency-key-reused');
    assert.equal(await tablesState(harness, TABLES), state);
  });

  test('bad input is a 400 problem naming the member, and changes nothing', async () => {
    const key = await apiKey(tenantId, ['messages:send']);
    const state = await tablesState(harness, TABLES);
    assertProblem(await send(key, { tenant: 'clinic', to: '12', body: 'x' }, 'bad-input-0001'), 400, 'validation-failed');
    assertProblem(await send(key, { tenant: 'clinic', to: '+1 415 000', body: 'x' }, 'bad-input-0002'), 400, 'validation-failed');
    assertProblem(await send(key, { tenant: 'clinic', to: randomPhone(), body: '' }, 'bad-input-0003'), 400, 'validation-failed');
    assertProblem(await send(key, { tenant: 'clinic', to: randomPhone(), body: 'x'.repeat(1601) }, 'bad-input-0004'), 400, 'validation-failed');
    assertProblem(await send(key, { tenant: 'clinic', to: randomPhone(), body: 'x', extra: 1 }, 'bad-input-0005'), 400, 'validation-failed');
    const missingKey = await send(key, { tenant: 'clinic', to: randomPhone(), body: 'x' });
    assertProblem(missingKey, 400, 'validation-failed');
    assert.match(missingKey.json().detail, /idempotency-key/);
    assert.equal(await tablesState(harness, TABLES), state);
  });

  test('no credential → 401; a key without messages:send → 403; another tenant → 404; nothing stored', async () => {
    const state = await tablesState(harness, TABLES);
    const body = { tenant: 'clinic', to: randomPhone(), body: 'hello' };
    assertProblem(await send(undefined, body, 'denied-00001'), 401, 'unauthenticated');
    assertProblem(await send(await apiKey(tenantId, ['conversations:read']), body, 'denied-00002'), 403, 'forbidden');
    const otherKey = await apiKey(otherTenantId, ['messages:send']);
    assertProblem(await send(otherKey, body, 'denied-00003'), 404, 'not-found');
    // A user role without messages:send.
    const plain = await harness.createUser({ role: 'user' });
    assertProblem(await send((await harness.signIn(plain)).accessToken, body, 'denied-00004'), 403, 'forbidden');
    assert.equal(await tablesState(harness, TABLES), state);
  });

  test('a client user reads only their own tenant: another tenant reads as absent, and the probe is audited', async () => {
    const phone = randomPhone();
    await harness.sendSms('other-clinic', phone, 'Private to the other clinic');
    const conversations = await queryRows<{ id: string }>(harness.db, sql`select id from conversations where tenant_id = ${otherTenantId}`);
    const client = await harness.createUser({ role: 'client', tenantId });
    const session = await harness.signIn(client);
    const lookup = await harness.request({ method: 'GET', url: `/api/v1/conversations?tenant=other-clinic&phone=${encodeURIComponent(phone)}`, token: session.accessToken });
    assertProblem(lookup, 404, 'not-found');
    const read = await harness.request({ method: 'GET', url: `/api/v1/conversations/${conversations[0]!.id}/messages`, token: session.accessToken });
    assertProblem(read, 404, 'not-found');
    assert.ok(!read.body.includes('Private'));
    const denials = await queryRows<{ details: { reason: string } }>(harness.db, sql`select details from audit_events where action = 'access.denied' and actor_id = ${client.id}`);
    assert.equal(denials.length, 2);
    const reads = await queryRows<{ n: number }>(harness.db, sql`select count(*)::int as n from audit_events where action = 'conversation.read' and actor_id = ${client.id}`);
    assert.equal(reads[0]!.n, 0);
  });

  test('messages are paginated newest page first with a cursor; a forged cursor is a 400', async () => {
    const phone = randomPhone();
    const key = await apiKey(tenantId, ['messages:send', 'conversations:read']);
    for (let index = 0; index < 5; index += 1) {
      assert.equal((await send(key, { tenant: 'clinic', to: phone, body: `note ${index}` }, `page-test-${index}-0000`)).statusCode, 202);
    }
    const [conversation] = (await harness.request({ method: 'GET', url: `/api/v1/conversations?tenant=clinic&phone=${encodeURIComponent(phone)}`, token: key })).json().conversations;
    const first = await harness.request({ method: 'GET', url: `/api/v1/conversations/${conversation.id}/messages?limit=3`, token: key });
    assert.equal(first.statusCode, 200);
    assert.deepEqual(first.json().messages.map((message: { body: string }) => message.body), ['note 2', 'note 3', 'note 4']);
    const second = await harness.request({ method: 'GET', url: `/api/v1/conversations/${conversation.id}/messages?limit=3&before=${first.json().nextCursor}`, token: key });
    assert.deepEqual(second.json().messages.map((message: { body: string }) => message.body), ['note 0', 'note 1']);
    assert.equal(second.json().nextCursor, null);
    assertProblem(await harness.request({ method: 'GET', url: `/api/v1/conversations/${conversation.id}/messages?before=bm9wZQ`, token: key }), 400, 'validation-failed');
    // Machine reads are audited too, naming the key.
    const reads = await queryRows<{ n: number }>(harness.db, sql`select count(*)::int as n from audit_events where action = 'conversation.read' and target_id = ${conversation.id}`);
    assert.equal(reads[0]!.n, 2);
  });

  test('a lookup never opens contact rows: it finds the conversation through the blind index only', async () => {
    const key = await apiKey(tenantId, ['conversations:read']);
    const unknown = await harness.request({ method: 'GET', url: `/api/v1/conversations?tenant=clinic&phone=${encodeURIComponent(randomPhone())}`, token: key });
    assert.equal(unknown.statusCode, 200);
    assert.deepEqual(unknown.json().conversations, []);
  });
});
