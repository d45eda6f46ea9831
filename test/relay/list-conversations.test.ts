import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { MachineAuth } from '../../src/identity/machines/machine-auth.js';
import type { TenantContext } from '../../src/relay/tenant-directory.js';
import { queryRows } from '../../src/store/connection.js';
import { describeEachBackend, tablesState } from '../helpers/database.js';
import { assertProblem } from '../helpers/problems.js';
import { openRelayHarness, randomPhone, type RelayHarness } from '../helpers/relay.js';
import { inboundSenderOf } from '../../src/domain/normalise.js';

/** The inbound sender of a test number, as the webhook parsers make it. */
function senderOf(phone: string) {
  const sender = inboundSenderOf(phone);
  assert.ok(sender, phone);
  return sender;
}

const TABLES = ['contacts', 'conversations', 'messages', 'jobs'] as const;

interface ListItem {
  id: string;
  tenant: string;
  channel: string;
  contactMasked: string;
  aiPaused: boolean;
  optedOut: boolean;
  lastMessageAt: string;
}

/**
 * `GET /api/v1/conversations` without a number: a tenant's conversations, latest activity first,
 * filtered and paged by an opaque cursor, showing nothing sealed; and `GET …/{id}/messages`
 * carrying its contact, opened and audited with the bodies. Abuse: no credential, a key without
 * the scope, another tenant (user and key), bad, tampered and foreign cursors, limits out of
 * range, a reversed date range.
 */
await describeEachBackend('listing conversations', (backend) => {
  let harness: RelayHarness;
  let tenant: TenantContext;
  let other: TenantContext;
  const phones: string[] = [];
  const base = Date.parse('2026-03-01T10:00:00.000Z');
  const at = (minutes: number) => new Date(base + minutes * 60_000);

  before(async () => {
    harness = await openRelayHarness(backend);
    tenant = await harness.putTenant('listing');
    other = await harness.putTenant('listing-other');
    // Five SMS conversations, one a minute; the third contact opts out, the fourth is paused;
    // one Podium conversation last of all.
    for (let index = 0; index < 5; index += 1) {
      const phone = randomPhone();
      phones.push(phone);
      await harness.relay.receive(tenant, {
        channel: 'sms',
        dedupeKey: `twilio:list-${randomUUID()}`,
        providerMessageId: `SM${index}`,
        sender: senderOf(phone),
        body: `Secret body number ${index}`,
        receivedAt: at(index),
        ...(index === 2 ? { optChange: 'opt-out' as const } : {}),
      });
    }
    const [paused] = await queryRows<{ id: string }>(harness.db, sql`select contact_id as id from conversations where tenant_id = ${tenant.id} and last_message_at = ${at(3)}`);
    await harness.relay.conversations.setAiPaused(paused!.id, true);
    await harness.relay.receive(tenant, { channel: 'podium', dedupeKey: `podium:${randomUUID()}`, providerMessageId: 'pod-1', sender: senderOf(randomPhone()), body: 'Podium secret', providerConversationId: 'pc-1', receivedAt: at(10) });
    await harness.relay.receive(other, { channel: 'sms', dedupeKey: `twilio:${randomUUID()}`, providerMessageId: 'SMx', sender: senderOf(randomPhone()), body: 'Other tenant secret', receivedAt: at(20) });
  });
  after(async () => harness?.close());

  async function apiKey(tenantId: string, scopes: string[]): Promise<string> {
    const { key } = await new MachineAuth(harness.identity).createKey(null, { name: 'list', tenantId, scopes: scopes as never, expiresAt: null });
    return key;
  }
  const list = (token: string | undefined, query: string) => harness.request({ method: 'GET', url: `/api/v1/conversations?${query}`, ...(token ? { token } : {}) });

  test('latest activity first, paged by an opaque cursor, with masked numbers and no sealed content', async () => {
    const key = await apiKey(tenant.id, ['conversations:read']);
    const seen: ListItem[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const response = await list(key, `tenant=listing&limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      assert.equal(response.statusCode, 200, response.body);
      for (const phone of phones) {
        assert.ok(!response.body.includes(phone) && !response.body.includes(phone.slice(2)), 'no number in a list');
        assert.ok(!response.body.includes(phone.slice(-6)), 'no more than the last 4 digits');
      }
      assert.ok(!/secret/i.test(response.body), 'no body in a list');
      const page = response.json() as { conversations: ListItem[]; nextCursor: string | null };
      seen.push(...page.conversations);
      cursor = page.nextCursor;
      pages += 1;
    } while (cursor && pages < 10);
    assert.equal(pages, 3);
    assert.equal(seen.length, 6);
    assert.deepEqual(
      seen.map((item) => item.lastMessageAt),
      [10, 4, 3, 2, 1, 0].map((minute) => at(minute).toISOString()),
    );
    assert.equal(seen[0]!.channel, 'podium');
    assert.equal(new Set(seen.map((item) => item.id)).size, 6);
    // The mask: fixed bullets and the last 4 digits, nothing of the country code or the length.
    assert.equal(seen[1]!.contactMasked, `\u2022\u2022\u2022\u2022${phones[4]!.slice(-4)}`);
    assert.deepEqual(
      seen.map((item) => [item.aiPaused, item.optedOut]),
      [[false, false], [false, false], [true, false], [false, true], [false, false], [false, false]],
    );
    const audited = await queryRows<{ n: number }>(harness.db, sql`select count(*)::int as n from audit_events where action = 'conversation.list' and tenant_id = ${tenant.id} and actor_type = 'api_key'`);
    assert.equal(audited[0]!.n, 3, 'one audit entry per page, naming the tenant and the key');
  });

  test('filters: channel, date range, AI paused, opted out, phone', async () => {
    const key = await apiKey(tenant.id, ['conversations:read']);
    const ids = async (query: string) => {
      const response = await list(key, `tenant=listing&${query}`);
      assert.equal(response.statusCode, 200, response.body);
      return (response.json().conversations as ListItem[]).map((item) => item.lastMessageAt);
    };
    assert.deepEqual(await ids('channel=podium'), [at(10).toISOString()]);
    assert.equal((await ids('channel=sms')).length, 5);
    assert.deepEqual(await ids(`since=${at(1).toISOString()}&until=${at(3).toISOString()}`), [at(2), at(1)].map((date) => date.toISOString()));
    assert.deepEqual(await ids('aiPaused=true'), [at(3).toISOString()]);
    assert.deepEqual(await ids('optedOut=true'), [at(2).toISOString()]);
    assert.equal((await ids('optedOut=false&aiPaused=false&channel=sms')).length, 3);
    assert.deepEqual(await ids(`phone=${encodeURIComponent(phones[1]!)}`), [at(1).toISOString()]);
  });

  test('abuse: no credential, no scope, another tenant, bad or tampered cursors, limits out of range; nothing written', async () => {
    const key = await apiKey(tenant.id, ['conversations:read']);
    const first = (await list(key, 'tenant=listing&limit=1')).json() as { nextCursor: string };
    const state = await tablesState(harness, TABLES);
    assertProblem(await list(undefined, 'tenant=listing'), 401, 'unauthenticated');
    assertProblem(await list(await apiKey(tenant.id, ['messages:send']), 'tenant=listing'), 403, 'forbidden');
    const plain = await harness.createUser({ role: 'user' });
    assertProblem(await list((await harness.signIn(plain)).accessToken, 'tenant=listing'), 403, 'forbidden');
    // Another tenant reads as absent, for a key and for a client user, and the probe is audited.
    assertProblem(await list(await apiKey(other.id, ['conversations:read']), 'tenant=listing'), 404, 'not-found');
    const client = await harness.createUser({ role: 'client', tenantId: other.id });
    const clientList = await list((await harness.signIn(client)).accessToken, 'tenant=listing');
    assertProblem(clientList, 404, 'not-found');
    assert.ok(!clientList.body.includes('\u2022'));
    const denials = await queryRows<{ n: number }>(harness.db, sql`select count(*)::int as n from audit_events where action = 'access.denied' and actor_id = ${client.id} and target_id = ${tenant.id}`);
    assert.equal(denials[0]!.n, 1);
    // Cursors: garbage, tampered (one character of the position or of the MAC), made for other
    // filters, made for another tenant.
    const [position, mac] = first.nextCursor.split('.') as [string, string];
    const flip = (text: string, index: number) => `${text.slice(0, index)}${text[index] === 'A' ? 'B' : 'A'}${text.slice(index + 1)}`;
    for (const cursor of ['nope', 'bm9wZQ', `${position}.`, flip(position, 3) + `.${mac}`, `${position}.${flip(mac, 0)}`, `${Buffer.from(`${at(99).toISOString()}|${randomUUID()}`).toString('base64url')}.${mac}`]) {
      const problem = assertProblem(await list(key, `tenant=listing&limit=1&cursor=${cursor}`), 400, 'validation-failed');
      assert.match(problem.detail, /cursor/);
    }
    assertProblem(await list(key, `tenant=listing&limit=1&channel=sms&cursor=${first.nextCursor}`), 400, 'validation-failed');
    const staff = (await harness.signIn(await harness.createUser({ role: 'employee' }))).accessToken;
    assert.equal((await list(staff, `tenant=listing&limit=1&cursor=${first.nextCursor}`)).statusCode, 200, 'the same cursor, tenant and filters work for another caller of the tenant');
    assertProblem(await list(staff, `tenant=listing-other&limit=1&cursor=${first.nextCursor}`), 400, 'validation-failed');
    // Limits and ranges.
    for (const query of ['limit=0', 'limit=101', 'limit=-1', 'limit=abc', 'channel=fax', 'aiPaused=maybe', 'since=yesterday', 'unknown=1', `since=${at(5).toISOString()}&until=${at(5).toISOString()}`]) {
      assertProblem(await list(key, `tenant=listing&${query}`), 400, 'validation-failed');
    }
    assertProblem(await list(key, 'limit=5'), 400, 'validation-failed');
    assertProblem(await list(key, 'tenant=no-such-tenant'), 404, 'not-found');
    assert.equal(await tablesState(harness, TABLES), state);
  });

  test('reading a conversation carries its contact, opened, with one audit entry for the read', async () => {
    const key = await apiKey(tenant.id, ['conversations:read']);
    const [conversation] = (await list(key, `tenant=listing&phone=${encodeURIComponent(phones[0]!)}`)).json().conversations as ListItem[];
    const before = await queryRows<{ n: number }>(harness.db, sql`select count(*)::int as n from audit_events where target_id = ${conversation!.id}`);
    const read = await harness.request({ method: 'GET', url: `/api/v1/conversations/${conversation!.id}/messages`, token: key });
    assert.equal(read.statusCode, 200, read.body);
    assert.equal(read.json().contact.phone, phones[0]);
    assert.equal(read.json().messages[0].body, 'Secret body number 0');
    const entries = await queryRows<{ action: string; actor_type: string; tenant_id: string; details: { contact?: boolean } }>(
      harness.db,
      sql`select action, actor_type, tenant_id, details from audit_events where target_id = ${conversation!.id} order by seq`,
    );
    assert.equal(entries.length, before[0]!.n + 1);
    const entry = entries.at(-1)!;
    assert.deepEqual([entry.action, entry.actor_type, entry.tenant_id, entry.details.contact], ['conversation.read', 'api_key', tenant.id, true]);
  });
});
