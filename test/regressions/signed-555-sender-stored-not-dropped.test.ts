import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { queryRows } from '../../src/store/connection.js';
import { describeEachBackend } from '../helpers/database.js';
import { openRelayHarness, type RelayHarness } from '../helpers/relay.js';

/**
 * Issue 15: a correctly signed Twilio delivery from +1 555 123 0001 (the docs' own example
 * number, which libphonenumber does not call valid) was answered 200 and dropped: nothing
 * stored, logged or audited. It must be stored, flagged as not E.164, and readable.
 */
await describeEachBackend('a signed delivery from a 555 number is stored, not dropped', (backend) => {
  let harness: RelayHarness;
  before(async () => {
    harness = await openRelayHarness(backend);
  });
  after(() => harness.close());

  test('stored, flagged, audited and found again by the number as received', async () => {
    const tenant = await harness.putTenant();
    const { response } = await harness.sendSms(tenant.slug, '+1 555 123 0001', 'Is the clinic open on Saturday?');
    assert.equal(response.statusCode, 200);
    const stored = await queryRows<{ sender_kind: string }>(
      harness.db,
      sql`select c.sender_kind from messages m join contacts c on c.id = m.contact_id where m.tenant_id = ${tenant.id}`,
    );
    assert.deepEqual(stored, [{ sender_kind: 'digits' }]);
    const found = await harness.relay.conversations.findByPhone(tenant.id, '+1 555 123 0001');
    assert.equal(found.length, 1);
    await harness.relay.rejectionAudit.flush({ all: true });
    const audited = (await harness.auditActions()).filter((entry) => entry.action === 'webhook.sender-not-e164');
    assert.deepEqual(
      audited.map((entry) => entry.details),
      [{ provider: 'twilio', kind: 'digits', count: 1, firstAt: audited[0]!.details['firstAt'], lastAt: audited[0]!.details['lastAt'] }],
    );
  });
});
