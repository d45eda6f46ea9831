import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { MachineAuth } from '../../src/identity/machines/machine-auth.js';
import { queryRows } from '../../src/store/connection.js';
import { describeEachBackend, tablesState } from '../helpers/database.js';
import { assertProblem } from '../helpers/problems.js';
import { openRelayHarness, randomPhone, type RelayHarness } from '../helpers/relay.js';

// `POST /api/v1/messages` refused a reused Idempotency-Key (422) only after it had made the
// contact and conversation of the new number. Every refusal of that route must change nothing:
// the row count of every table, and the rows of the message tables, are the same afterwards.

/** The rows a send writes, compared whole (ids, sealed values, timestamps). */
const MESSAGE_TABLES = ['contacts', 'conversations', 'messages', 'jobs'] as const;

await describeEachBackend('a refused POST /api/v1/messages writes nothing', (backend) => {
  let harness: RelayHarness;
  let tenantId: string;
  let otherTenantId: string;
  let noTwilioId: string;
  let sendKey: string;
  before(async () => {
    harness = await openRelayHarness(backend);
    tenantId = (await harness.putTenant('clinic')).id;
    otherTenantId = (await harness.putTenant('other-clinic')).id;
    noTwilioId = (
      await harness.putTenant('no-twilio', (document) => {
        delete document.twilio;
      })
    ).id;
    sendKey = await apiKey(tenantId, ['messages:send']);
  });
  after(async () => harness?.close());

  async function apiKey(tenant: string, scopes: string[]): Promise<string> {
    const { key } = await new MachineAuth(harness.identity).createKey(null, { name: 'refusals', tenantId: tenant, scopes: scopes as never, expiresAt: null });
    return key;
  }

  const send = (token: string | undefined, body: unknown, idempotencyKey?: string, payload?: string) =>
    harness.app.inject({
      method: 'POST',
      url: '/api/v1/messages',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}), ...(idempotencyKey ? { 'idempotency-key': idempotencyKey } : {}) },
      payload: payload ?? JSON.stringify(body),
    });

  /** Row counts of every table of the schema. */
  async function rowCounts(): Promise<Record<string, number>> {
    const tables = await queryRows<{ name: string }>(harness.db, sql`select table_name as name from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE' order by table_name`);
    assert.ok(tables.length >= 10, `found only ${tables.length} tables`);
    const counts: Record<string, number> = {};
    for (const { name } of tables) {
      const [row] = await queryRows<{ n: number | string }>(harness.db, sql.raw(`select count(*) as n from "${name}"`));
      counts[name] = Number(row!.n);
    }
    return counts;
  }

  async function snapshot(): Promise<{ counts: Record<string, number>; rows: string }> {
    return { counts: await rowCounts(), rows: await tablesState(harness, MESSAGE_TABLES) };
  }

  async function assertUnchanged(before: { counts: Record<string, number>; rows: string }, what: string, allowed: Record<string, number> = {}): Promise<void> {
    const afterwards = await snapshot();
    const expected = Object.fromEntries(Object.entries(before.counts).map(([table, count]) => [table, count + (allowed[table] ?? 0)]));
    assert.deepEqual(afterwards.counts, expected, `${what}: row counts`);
    assert.equal(afterwards.rows, before.rows, `${what}: contacts, conversations, messages and jobs`);
  }

  test('a reused Idempotency-Key with another body to a new number: 422 and no contact, conversation or job', async () => {
    const first = await send(sendKey, { tenant: 'clinic', to: randomPhone(), body: 'Your appointment is at 3pm.' }, 'reuse-0000001');
    assert.equal(first.statusCode, 202, first.body);
    for (const [label, body] of [
      ['another number, another text', { tenant: 'clinic', to: randomPhone(), body: 'Something else entirely.' }],
      ['another number, the same text', { tenant: 'clinic', to: randomPhone(), body: 'Your appointment is at 3pm.' }],
    ] as const) {
      const state = await snapshot();
      assertProblem(await send(sendKey, body, 'reuse-0000001'), 422, 'idempotency-key-reused');
      await assertUnchanged(state, label);
    }
  });

  test('the same key and the same message again is the first answer, and writes nothing either', async () => {
    const body = { tenant: 'clinic', to: randomPhone(), body: 'Reminder: bring your card.' };
    const first = await send(sendKey, body, 'replay-000001');
    assert.equal(first.statusCode, 202, first.body);
    const state = await snapshot();
    const replayed = await send(sendKey, body, 'replay-000001');
    assert.equal(replayed.statusCode, 200, replayed.body);
    assert.equal(replayed.json().id, first.json().id);
    await assertUnchanged(state, 'replay');
  });

  test('bad number, unknown tenant, wrong tenant, no Twilio, bad or oversized body, no key: a 4xx and nothing written', async () => {
    const otherTenantKey = await apiKey(otherTenantId, ['messages:send']);
    const noTwilioKey = await apiKey(noTwilioId, ['messages:send']);
    const cases: Array<[label: string, response: () => ReturnType<typeof send>, status: number, type: string]> = [
      ['bad number', () => send(sendKey, { tenant: 'clinic', to: '+1 415 000', body: 'hi' }, 'refuse-000001'), 400, 'validation-failed'],
      ['number too short for the schema', () => send(sendKey, { tenant: 'clinic', to: '12', body: 'hi' }, 'refuse-000002'), 400, 'validation-failed'],
      ['unknown tenant', () => send(sendKey, { tenant: 'no-such-clinic', to: randomPhone(), body: 'hi' }, 'refuse-000003'), 404, 'not-found'],
      ['a key of another tenant', () => send(otherTenantKey, { tenant: 'clinic', to: randomPhone(), body: 'hi' }, 'refuse-000004'), 404, 'not-found'],
      ['a tenant without Twilio', () => send(noTwilioKey, { tenant: 'no-twilio', to: randomPhone(), body: 'hi' }, 'refuse-000005'), 409, 'provider-not-configured'],
      ['a text over 1600 characters', () => send(sendKey, { tenant: 'clinic', to: randomPhone(), body: 'x'.repeat(1601) }, 'refuse-000006'), 400, 'validation-failed'],
      ['a NUL character in the text', () => send(sendKey, { tenant: 'clinic', to: randomPhone(), body: 'hi\u0000there' }, 'refuse-000007'), 400, 'validation-failed'],
      ['a body over the body limit', () => send(sendKey, undefined, 'refuse-000008', JSON.stringify({ tenant: 'clinic', to: randomPhone(), body: 'x'.repeat(harness.config.bodyLimitBytes) })), 413, 'payload-too-large'],
      ['no Idempotency-Key', () => send(sendKey, { tenant: 'clinic', to: randomPhone(), body: 'hi' }), 400, 'validation-failed'],
      ['no credential', () => send(undefined, { tenant: 'clinic', to: randomPhone(), body: 'hi' }, 'refuse-000009'), 401, 'unauthenticated'],
      ['a forged key', () => send(`${sendKey.slice(0, -4)}AAAA`, { tenant: 'clinic', to: randomPhone(), body: 'hi' }, 'refuse-000010'), 401, 'unauthenticated'],
    ];
    for (const [label, response, status, type] of cases) {
      const state = await snapshot();
      assertProblem(await response(), status, type);
      await assertUnchanged(state, label);
    }
  });

  test('a key without messages:send: 403, and only the access.denied audit entry is written', async () => {
    const readOnly = await apiKey(tenantId, ['conversations:read']);
    const state = await snapshot();
    assertProblem(await send(readOnly, { tenant: 'clinic', to: randomPhone(), body: 'hi' }, 'refuse-000011'), 403, 'forbidden');
    // The denial is recorded on purpose (docs/audit.md): that entry is the only change.
    await assertUnchanged(state, 'missing scope', { audit_events: 1 });
    const [last] = await queryRows<{ action: string; outcome: string }>(harness.db, sql`select action, outcome from audit_events order by seq desc limit 1`);
    assert.deepEqual(last, { action: 'access.denied', outcome: 'denied' });
  });

  test('two concurrent calls with one key and different numbers: one 202, one 422, and only the winner’s rows', async () => {
    const state = await snapshot();
    const responses = await Promise.all([randomPhone(), randomPhone()].map((to) => send(sendKey, { tenant: 'clinic', to, body: `Race ${to}` }, 'race-00000001')));
    assert.deepEqual(responses.map((response) => response.statusCode).sort(), [202, 422], responses.map((response) => response.body).join(' '));
    const winner = responses.find((response) => response.statusCode === 202)!.json() as { id: string };
    const [jobs] = await queryRows<{ n: number | string }>(harness.db, sql`select count(*) as n from jobs where payload::text like ${`%${winner.id}%`}`);
    assert.ok(Number(jobs!.n) >= 1);
    // The winner's send: its contact, conversation, message, jobs and `message.send` audit entry. Nothing of the loser's.
    const afterwards = await rowCounts();
    assert.deepEqual(afterwards, { ...state.counts, contacts: state.counts.contacts! + 1, conversations: state.counts.conversations! + 1, messages: state.counts.messages! + 1, jobs: state.counts.jobs! + Number(jobs!.n), audit_events: state.counts.audit_events! + 1 });
  });
});
