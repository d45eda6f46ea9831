import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { GENESIS_HASH, canonicalEntry, chainHash } from '../../src/store/audit-chain.js';
import { appendAuditEvent, auditChainContains, verifyAuditChain } from '../../src/store/audit-trail.js';
import { queryRows, type Db } from '../../src/store/connection.js';
import { REPO_ROOT } from '../helpers/cli.js';
import { createTestDatabase, describeEachBackend, type TestDatabase } from '../helpers/database.js';

/** An attacker with owner rights on the database: triggers off for this transaction only. */
async function tamper(db: Db, statement: ReturnType<typeof sql>): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.execute(sql`set local session_replication_role = replica`);
    await tx.execute(statement);
  });
}

async function appendSome(db: Db, count: number, tenantId: string | null = null) {
  const results = [];
  for (let index = 0; index < count; index += 1) {
    results.push(
      await appendAuditEvent(db, {
        actor: { type: 'user', id: `user-${index}` },
        action: 'auth.login',
        target: { type: 'session', id: `s-${index}` },
        tenantId,
        sourceIp: '203.0.113.7',
        outcome: index % 3 === 0 ? 'failure' : 'success',
        details: { attempt: index, mfa: index % 2 === 0, reason: null },
      }),
    );
  }
  return results;
}

test('the hash of an entry is SHA-256(previous hash ‖ canonical entry)', () => {
  const entry = {
    id: '00000000-0000-4000-8000-000000000001',
    occurredAt: new Date('2026-01-02T03:04:05.678Z'),
    actorType: 'system' as const,
    actorId: null,
    action: 'system.start',
    targetType: null,
    targetId: null,
    tenantId: null,
    sourceIp: null,
    outcome: 'success' as const,
    details: { b: 2, a: 'x' },
  };
  assert.equal(canonicalEntry(entry), '[1,"00000000-0000-4000-8000-000000000001","2026-01-02T03:04:05.678Z","system",null,"system.start",null,null,null,null,"success",[["a","x"],["b",2]]]');
  assert.equal(chainHash(GENESIS_HASH, entry), chainHash(GENESIS_HASH, { ...entry, details: { a: 'x', b: 2 } }), 'detail order does not matter');
  assert.notEqual(chainHash(GENESIS_HASH, entry), chainHash('1'.repeat(64), entry), 'the previous hash is bound in');
});

await describeEachBackend('audit trail', (backend) => {
  let testDb: TestDatabase;
  let db: Db;

  before(async () => {
    testDb = await createTestDatabase(backend);
    db = testDb.database.db;
  });
  after(async () => testDb.cleanup());

  test('an empty trail verifies as intact', async () => {
    assert.deepEqual(await verifyAuditChain(db), { intact: true, entries: 0, headHash: GENESIS_HASH });
  });

  test('appended entries form one chain that verifies, across pages', async () => {
    const appended = await appendSome(db, 7, 'tenant-a');
    const result = await verifyAuditChain(db, 3);
    assert.deepEqual(result, { intact: true, entries: 7, headHash: appended.at(-1)!.hash });
    assert.equal(await auditChainContains(db, appended[2]!.hash), true);
  });

  test('concurrent appends never fork the chain', async () => {
    await Promise.all(
      Array.from({ length: 40 }, (_, index) =>
        appendAuditEvent(db, { actor: { type: 'system' }, action: 'job.retry', outcome: 'success', details: { index } }),
      ),
    );
    const result = await verifyAuditChain(db);
    assert.equal(result.intact, true);
    assert.equal(result.entries, 47);
  });

  test('an append inside a rolled-back transaction leaves no trace', async () => {
    await assert.rejects(
      db.transaction(async (tx) => {
        await appendAuditEvent(tx as unknown as Db, { actor: { type: 'system' }, action: 'keys.rewrap', outcome: 'success' });
        throw new Error('roll back');
      }),
      /roll back/,
    );
    const [row] = await queryRows<{ n: number }>(db, sql`select count(*)::int as n from audit_events where action = 'keys.rewrap'`);
    assert.equal(row!.n, 0);
    assert.equal((await verifyAuditChain(db)).intact, true);
  });

  test('the database refuses UPDATE, DELETE and TRUNCATE of audit rows', async () => {
    // Drizzle wraps the driver's error; the database's own message is its cause.
    const refusedByDatabase = (error: Error) => /audit_events is append-only/.test(String((error.cause as Error | undefined)?.message ?? error.message));
    await assert.rejects(db.execute(sql`update audit_events set action = 'x' where seq = 1`), refusedByDatabase);
    await assert.rejects(db.execute(sql`delete from audit_events where seq = 1`), refusedByDatabase);
    await assert.rejects(db.execute(sql`truncate audit_events`), refusedByDatabase);
    assert.equal((await verifyAuditChain(db)).intact, true);
  });

  test('an altered entry is caught at that entry', async () => {
    const fresh = await createTestDatabase(backend);
    try {
      const appended = await appendSome(fresh.database.db, 5);
      await tamper(fresh.database.db, sql`update audit_events set outcome = 'success' where seq = 4`);
      const result = await verifyAuditChain(fresh.database.db);
      assert.equal(result.intact, false);
      assert.deepEqual(!result.intact && result.brokenAt, { seq: 4, id: appended[3]!.id, reason: 'its content does not match its hash (the entry was altered)' });
      assert.equal(!result.intact && result.entries, 3);
    } finally {
      await fresh.cleanup();
    }
  });

  test('an altered entry whose hash was recomputed is caught at the next link', async () => {
    const fresh = await createTestDatabase(backend);
    try {
      await appendSome(fresh.database.db, 5);
      // A careful attacker rewrites the row and its own hash; the next entry's link still names the old hash.
      await tamper(fresh.database.db, sql`update audit_events set details = '{"attempt": 99}'::jsonb where seq = 2`);
      const [row] = await queryRows<Record<string, any>>(fresh.database.db, sql`select * from audit_events where seq = 2`);
      const rehashed = chainHash(row!.prev_hash, {
        id: row!.id, occurredAt: new Date(row!.occurred_at), actorType: row!.actor_type, actorId: row!.actor_id, action: row!.action,
        targetType: row!.target_type, targetId: row!.target_id, tenantId: row!.tenant_id, sourceIp: row!.source_ip, outcome: row!.outcome,
        details: { attempt: 99 },
      });
      await tamper(fresh.database.db, sql`update audit_events set hash = ${rehashed} where seq = 2`);
      const result = await verifyAuditChain(fresh.database.db);
      assert.equal(!result.intact && result.brokenAt.seq, 3);
      assert.match(!result.intact ? result.brokenAt.reason : '', /previous-hash link/);
    } finally {
      await fresh.cleanup();
    }
  });

  test('a deleted entry is caught at the entry after it', async () => {
    const fresh = await createTestDatabase(backend);
    try {
      await appendSome(fresh.database.db, 5);
      await tamper(fresh.database.db, sql`delete from audit_events where seq = 3`);
      const result = await verifyAuditChain(fresh.database.db);
      assert.equal(!result.intact && result.brokenAt.seq, 4);
    } finally {
      await fresh.cleanup();
    }
  });

  test('reordered entries are caught', async () => {
    const fresh = await createTestDatabase(backend);
    try {
      await appendSome(fresh.database.db, 5);
      await tamper(fresh.database.db, sql`update audit_events set seq = case seq when 2 then 1000 else seq end where seq in (2)`);
      await tamper(fresh.database.db, sql`update audit_events set seq = 2 where seq = 4`);
      await tamper(fresh.database.db, sql`update audit_events set seq = 4 where seq = 1000`);
      const result = await verifyAuditChain(fresh.database.db);
      assert.equal(!result.intact && result.brokenAt.seq, 2);
    } finally {
      await fresh.cleanup();
    }
  });

  test('entries cut off the end are caught against a head recorded earlier', async () => {
    const fresh = await createTestDatabase(backend);
    try {
      const appended = await appendSome(fresh.database.db, 5);
      const recordedHead = appended.at(-1)!.hash;
      await tamper(fresh.database.db, sql`delete from audit_events where seq >= 4`);
      assert.equal((await verifyAuditChain(fresh.database.db)).intact, true, 'the chain alone cannot see a cut tail');
      assert.equal(await auditChainContains(fresh.database.db, recordedHead), false, 'the recorded head is gone');
    } finally {
      await fresh.cleanup();
    }
  });

  if (backend === 'postgres') {
    test('appends from several processes at once keep one unbroken chain', async () => {
      const fresh = await createTestDatabase('postgres');
      try {
        const children = [1, 2, 3].map((n) =>
          spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'test/helpers/audit-append-worker.ts'), fresh.url!, '30', `proc-${n}`], {
            cwd: REPO_ROOT,
            stdio: ['ignore', 'ignore', 'inherit'],
          }),
        );
        const codes = await Promise.all(children.map(async (child) => (await once(child, 'exit'))[0]));
        assert.deepEqual(codes, [0, 0, 0]);
        const result = await verifyAuditChain(fresh.database.db);
        assert.deepEqual({ intact: result.intact, entries: result.entries }, { intact: true, entries: 90 });
      } finally {
        await fresh.cleanup();
      }
    });
  }
});
