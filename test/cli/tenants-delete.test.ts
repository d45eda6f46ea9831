import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import { and, eq, sql } from 'drizzle-orm';
import { openSealingRuntime, type SealingRuntime } from '../../src/cli/runtime.js';
import { parseTenantDocument } from '../../src/config/tenant-document.js';
import { ScopeDestroyedError, SealOpenError } from '../../src/seal/errors.js';
import { openSealing } from '../../src/runtime/sealing.js';
import { SYSTEM_SCOPE } from '../../src/seal/sealed-fields.js';
import { queryRows } from '../../src/store/connection.js';
import { destroyTenantKeys, tenantRowsWhere } from '../../src/store/repositories/tenant-shred.js';
import { TenantRepository } from '../../src/store/repositories/tenants.js';
import { TenantDirectory } from '../../src/relay/tenant-directory.js';
import { contactsSealed, messagesSealed, usersSealed } from '../../src/store/sealed-tables.js';
import {
  airtableCursors,
  apiKeys,
  auditEvents,
  contacts,
  conversations,
  dataKeys,
  importRuns,
  jobs,
  messages,
  refreshTokens,
  sessions,
  tenants,
  users,
} from '../../src/store/schema.js';
import { assertOneLine, stopChildren, type CliResult } from '../helpers/cli.js';
import { openCliWorkspace, type CliWorkspace } from '../helpers/cli-identity.js';
import { describeEachBackend } from '../helpers/database.js';

/**
 * `ciphergate tenants delete SLUG --shred`: step 1 destroys the tenant's data keys (everything
 * sealed for it is unreadable from that commit on), step 2 removes its rows. Run as an operator
 * runs it, against a data dir (PGlite) and a PostgreSQL database; rows are seeded and checked
 * in this process between CLI runs.
 */

after(stopChildren);

const CANARY = 'canary-shred';

function tenantJson(slug: string): string {
  return JSON.stringify({
    name: `Tenant ${slug}`,
    twilio: { accountSid: `AC${'cd'.repeat(16)}`, authToken: `${CANARY}-twilio-${slug}`, fromNumber: '+15550000001' },
    openai: { apiKey: `${CANARY}-openai-${slug}`, model: 'gpt-4o-mini' },
  });
}

interface Seeded {
  tenantId: string;
  contactId: string;
  messageIds: string[];
  phone: string;
  bodies: string[];
}

/** Rows in every table that can hold a tenant's data, the way the relay and identity write them. */
async function seedTenant(runtime: SealingRuntime, slug: string): Promise<Seeded> {
  const { db } = runtime.database;
  const { fields } = runtime.sealing;
  const [tenant] = await db.select({ id: tenants.id }).from(tenants).where(eq(tenants.slug, slug));
  const tenantId = tenant!.id;
  const now = new Date();
  const contactId = randomUUID();
  const phone = `+1415555${String(Math.floor(Math.random() * 10_000)).padStart(4, '0')}`;
  await db.insert(contacts).values({ id: contactId, tenantId, ...fields.sealRow(contactsSealed, { scope: tenantId, id: contactId }, { phone, name: `${CANARY}-name-${slug}` }), createdAt: now } as never);
  const conversationId = randomUUID();
  await db.insert(conversations).values({ id: conversationId, tenantId, contactId, channel: 'sms', createdAt: now, lastMessageAt: now });
  const messageIds = [randomUUID(), randomUUID()];
  const bodies = messageIds.map((_, index) => `${CANARY}-body-${slug}-${index}`);
  for (const [index, id] of messageIds.entries()) {
    await db.insert(messages).values({
      id,
      tenantId,
      contactId,
      conversationId,
      direction: index === 0 ? 'inbound' : 'outbound',
      author: index === 0 ? 'contact' : 'api',
      ...fields.sealRow(messagesSealed, { scope: tenantId, id }, { body: bodies[index]! }),
      dedupeKey: index === 0 ? `twilio:SM${randomBytes(16).toString('hex')}` : `api:key:${randomUUID()}`,
      status: 'received',
      statusRank: 0,
      createdAt: now,
      updatedAt: now,
    } as never);
  }
  const job = (tenant: string | null, payload: Record<string, string>) => ({
    id: randomUUID(),
    kind: 'send',
    tenantId: tenant,
    payload,
    state: 'pending' as const,
    maxAttempts: 5,
    runAt: new Date(now.getTime() + 3_600_000),
    createdAt: now,
    updatedAt: now,
  });
  // One job as the relay writes it, two that name the tenant only in their payload.
  await db.insert(jobs).values([job(tenantId, { messageId: messageIds[1]! }), job(null, { tenantId }), job(null, { messageId: messageIds[0]! })]);
  await db.insert(airtableCursors).values({ tenantId, webhookId: 'achABCDEFGHIJKLMN', cursor: 7, updatedAt: now });
  await db.insert(importRuns).values({ id: randomUUID(), tenantId, source: 'jsonl', state: 'done', startedAt: now, updatedAt: now });
  const apiKeyId = randomUUID();
  await db.insert(apiKeys).values({ id: apiKeyId, name: 'crm', keyHash: randomBytes(32).toString('hex'), hint: 'abcd', tenantId, scopes: ['conversations:read'], createdAt: now });
  const userId = randomUUID();
  await db.insert(users).values({
    id: userId,
    ...fields.sealRow(usersSealed, { scope: SYSTEM_SCOPE, id: userId }, { email: `${slug}-${randomUUID()}@example.com` }),
    role: 'client',
    tenantId,
    status: 'active',
    createdAt: now,
    updatedAt: now,
  } as never);
  const later = new Date(now.getTime() + 3_600_000);
  for (const owner of [{ userId }, { apiKeyId }]) {
    const sessionId = randomUUID();
    await db.insert(sessions).values({ id: sessionId, ...owner, deviceLabel: 'test', createdAt: now, lastUsedAt: now, absoluteExpiresAt: later });
    await db.insert(refreshTokens).values({ id: randomUUID(), sessionId, tokenHash: createHash('sha256').update(randomUUID()).digest('hex'), expiresAt: later, createdAt: now });
  }
  return { tenantId, contactId, messageIds, phone, bodies };
}

/** Opens a tenant's message bodies, contact and provider secrets as the relay would. */
async function openTenantData(runtime: SealingRuntime, seeded: Seeded): Promise<string[]> {
  const { db } = runtime.database;
  const { fields } = runtime.sealing;
  const opened: string[] = [];
  for (const id of seeded.messageIds) {
    const [row] = await db.select({ body: messages.body }).from(messages).where(eq(messages.id, id));
    opened.push((await fields.openRowFresh(messagesSealed, { scope: seeded.tenantId, id }, { body: row!.body }))!.body!);
  }
  const [contact] = await db.select({ phone: contacts.phone }).from(contacts).where(eq(contacts.id, seeded.contactId));
  opened.push((await fields.openRowFresh(contactsSealed, { scope: seeded.tenantId, id: seeded.contactId }, { phone: contact!.phone }))!.phone!);
  const secrets = await new TenantRepository(db, fields, runtime.sealing.keyring).openSecrets(seeded.tenantId);
  opened.push(secrets.twilioAuthToken!);
  return opened;
}

async function rowCounts(runtime: SealingRuntime): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const table of Object.keys(tenantRowsWhere(randomUUID()))) {
    const [row] = await queryRows<{ count: number | string }>(runtime.database.db, sql`select count(*)::int as count from ${sql.identifier(table)}`);
    counts[table] = Number(row!.count);
  }
  return counts;
}

async function auditOf(runtime: SealingRuntime, tenantId: string): Promise<Array<{ action: string; details: Record<string, unknown> }>> {
  return runtime.database.db
    .select({ action: auditEvents.action, details: auditEvents.details })
    .from(auditEvents)
    .where(and(eq(auditEvents.tenantId, tenantId), sql`${auditEvents.action} in ('keys.destroy', 'tenant.shredded')`))
    .orderBy(auditEvents.seq);
}

function assertNoCanary(...outputs: CliResult[]): void {
  for (const output of outputs) assert.equal((output.stdout + output.stderr).includes(CANARY), false, 'no sealed value printed');
}

await describeEachBackend('tenants delete --shred', (backend) => {
  let space: CliWorkspace;
  const seeded = new Map<string, Seeded>();

  /** This process on the workspace's database and keys; closed before the next CLI run (PGlite: one process at a time). */
  async function inProcess<T>(work: (runtime: SealingRuntime) => Promise<T>): Promise<T> {
    const sink = new PassThrough();
    sink.resume();
    const runtime = await openSealingRuntime({ env: space.env, cwd: space.cwd, stdout: sink, stderr: sink, stdin: Readable.from([]) }, { logTo: 'stderr', defaultLogLevel: 'silent' });
    try {
      return await work(runtime);
    } finally {
      await runtime.close();
    }
  }

  before(async () => {
    space = await openCliWorkspace(backend, 'shred');
    const puts = await space.runAll(['acme', 'beta', 'gamma'].map((slug) => ({ args: ['tenants', 'put', slug], stdin: tenantJson(slug) })));
    for (const put of puts) assert.equal(put.code, 0, put.stderr);
    await inProcess(async (runtime) => {
      for (const slug of ['acme', 'beta', 'gamma']) seeded.set(slug, await seedTenant(runtime, slug));
    });
  });
  after(async () => space?.cleanup());

  test('refusals: without --shred and a malformed slug are usage errors (2), an unknown slug a failure (1); nothing changes', async () => {
    const before = await inProcess(async (runtime) => ({ keys: await runtime.database.db.select().from(dataKeys), counts: await rowCounts(runtime) }));
    const [noShred, badSlug, unknown] = await space.runAll([
      ['tenants', 'delete', 'acme'],
      ['tenants', 'delete', 'Not A Slug', '--shred'],
      ['tenants', 'delete', 'nobody', '--shred'],
    ]);
    assert.equal(noShred!.code, 2);
    assert.match(noShred!.stderr, /^ciphergate: tenants delete: a tenant is deleted only by crypto-shredding its keys, which cannot be undone; add --shred\n$/);
    assert.equal(badSlug!.code, 2);
    assert.match(badSlug!.stderr, /^ciphergate: slug: expected lower-case letters/);
    assert.equal(unknown!.code, 1);
    assert.equal(unknown!.stderr, 'ciphergate: tenants delete: no tenant "nobody"\n');
    for (const result of [noShred!, badSlug!, unknown!]) {
      assertOneLine(result.stderr);
      assert.equal(result.stdout, '');
    }
    const afterwards = await inProcess(async (runtime) => ({ keys: await runtime.database.db.select().from(dataKeys), counts: await rowCounts(runtime) }));
    assert.deepEqual(afterwards, before);
  });

  test('every table that references a tenant, directly or through its rows, is covered by step 2', async () => {
    const referencing = await inProcess((runtime) =>
      queryRows<{ name: string }>(
        runtime.database.db,
        sql`with recursive refs(rel) as (
              select 'tenants'::regclass
              union
              select c.conrelid::regclass from pg_constraint c join refs on c.confrelid = refs.rel where c.contype = 'f'
            )
            select rel::text as name from refs`,
      ),
    );
    const covered = Object.keys(tenantRowsWhere(randomUUID()));
    for (const { name } of referencing) assert.ok(covered.includes(name.replace(/^"|"$/g, '')), `table ${name} references tenants but step 2 does not count it`);
    assert.ok(referencing.length >= 10);
  });

  test('step 1 alone: the tenant is unreadable at once, another tenant is not, and nothing re-keys it; running the command then finishes step 2', async () => {
    const acme = seeded.get('acme')!;
    const gamma = seeded.get('gamma')!;
    await inProcess(async (runtime) => {
      // A second process that loaded the keys before the shred (a running server).
      const running = await openSealing(runtime.config, runtime.database.db, runtime.logger);
      try {
        assert.deepEqual(await openTenantData({ ...runtime, sealing: running }, acme), [...acme.bodies, acme.phone, `${CANARY}-twilio-acme`]);

        assert.deepEqual(await destroyTenantKeys(runtime.database.db, acme.tenantId, { type: 'system', id: 'test' }), [1]);
        const keyRows = await runtime.database.db.select().from(dataKeys).where(eq(dataKeys.scope, acme.tenantId));
        assert.deepEqual(
          keyRows.map((row) => [row.state, row.wrappedKey]),
          [['destroyed', null]],
        );

        // Any process that loads keys now, and this one after its refresh, opens nothing of acme.
        await runtime.sealing.keyring.refresh();
        const fresh = await openSealing(runtime.config, runtime.database.db, runtime.logger);
        try {
          for (const sealing of [runtime.sealing, fresh]) {
            const view = { ...runtime, sealing };
            await assert.rejects(openTenantData(view, acme), (error: unknown) => error instanceof SealOpenError && error.reason === 'unknown-key-version');
            assert.deepEqual(await openTenantData(view, gamma), [...gamma.bodies, gamma.phone, `${CANARY}-twilio-gamma`]);
            assert.deepEqual(sealing.fields.lookupIndexes(contactsSealed, 'phone', acme.tenantId, acme.phone), [], 'no blind index can be computed any more');
          }
        } finally {
          await fresh.close();
        }

        // The running process drops acme's keys, and the column keys derived from them, at its next refresh.
        const forgotten: string[] = [];
        const forget = running.sealer.forget.bind(running.sealer);
        running.sealer.forget = (scope?: string) => {
          if (scope !== undefined) forgotten.push(scope);
          forget(scope);
        };
        await running.keyring.refresh();
        assert.deepEqual(forgotten, [acme.tenantId]);
        await assert.rejects(openTenantData({ ...runtime, sealing: running }, acme), SealOpenError);

        // Webhooks and jobs see a half-shredded tenant as unknown (403 like any unknown slug), not a 500.
        const directory = new TenantDirectory(runtime.database.db, new TenantRepository(runtime.database.db, runtime.sealing.fields, runtime.sealing.keyring));
        assert.equal(await directory.bySlug('acme'), undefined);
        assert.equal(await directory.byId(acme.tenantId), undefined);
        assert.equal((await directory.bySlug('gamma'))?.secrets.twilioAuthToken, `${CANARY}-twilio-gamma`);

        // Not resurrected: no new version, no ensured scope, no put over the half-shredded tenant.
        await assert.rejects(runtime.sealing.keyring.rotate(acme.tenantId), ScopeDestroyedError);
        await assert.rejects(running.keyring.ensureScope(acme.tenantId), ScopeDestroyedError);
        const repository = new TenantRepository(runtime.database.db, runtime.sealing.fields, runtime.sealing.keyring);
        await assert.rejects(repository.put('acme', parseTenantDocument(tenantJson('acme')), { type: 'system' }), ScopeDestroyedError);
        const versions = await runtime.database.db.select({ state: dataKeys.state }).from(dataKeys).where(eq(dataKeys.scope, acme.tenantId));
        assert.deepEqual(versions, [{ state: 'destroyed' }]);
      } finally {
        await running.close();
      }
    });

    const rotateOne = await space.run(['keys', 'rotate', '--tenant', 'acme', '--no-reencrypt']);
    assert.equal(rotateOne.code, 1);
    assert.equal(rotateOne.stderr, 'ciphergate: tenant acme: its data keys were destroyed; finish the deletion with `ciphergate tenants delete acme --shred`, then the slug can be used again\n');
    const rotateAll = await space.run(['keys', 'rotate', '--no-reencrypt']);
    assert.equal(rotateAll.code, 0, rotateAll.stderr);
    assert.match(rotateAll.stderr, /^ciphergate: note: skipped tenant acme: its data keys were destroyed/);
    assert.doesNotMatch(rotateAll.stdout, /tenant acme/);
    assert.match(rotateAll.stdout, /tenant gamma: now on data key v2\n/);
    const putOver = await space.run(['tenants', 'put', 'acme'], { stdin: tenantJson('acme') });
    assert.equal(putOver.code, 1);
    assert.match(putOver.stderr, /^ciphergate: tenant acme: its data keys were destroyed; finish the deletion/);

    const before = await inProcess(rowCounts);
    const finish = await space.run(['tenants', 'delete', 'acme', '--shred']);
    assert.equal(finish.code, 0, finish.stderr);
    assert.equal(finish.stdout.split('\n')[0], `tenant acme (${acme.tenantId}): data keys were already destroyed`);
    assert.match(finish.stdout, /^tenant acme: removed 1 tenants, 1 contacts, 1 conversations, 2 messages, 3 jobs, 1 airtable_cursors, 1 import_runs, 1 api_keys, 1 users, 2 sessions, 2 refresh_tokens\n$/m);
    assertNoCanary(rotateOne, rotateAll, putOver, finish);

    await inProcess(async (runtime) => {
      const afterwards = await rowCounts(runtime);
      const audit = await auditOf(runtime, acme.tenantId);
      assert.deepEqual(
        audit.map((event) => event.action),
        ['keys.destroy', 'tenant.shredded'],
        'step 1 is recorded once, by the run that did it',
      );
      const removed = audit[1]!.details as Record<string, number>;
      for (const table of Object.keys(before)) assert.equal(afterwards[table], before[table]! - (removed[table] ?? 0), table);
      assert.equal(removed.messages, 2);
      assert.equal(removed.jobs, 3);
      assert.equal(JSON.stringify(audit).includes(CANARY), false);
      // The tombstone stays: versions are never reused, and the old scope can never be re-keyed.
      assert.deepEqual(await runtime.database.db.select({ state: dataKeys.state }).from(dataKeys).where(eq(dataKeys.scope, acme.tenantId)), [{ state: 'destroyed' }]);
      assert.deepEqual(await openTenantData(runtime, gamma), [...gamma.bodies, gamma.phone, `${CANARY}-twilio-gamma`]);
    });

    // Finished: the slug is free, and a put makes a new tenant with a new id and fresh keys.
    const again = await space.run(['tenants', 'delete', 'acme', '--shred']);
    assert.equal(again.code, 1);
    assert.equal(again.stderr, 'ciphergate: tenants delete: no tenant "acme"\n');
    const recreate = await space.run(['tenants', 'put', 'acme'], { stdin: tenantJson('acme') });
    assert.equal(recreate.code, 0, recreate.stderr);
    const newId = /^created tenant acme \(([0-9a-f-]{36})\)/.exec(recreate.stdout)?.[1];
    assert.ok(newId && newId !== acme.tenantId, recreate.stdout);
    await inProcess(async (runtime) => {
      const keys = await runtime.database.db.select({ version: dataKeys.version, state: dataKeys.state }).from(dataKeys).where(eq(dataKeys.scope, newId));
      assert.deepEqual(keys, [{ version: 1, state: 'active' }]);
      const secrets = await new TenantRepository(runtime.database.db, runtime.sealing.fields, runtime.sealing.keyring).openSecrets(newId);
      assert.equal(secrets.twilioAuthToken, `${CANARY}-twilio-acme`);
    });
    const verify = await space.run(['audit', 'verify']);
    assert.equal(verify.code, 0, verify.stderr);
  });

  test('the whole command (after a rotation): every key version destroyed and rows removed, both audited; another tenant untouched; the audit chain verifies', async () => {
    const beta = seeded.get('beta')!;
    const gamma = seeded.get('gamma')!;
    const shred = await space.run(['tenants', 'delete', 'beta', '--shred']);
    assert.equal(shred.code, 0, shred.stderr);
    // beta is on v2 since the `keys rotate` of the test above: every version goes, old and current.
    assert.equal(shred.stdout.split('\n')[0], `tenant beta (${beta.tenantId}): destroyed data keys v1, v2`);
    assert.match(shred.stdout, /\ntenant beta: removed 1 tenants, 1 contacts, 1 conversations, 2 messages, 3 jobs, .*2 refresh_tokens\n$/);
    assert.equal(shred.stderr, '');
    assertNoCanary(shred);

    await inProcess(async (runtime) => {
      const { db } = runtime.database;
      const audit = await auditOf(runtime, beta.tenantId);
      assert.deepEqual(
        audit.map((event) => [event.action, event.details]),
        [
          ['keys.destroy', { versions: '1,2', count: 2 }],
          [
            'tenant.shredded',
            {
              tenants: 1,
              contacts: 1,
              conversations: 1,
              messages: 2,
              jobs: 3,
              airtable_cursors: 1,
              import_runs: 1,
              api_keys: 1,
              users: 1,
              sessions: 2,
              refresh_tokens: 2,
              trusted_devices: 0,
              login_challenges: 0,
              user_tokens: 0,
              totp_factors: 0,
              recovery_codes: 0,
              sms_factors: 0,
              sms_codes: 0,
            },
          ],
        ],
      );
      const keyRows = await db.select().from(dataKeys).where(eq(dataKeys.scope, beta.tenantId)).orderBy(dataKeys.version);
      assert.deepEqual(
        keyRows.map((row) => [row.version, row.state, row.wrappedKey]),
        [
          [1, 'destroyed', null],
          [2, 'destroyed', null],
        ],
      );
      for (const [table, where] of Object.entries(tenantRowsWhere(beta.tenantId))) {
        const [row] = await queryRows<{ count: number | string }>(db, sql`select count(*)::int as count from ${sql.identifier(table)} where ${where}`);
        assert.equal(Number(row!.count), 0, table);
      }
      const leftJobs = await queryRows<{ payload: unknown }>(db, sql`select payload from jobs`);
      assert.equal(JSON.stringify(leftJobs).includes(beta.tenantId), false);
      for (const id of beta.messageIds) assert.equal(JSON.stringify(leftJobs).includes(id), false);
      assert.deepEqual(await openTenantData(runtime, gamma), [...gamma.bodies, gamma.phone, `${CANARY}-twilio-gamma`]);
      const gammaJobs = await db.select({ id: jobs.id }).from(jobs).where(eq(jobs.tenantId, gamma.tenantId));
      assert.equal(gammaJobs.length, 1);
    });

    const verify = await space.run(['audit', 'verify']);
    assert.equal(verify.code, 0, verify.stderr);
  });
});
