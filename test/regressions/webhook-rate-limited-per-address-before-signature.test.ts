import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { queryRows } from '../../src/store/connection.js';
import { DEFAULT_TWILIO_ACCOUNT } from '../fakes/twilio.js';
import { auditMark } from '../helpers/audit.js';
import { describeEachBackend } from '../helpers/database.js';
import { assertProblem } from '../helpers/problems.js';
import { messageSid, openRelayHarness, randomPhone, TENANT_FROM_NUMBER, type RelayHarness } from '../helpers/relay.js';

/**
 * Issue #13 item 1: the webhook routes are limited per source address before anything else
 * (body, tenant lookup, signature): past CIPHERGATE_WEBHOOK_RATE_LIMIT_PER_MINUTE an address
 * gets 429 `rate-limited` with Retry-After, even for a correctly signed delivery, and the 429s
 * are counted in the metrics but never audited. The address is the one Fastify resolves with
 * trust-proxy: X-Forwarded-For counts only from a trusted proxy, so a forged header does not
 * buy a fresh budget.
 */

const LIMIT = 5;
// Documentation ranges (RFC 5737).
const FLOODER = '198.51.100.20';
const BYSTANDER = '198.51.100.21';
const PROXY = '127.0.0.1';

await describeEachBackend('webhook rate limit per source address', (backend) => {
  let harness: RelayHarness;

  before(async () => {
    harness = await openRelayHarness(backend, { env: { CIPHERGATE_WEBHOOK_RATE_LIMIT_PER_MINUTE: String(LIMIT), CIPHERGATE_TRUST_PROXY: PROXY } });
  });
  after(() => harness.close());

  /** An inbound SMS, correctly signed unless `forged`. */
  function sms(slug: string, from: { remoteAddress: string; forwardedFor?: string }, forged = false) {
    const sid = messageSid();
    return harness.postTwilio(
      slug,
      'sms',
      { MessageSid: sid, SmsSid: sid, AccountSid: DEFAULT_TWILIO_ACCOUNT.accountSid, From: randomPhone(), To: TENANT_FROM_NUMBER, Body: 'hello', NumMedia: '0' },
      {
        remoteAddress: from.remoteAddress,
        ...(forged ? { authToken: 'forged-twilio-auth-token-000000000' } : {}),
        ...(from.forwardedFor ? { headers: { 'x-forwarded-for': from.forwardedFor } } : {}),
      },
    );
  }

  async function inboundMessages(): Promise<number> {
    const [row] = await queryRows<{ n: number }>(harness.db, sql`select count(*)::int as n from messages where direction = 'inbound'`);
    return row!.n;
  }

  async function rateLimitedCount(): Promise<number> {
    const metric = await harness.relay.metrics.webhookRejections.get();
    return metric.values.find((value) => value.labels.provider === 'twilio' && value.labels.reason === 'rate-limited')?.value ?? 0;
  }

  test('past the limit an address gets 429 rate-limited with Retry-After, before the tenant is read or the signature checked; never audited', async () => {
    const tenant = await harness.putTenant();
    const mark = await auditMark(harness);
    for (let attempt = 1; attempt <= LIMIT; attempt++) assertProblem(await sms(tenant.slug, { remoteAddress: FLOODER }, true), 403, 'webhook-rejected');

    let tenantLookups = 0;
    const lookUp = harness.relay.tenants.bySlug.bind(harness.relay.tenants);
    harness.relay.tenants.bySlug = (slug) => {
      tenantLookups += 1;
      return lookUp(slug);
    };
    const stored = await inboundMessages();
    const limitedBefore = await rateLimitedCount();

    const forged = await sms(tenant.slug, { remoteAddress: FLOODER }, true);
    const problem = assertProblem(forged, 429, 'rate-limited');
    const retryAfter = Number(forged.headers['retry-after']);
    assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60, `Retry-After ${forged.headers['retry-after']}`);
    assert.equal(problem.retryAfterSeconds, retryAfter);
    assert.match(problem.detail, /from this address/);
    // A genuine delivery from the same address waits too: the limit comes before the signature.
    assertProblem(await sms(tenant.slug, { remoteAddress: FLOODER }), 429, 'rate-limited');
    // A made-up tenant as well: no lookup for it either.
    assertProblem(await sms('no-such-tenant', { remoteAddress: FLOODER }, true), 429, 'rate-limited');
    // An untrusted client's own X-Forwarded-For is ignored: no fresh budget from a forged header.
    assertProblem(await sms(tenant.slug, { remoteAddress: FLOODER, forwardedFor: '203.0.113.99' }, true), 429, 'rate-limited');

    assert.equal(tenantLookups, 0, 'no tenant was looked up for a limited request');
    assert.equal(await inboundMessages(), stored, 'nothing stored');
    assert.equal(await rateLimitedCount(), limitedBefore + 4, 'each 429 is counted in the metrics');

    // Another address is not held up by the flooder.
    assert.equal((await sms(tenant.slug, { remoteAddress: BYSTANDER })).statusCode, 200);
    assert.equal(tenantLookups, 1);

    await harness.relay.rejectionAudit.flush({ all: true });
    const events = await queryRows<{ action: string; tenant_id: string | null; source_ip: string | null; details: Record<string, unknown> }>(
      harness.db,
      sql`select action, tenant_id, source_ip, details from audit_events where seq > ${mark} order by seq`,
    );
    assert.deepEqual(
      events.map((event) => [event.action, event.tenant_id, event.source_ip, event.details.reason, event.details.count]),
      [['webhook.rejected', tenant.id, FLOODER, 'bad-signature', LIMIT]],
      'the five refusals are one aggregated entry; the 429s wrote nothing',
    );
  });

  test('behind a trusted proxy each client address has its own budget', async () => {
    const tenant = await harness.putTenant();
    for (let attempt = 1; attempt <= LIMIT; attempt++) {
      assertProblem(await sms(tenant.slug, { remoteAddress: PROXY, forwardedFor: '203.0.113.30' }, true), 403, 'webhook-rejected');
    }
    assertProblem(await sms(tenant.slug, { remoteAddress: PROXY, forwardedFor: '203.0.113.30' }), 429, 'rate-limited');
    // The proxy's other clients (and the proxy itself) are counted apart.
    assert.equal((await sms(tenant.slug, { remoteAddress: PROXY, forwardedFor: '203.0.113.31' })).statusCode, 200);
    assert.equal((await sms(tenant.slug, { remoteAddress: PROXY })).statusCode, 200);
  });
});
