// Where one inbound SMS's time goes, for the analysis in docs/benchmarks.md: the ingest of
// `Relay.receive` (ConversationRepository.storeInbound, the same code the webhook runs) timed in
// this process against the same database work without Ciphergate around it, one part at a time.
// Not a goal of its own; bench/inbound-sms.bench.ts prints it after the HTTP figures.
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import pg from 'pg';
import { INBOUND_STATUS, statusRank } from '../../src/domain/message-status.js';
import { aiReplyJob } from '../../src/relay/jobs.js';
import { JOB } from '../../src/domain/job-kinds.js';
import { SealedFields } from '../../src/seal/sealed-fields.js';
import { InMemoryKeyring, Sealer } from '../../src/seal/sealer.js';
import { openDatabase, queryRows, type Db } from '../../src/store/connection.js';
import { DEFAULT_MAX_ATTEMPTS } from '../../src/store/job-queue.js';
import { migrate } from '../../src/store/migrate.js';
import { ConversationRepository } from '../../src/store/repositories/conversations.js';
import { contactsSealed, messagesSealed } from '../../src/store/sealed-tables.js';
import { createBenchDatabase } from './harness.js';
import { phonePool } from './twilio-inbound.js';

export interface BreakdownRow {
  step: string;
  messagesInFlight: number;
  /** Mean wall time of one transaction (for the group variant: one statement of `GROUP` messages). */
  msPerTransaction: number;
  messagesPerSecond: number;
  /** CPU time of this process (user + system) per message: the Node side's share. */
  nodeCpuMsPerMessage: number;
}

/** Messages written together in the group-commit variant. */
const GROUP = 10;

const BODY = 'Hi, can I move my appointment on Thursday to the afternoon? My card ends in 4242.';

/**
 * Runs on a fresh database of `backend` (PostgreSQL: a new database; PGlite: a new data directory
 * on disk, as `serve` uses): about `count` messages per step, 1 or 10 at a time (10 is the pool size
 * `serve` opens on PostgreSQL; PGlite has one session, so its transactions run one after
 * another whatever the number in flight), after every sender's contact and conversation exists
 * (as in the HTTP run after its warm-up).
 */
export async function inboundBreakdown(backend: 'postgres' | 'pglite', options: { count?: number } = {}): Promise<BreakdownRow[]> {
  const count = options.count ?? 3_000;
  const poolSize = 10;
  const dataDir = backend === 'pglite' ? mkdtempSync(join(tmpdir(), 'cg-breakdown-')) : undefined;
  const postgres = backend === 'postgres' ? await createBenchDatabase(poolSize) : undefined;
  const database = postgres?.database ?? (await openDatabase({ dataDir: dataDir! }));
  if (!postgres) await migrate(database);
  const { db } = database;
  try {
    const tenantId = randomUUID();
    await db.execute(sql`insert into tenants (id, slug, name, settings, created_at, updated_at)
      values (${tenantId}, 'breakdown', 'Breakdown', ${JSON.stringify({ allowIps: { twilio: [], airtable: [], podium: [] } })}::jsonb, now(), now())`);
    const keyring = new InMemoryKeyring().add(tenantId, 1, randomBytes(32));
    const fields = new SealedFields(new Sealer(keyring), keyring);
    const phones = phonePool(1_000);
    let sequence = 0;
    const storeThrough = (repository: ConversationRepository) => () => {
      const index = sequence++;
      const dedupeKey = `twilio:SM${index.toString(16).padStart(32, '0')}`;
      return repository.storeInbound(
        { tenantId, channel: 'sms', dedupeKey, providerMessageId: dedupeKey.slice(7), phone: phones[index % phones.length]!, body: BODY },
        ({ messageId }) => [aiReplyJob(tenantId, messageId)],
      );
    };
    const store = storeThrough(new ConversationRepository(db, fields));
    // Contacts and conversations for every sender, as after the HTTP warm-up.
    await timed(phones.length, poolSize, store);

    const rows: BreakdownRow[] = [];
    /** `inFlight` operations at a time, each storing `messagesPerOperation` messages. */
    const add = async (step: string, inFlight: number, operation: () => Promise<unknown>, messagesPerOperation = 1) => {
      const { ms, cpuMs } = await timed(Math.ceil(count / messagesPerOperation), inFlight, operation);
      rows.push({
        step,
        messagesInFlight: inFlight * messagesPerOperation,
        msPerTransaction: ms,
        messagesPerSecond: (1000 / ms) * inFlight * messagesPerOperation,
        nodeCpuMsPerMessage: cpuMs / messagesPerOperation,
      });
    };
    const transaction = (statements: number) => () =>
      db.transaction(async (tx) => {
        for (let index = 0; index < statements; index += 1) await (tx as unknown as Db).execute(sql`select 1`);
      });
    const sealing = () => {
      const id = randomUUID();
      fields.lookupIndexes(contactsSealed, 'phone', tenantId, phones[sequence++ % phones.length]!);
      fields.sealRow(messagesSealed, { scope: tenantId, id }, { body: BODY });
      return Promise.resolve();
    };

    await add('seal the body + blind index of the number (Node CPU only)', 1, sealing);
    for (const inFlight of [1, poolSize]) {
      await add('storeInbound: contact, conversation, message, ai-reply job; 1 transaction', inFlight, store);
      await add('empty transaction (BEGIN; COMMIT)', inFlight, transaction(0));
      await add('transaction of 6 `select 1` (the statement count of storeInbound)', inFlight, transaction(6));
    }
    // The same rows written by hand, without the ORM: storeInbound's statements, then all of
    // them as one statement (one round trip, one implicit transaction), then several messages per
    // statement (group commit). PostgreSQL through its own pool, PGlite through its client.
    const pool = postgres ? new pg.Pool({ connectionString: postgres.url, max: poolSize }) : undefined;
    try {
      const raw = rawIngest(pool ? poolClient(pool) : pgliteClient(db), fields, tenantId, phones, () => sequence++);
      for (const inFlight of [1, poolSize]) {
        await add('the same statements without the ORM', inFlight, raw.statements);
        await add('the same rows in one statement (CTE): 1 round trip, 1 commit', inFlight, raw.oneStatement);
      }
      // 50 messages in flight, as with the benchmark's 50 connections, written 10 per statement.
      await add(`${GROUP} messages per statement and commit (group commit)`, 50 / GROUP, () => raw.group(GROUP), GROUP);
    } finally {
      await pool?.end();
    }
    if (!postgres) return rows;

    // storeInbound without waiting for the WAL flush (new sessions of this database only): how
    // much of it is the commit's fsync.
    const [current] = await queryRows<{ name: string }>(db, sql`select current_database() as name`);
    await db.execute(sql.raw(`alter database "${current!.name}" set synchronous_commit = off`));
    const relaxed = await openDatabase({ url: postgres.url, maxConnections: poolSize });
    try {
      const relaxedStore = storeThrough(new ConversationRepository(relaxed.db, fields));
      for (const inFlight of [1, poolSize]) await add('storeInbound with synchronous_commit = off (no wait for the WAL flush)', inFlight, relaxedStore);
    } finally {
      await relaxed.close();
    }
    return rows;
  } finally {
    if (postgres) await postgres.drop().catch(() => undefined);
    else {
      await database.close();
      rmSync(dataDir!, { recursive: true, force: true });
    }
  }
}

/** Mean wall ms per operation when `inFlight` run at once until `count` are done, and this process's CPU ms per operation. */
async function timed(count: number, inFlight: number, operation: () => Promise<unknown>): Promise<{ ms: number; cpuMs: number }> {
  let started = 0;
  const cpuBefore = process.cpuUsage();
  const startedAt = process.hrtime.bigint();
  const lane = async () => {
    while (started < count) {
      started += 1;
      await operation();
    }
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
  const elapsedMs = Number(process.hrtime.bigint() - startedAt) / 1e6;
  const cpu = process.cpuUsage(cpuBefore);
  return { ms: (elapsedMs / count) * inFlight, cpuMs: (cpu.user + cpu.system) / 1000 / count };
}

/** Plain SQL with parameters, on either backend. */
interface RawClient {
  query(text: string, params?: unknown[]): Promise<{ rows: unknown[] }>;
  transaction(work: (query: RawClient['query']) => Promise<void>): Promise<void>;
}

function poolClient(pool: pg.Pool): RawClient {
  return {
    query: (text, params) => pool.query(text, params),
    async transaction(work) {
      const client = await pool.connect();
      try {
        await client.query('begin');
        await work((text, params) => client.query(text, params));
        await client.query('commit');
      } catch (error) {
        await client.query('rollback');
        throw error;
      } finally {
        client.release();
      }
    },
  };
}

/** The PGlite instance under Drizzle (`$client`): PGlite has one session, and its `transaction` queues. */
function pgliteClient(db: Db): RawClient {
  const client = (db as unknown as { $client: { query(text: string, params?: unknown[]): Promise<{ rows: unknown[] }>; transaction<T>(work: (tx: { query(text: string, params?: unknown[]): Promise<{ rows: unknown[] }> }) => Promise<T>): Promise<T> } }).$client;
  return {
    query: (text, params) => client.query(text, params),
    transaction: (work) => client.transaction((tx) => work((text, params) => tx.query(text, params))),
  };
}

/**
 * storeInbound's work for a sender whose contact and conversation exist, written by hand: only
 * to measure what the ORM and the round trips cost. Not a replacement (it leaves out the new
 * contact path, keywords and the duplicate answer).
 */
function rawIngest(client: RawClient, fields: SealedFields, tenantId: string, phones: string[], nextIndex: () => number) {
  const inputs = () => {
    const index = nextIndex();
    const messageId = randomUUID();
    const dedupeKey = `twilio:SM${index.toString(16).padStart(32, '0')}`;
    const sealed = fields.sealRow(messagesSealed, { scope: tenantId, id: messageId }, { body: BODY });
    const indexes = fields.lookupIndexes(contactsSealed, 'phone', tenantId, phones[index % phones.length]!);
    return { messageId, dedupeKey, body: sealed.body as Buffer, indexes: indexes as unknown as Buffer[], now: new Date() };
  };
  const jobPayload = (messageId: string) => JSON.stringify({ messageId });
  return {
    async statements(): Promise<void> {
      const input = inputs();
      await client.transaction(async (query) => {
        const contact = await query('select id from contacts where tenant_id = $1 and phone_index = any($2) limit 1', [tenantId, input.indexes]);
        const contactId = (contact.rows[0] as { id: string }).id;
        await query(
          `insert into conversations (id, tenant_id, contact_id, channel, provider_conversation_id, created_at, last_message_at)
           values ($1, $2, $3, 'sms', null, $4, $4) on conflict do nothing returning id`,
          [randomUUID(), tenantId, contactId, input.now],
        );
        const conversation = await query(`select id from conversations where tenant_id = $1 and contact_id = $2 and channel = 'sms' limit 1`, [tenantId, contactId]);
        const conversationId = (conversation.rows[0] as { id: string }).id;
        await query(
          `insert into messages (id, tenant_id, contact_id, conversation_id, direction, author, body, dedupe_key, provider_message_id, status, status_rank, created_at, updated_at)
           values ($1, $2, $3, $4, 'inbound', 'contact', $5, $6, $7, $8, $9, $10, $10) on conflict (tenant_id, dedupe_key) do nothing returning id`,
          [input.messageId, tenantId, contactId, conversationId, input.body, input.dedupeKey, input.dedupeKey.slice(7), INBOUND_STATUS, statusRank(INBOUND_STATUS), input.now],
        );
        await query('update conversations set last_message_at = $1 where id = $2', [input.now, conversationId]);
        await query(
          `insert into jobs (id, kind, tenant_id, payload, state, attempts, max_attempts, run_at, created_at, updated_at)
           values ($1, $2, $3, $4, 'pending', 0, $5, $6, $6, $6)`,
          [randomUUID(), JOB.aiReply, tenantId, jobPayload(input.messageId), DEFAULT_MAX_ATTEMPTS, input.now],
        );
      });
    },
    async oneStatement(): Promise<void> {
      const input = inputs();
      const result = await client.query(
        `with contact as (
           select id from contacts where tenant_id = $1 and phone_index = any($2) limit 1
         ), conversation as (
           update conversations set last_message_at = $8
           where tenant_id = $1 and contact_id = (select id from contact) and channel = 'sms'
           returning id, contact_id
         ), message as (
           insert into messages (id, tenant_id, contact_id, conversation_id, direction, author, body, dedupe_key, provider_message_id, status, status_rank, created_at, updated_at)
           select $3, $1, contact_id, id, 'inbound', 'contact', $4, $5, $6, $7, $9, $8, $8 from conversation
           on conflict (tenant_id, dedupe_key) do nothing
           returning id
         )
         insert into jobs (id, kind, tenant_id, payload, state, attempts, max_attempts, run_at, created_at, updated_at)
         select $10, $11, $1, jsonb_build_object('messageId', id), 'pending', 0, $12, $8, $8, $8 from message
         returning id`,
        [tenantId, input.indexes, input.messageId, input.body, input.dedupeKey, input.dedupeKey.slice(7), INBOUND_STATUS, input.now, statusRank(INBOUND_STATUS), randomUUID(), JOB.aiReply, DEFAULT_MAX_ATTEMPTS],
      );
      if (result.rows.length !== 1) throw new Error('one-statement ingest stored nothing');
    },
    async group(size: number): Promise<void> {
      const batch = Array.from({ length: size }, inputs);
      const result = await client.query(
        `with input as (
           select * from unnest($2::bytea[], $3::uuid[], $4::bytea[], $5::text[]) as t(phone_index, message_id, body, dedupe_key)
         ), contact as (
           select input.*, contacts.id as contact_id from input join contacts on contacts.tenant_id = $1 and contacts.phone_index = input.phone_index
         ), conversation as (
           update conversations set last_message_at = $6
           where tenant_id = $1 and channel = 'sms' and contact_id in (select contact_id from contact)
           returning id, contact_id
         ), message as (
           insert into messages (id, tenant_id, contact_id, conversation_id, direction, author, body, dedupe_key, provider_message_id, status, status_rank, created_at, updated_at)
           select contact.message_id, $1, contact.contact_id, conversation.id, 'inbound', 'contact', contact.body, contact.dedupe_key, substr(contact.dedupe_key, 8), $7, $8, $6, $6
           from contact join conversation on conversation.contact_id = contact.contact_id
           on conflict (tenant_id, dedupe_key) do nothing
           returning id
         )
         insert into jobs (id, kind, tenant_id, payload, state, attempts, max_attempts, run_at, created_at, updated_at)
         select gen_random_uuid(), $9, $1, jsonb_build_object('messageId', id), 'pending', 0, $10, $6, $6, $6 from message
         returning id`,
        [
          tenantId,
          batch.map((input) => input.indexes[0]!),
          batch.map((input) => input.messageId),
          batch.map((input) => input.body),
          batch.map((input) => input.dedupeKey),
          new Date(),
          INBOUND_STATUS,
          statusRank(INBOUND_STATUS),
          JOB.aiReply,
          DEFAULT_MAX_ATTEMPTS,
        ],
      );
      if (result.rows.length !== size) throw new Error(`group ingest stored ${result.rows.length} of ${size}`);
    },
  };
}
