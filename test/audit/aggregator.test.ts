import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { AuditAggregator, OVERFLOW_REASON, type AggregatedEvent } from '../../src/audit/aggregator.js';
import { verifyAuditChain } from '../../src/store/audit-trail.js';
import { queryRows, type Db } from '../../src/store/connection.js';
import { auditMark } from '../helpers/audit.js';
import { createTestDatabase, describeEachBackend, type TestDatabase } from '../helpers/database.js';
import { captureLogs } from '../helpers/log-capture.js';

/**
 * The aggregated audit entries of refusals (src/audit/aggregator.ts): one row per key and
 * minute with its count, written when the minute ends or at stop, retried after a failed write,
 * and bounded in memory however many keys arrive.
 */

const MINUTE = 60_000;
/** 12:00:00.000 UTC of some day: minute boundaries are easy to read in the assertions. */
const NOON = Date.UTC(2030, 0, 15, 12, 0, 0);

function forged(tenantId: string | null, reason = 'bad-signature'): AggregatedEvent {
  return { action: 'webhook.rejected', outcome: 'failure', tenantId, labels: { provider: 'twilio', reason } };
}

/** A clock the test moves by hand. */
function manualClock(start: number) {
  let now = start;
  return { now: () => now, set: (at: number) => void (now = at) };
}

interface Row {
  action: string;
  outcome: string;
  actor_type: string;
  tenant_id: string | null;
  source_ip: string | null;
  details: Record<string, unknown>;
}

async function rowsSince(db: Db, mark: number): Promise<Row[]> {
  return queryRows<Row>(db, sql`select action, outcome, actor_type, tenant_id, source_ip, details from audit_events where seq > ${mark} order by seq`);
}

/** A Db whose transactions fail while `failing` is set (a constraint error, not an outage, so it is logged). */
function flakyDb(real: Db) {
  const control: { failing: boolean; attempts: number; hold?: Promise<void> } = { failing: false, attempts: 0 };
  const db = new Proxy(real, {
    get(target, property, receiver) {
      if (property !== 'transaction') return Reflect.get(target, property, receiver);
      return (...args: unknown[]) => {
        control.attempts += 1;
        const failure = () => Promise.reject(Object.assign(new Error('insert failed: params 198.51.100.23'), { code: '23514' }));
        if (control.failing) return control.hold ? control.hold.then(failure) : failure();
        return (target.transaction as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { db, control };
}

await describeEachBackend('aggregated audit entries', (backend) => {
  let testDb: TestDatabase;
  let db: Db;

  before(async () => {
    testDb = await createTestDatabase(backend);
    db = testDb.database.db;
  });
  after(() => testDb.cleanup());

  test('a minute of refusals is one row per key with count, first and last time; nothing is written before the minute ends', async () => {
    const clock = manualClock(NOON + 5_000);
    const aggregator = new AuditAggregator(db, { logger: captureLogs().logger, now: clock.now });
    const mark = await auditMark({ db });
    for (let index = 0; index < 500; index++) aggregator.count(forged('tenant-a'), '198.51.100.7');
    clock.set(NOON + 42_000);
    aggregator.count(forged('tenant-a'), '198.51.100.7');
    for (let index = 0; index < 3; index++) aggregator.count(forged(null, 'unknown-tenant'), `198.51.100.${10 + index}`);
    // Labels in another order are the same key.
    aggregator.count({ action: 'webhook.rejected', outcome: 'failure', tenantId: 'tenant-a', labels: { reason: 'bad-signature', provider: 'twilio' } }, '198.51.100.7');
    assert.equal(aggregator.pendingEntries, 2);

    await aggregator.flush();
    assert.deepEqual(await rowsSince(db, mark), [], 'the minute is not over yet');

    clock.set(NOON + MINUTE + 1);
    await aggregator.flush();
    const rows = await rowsSince(db, mark);
    assert.deepEqual(rows, [
      {
        action: 'webhook.rejected',
        outcome: 'failure',
        actor_type: 'anonymous',
        tenant_id: 'tenant-a',
        source_ip: '198.51.100.7',
        details: { provider: 'twilio', reason: 'bad-signature', count: 502, firstAt: new Date(NOON + 5_000).toISOString(), lastAt: new Date(NOON + 42_000).toISOString() },
      },
      {
        action: 'webhook.rejected',
        outcome: 'failure',
        actor_type: 'anonymous',
        tenant_id: null,
        // Three addresses: no single one to name.
        source_ip: null,
        details: { provider: 'twilio', reason: 'unknown-tenant', count: 3, firstAt: new Date(NOON + 42_000).toISOString(), lastAt: new Date(NOON + 42_000).toISOString() },
      },
    ]);
    assert.equal(aggregator.pendingEntries, 0);
    await aggregator.flush();
    assert.equal((await rowsSince(db, mark)).length, 2, 'written once');
    assert.equal((await verifyAuditChain(db)).intact, true);
  });

  test('the same key in the next minute is another row; stop() writes what is still counting', async () => {
    const clock = manualClock(NOON + 50_000);
    const aggregator = new AuditAggregator(db, { logger: captureLogs().logger, now: clock.now });
    const mark = await auditMark({ db });
    aggregator.count(forged('tenant-b'), '203.0.113.1');
    clock.set(NOON + MINUTE + 10_000);
    aggregator.count(forged('tenant-b'), '203.0.113.1');
    aggregator.count(forged('tenant-b'), '203.0.113.1');
    await aggregator.flush();
    assert.deepEqual((await rowsSince(db, mark)).map((row) => row.details.count), [1]);
    await aggregator.stop();
    assert.deepEqual((await rowsSince(db, mark)).map((row) => row.details.count), [1, 2]);
    assert.equal(aggregator.pendingEntries, 0);
  });

  test('past maxKeys, new keys are counted in one "other" entry per action: memory stays bounded, no count is lost', async () => {
    const clock = manualClock(NOON);
    const aggregator = new AuditAggregator(db, { logger: captureLogs().logger, now: clock.now, maxKeys: 5 });
    const mark = await auditMark({ db });
    for (let index = 0; index < 1000; index++) aggregator.count(forged(`tenant-${index}`), '192.0.2.1');
    assert.equal(aggregator.pendingEntries, 6, 'five keys and the overflow entry');
    await aggregator.stop();
    const rows = await rowsSince(db, mark);
    assert.equal(rows.length, 6);
    const overflow = rows.find((row) => row.details.reason === OVERFLOW_REASON)!;
    assert.deepEqual([overflow.action, overflow.tenant_id, overflow.details.count, overflow.details.provider], ['webhook.rejected', null, 995, undefined]);
    assert.equal(rows.reduce((sum, row) => sum + Number(row.details.count), 0), 1000);
  });

  test('a failed write keeps the entries for the next tick, logs no address, and counts made meanwhile are merged', async () => {
    const clock = manualClock(NOON);
    const { db: flaky, control } = flakyDb(db);
    const logs = captureLogs();
    const aggregator = new AuditAggregator(flaky, { logger: logs.logger, now: clock.now });
    const mark = await auditMark({ db });
    aggregator.count(forged('tenant-c'), '198.51.100.23');
    aggregator.count(forged('tenant-d'), '198.51.100.23');
    clock.set(NOON + MINUTE);
    control.failing = true;
    await aggregator.flush();
    assert.equal(control.attempts, 1, 'the run stops at the first failure');
    assert.equal(aggregator.pendingEntries, 2);
    assert.deepEqual(await rowsSince(db, mark), []);
    assert.match(logs.text(), /could not write aggregated audit entries/);
    assert.ok(!logs.text().includes('198.51.100.23'), 'the log line names no address');

    control.failing = false;
    await aggregator.flush();
    assert.deepEqual(
      (await rowsSince(db, mark)).map((row) => [row.tenant_id, row.details.count]).sort(),
      [
        ['tenant-c', 1],
        ['tenant-d', 1],
      ],
    );

    // A stop whose write fails while more of the same key is counted: both are kept, as one.
    let release!: () => void;
    control.hold = new Promise<void>((resolve) => (release = resolve));
    control.failing = true;
    aggregator.count(forged('tenant-e'), '198.51.100.23');
    const stopping = aggregator.stop();
    await new Promise((resolve) => setImmediate(resolve));
    aggregator.count(forged('tenant-e'), '198.51.100.24');
    release();
    await stopping;
    assert.equal(aggregator.pendingEntries, 1);
    control.failing = false;
    await aggregator.stop();
    const [merged] = (await rowsSince(db, mark)).filter((row) => row.tenant_id === 'tenant-e');
    assert.deepEqual([merged!.details.count, merged!.source_ip], [2, null]);
  });
});
