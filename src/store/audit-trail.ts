import { randomUUID } from 'node:crypto';
import { and, asc, desc, eq, gt, sql } from 'drizzle-orm';
import type { Db } from './connection.js';
import { auditEvents } from './schema.js';
import type { AuditAction } from '../domain/audit-actions.js';
import { GENESIS_HASH, chainHash, hashesEqual, type AuditActorType, type AuditDetails, type AuditEntry, type AuditOutcome } from './audit-chain.js';

export interface AuditEventInput {
  actor: { type: AuditActorType; id?: string | null };
  /** Dotted verb from the catalogue (src/domain/audit-actions.ts), e.g. `auth.login`, `keys.rotate`. */
  action: AuditAction;
  target?: { type: string; id: string } | null;
  tenantId?: string | null;
  sourceIp?: string | null;
  outcome: AuditOutcome;
  /** Ids and counts only; never personal data or secrets. */
  details?: AuditDetails;
}

/** Any number > 0 that nothing else uses: all processes serialise audit appends on it. */
const AUDIT_CHAIN_LOCK_KEY = 0x43474155n; // "CGAU"

/**
 * Appends one entry to the chain. The transaction-scoped advisory lock makes "read the head,
 * insert the next link" atomic across requests and processes, so concurrent appends never
 * fork the chain. Pass a transaction as `db` to make the event commit or roll back with the
 * change it records.
 */
export async function appendAuditEvent(db: Db, input: AuditEventInput): Promise<{ id: string; seq: number; hash: string }> {
  const append = async (tx: Db) => {
    await tx.execute(sql`select pg_advisory_xact_lock(${AUDIT_CHAIN_LOCK_KEY.toString()}::bigint)`);
    const [head] = await tx.select({ hash: auditEvents.hash }).from(auditEvents).orderBy(desc(auditEvents.seq)).limit(1);
    const prevHash = head?.hash ?? GENESIS_HASH;
    const entry: AuditEntry = {
      id: randomUUID(),
      // Millisecond precision: what a JS Date holds is exactly what PostgreSQL stores back.
      occurredAt: new Date(),
      actorType: input.actor.type,
      actorId: input.actor.id ?? null,
      action: input.action,
      targetType: input.target?.type ?? null,
      targetId: input.target?.id ?? null,
      tenantId: input.tenantId ?? null,
      sourceIp: input.sourceIp ?? null,
      outcome: input.outcome,
      details: input.details ?? {},
    };
    const hash = chainHash(prevHash, entry);
    const [row] = await tx
      .insert(auditEvents)
      .values({ ...entry, prevHash, hash })
      .returning({ seq: auditEvents.seq });
    return { id: entry.id, seq: row!.seq, hash };
  };
  // Nested transactions become savepoints, so this works inside a caller's transaction too.
  return db.transaction(async (tx) => append(tx));
}

export type AuditVerification =
  | { intact: true; entries: number; headHash: string }
  | { intact: false; entries: number; brokenAt: { seq: number; id: string; reason: string } };

/**
 * Walks the chain in `seq` order, in pages so memory stays flat, and reports the first entry
 * whose link or content does not match. A deleted, altered or reordered row breaks the link at
 * or right after it. Cutting entries off the end cannot be seen from inside the chain, so the
 * result names the head hash for the operator to record elsewhere and compare later
 * (`audit verify --expect-entry`).
 */
export async function verifyAuditChain(db: Db, pageSize = 1000): Promise<AuditVerification> {
  let expectedPrev = GENESIS_HASH;
  let lastSeq = 0;
  let entries = 0;
  for (;;) {
    const page = await db.select().from(auditEvents).where(gt(auditEvents.seq, lastSeq)).orderBy(asc(auditEvents.seq)).limit(pageSize);
    for (const row of page) {
      const brokenAt = (reason: string) => ({ intact: false as const, entries, brokenAt: { seq: row.seq, id: row.id, reason } });
      if (!hashesEqual(row.prevHash, expectedPrev)) {
        return brokenAt('its previous-hash link does not match the entry before it (an entry was removed, inserted or reordered)');
      }
      const recomputed = chainHash(row.prevHash, {
        id: row.id,
        occurredAt: row.occurredAt,
        actorType: row.actorType as AuditActorType,
        actorId: row.actorId,
        action: row.action,
        targetType: row.targetType,
        targetId: row.targetId,
        tenantId: row.tenantId,
        sourceIp: row.sourceIp,
        outcome: row.outcome as AuditOutcome,
        details: row.details,
      });
      if (!hashesEqual(row.hash, recomputed)) {
        return brokenAt('its content does not match its hash (the entry was altered)');
      }
      expectedPrev = row.hash;
      lastSeq = row.seq;
      entries += 1;
    }
    if (page.length < pageSize) return { intact: true, entries, headHash: expectedPrev };
  }
}

/** True when an entry with this hash is in the chain; with an intact chain, so is all before it. */
export async function auditChainContains(db: Db, hash: string): Promise<boolean> {
  const [row] = await db.select({ seq: auditEvents.seq }).from(auditEvents).where(eq(auditEvents.hash, hash)).limit(1);
  return row !== undefined;
}

export interface AuditQuery {
  /** Entries after this sequence number (exclusive): the cursor of the previous page. */
  afterSeq?: number;
  action?: AuditAction;
  tenantId?: string;
  actorId?: string;
  limit: number;
}

/** A page of entries in chain order, for `GET /api/v1/audit`. */
export async function listAuditEvents(db: Db, query: AuditQuery) {
  const conditions = [gt(auditEvents.seq, query.afterSeq ?? 0)];
  if (query.action) conditions.push(eq(auditEvents.action, query.action));
  if (query.tenantId) conditions.push(eq(auditEvents.tenantId, query.tenantId));
  if (query.actorId) conditions.push(eq(auditEvents.actorId, query.actorId));
  return db
    .select()
    .from(auditEvents)
    .where(and(...conditions))
    .orderBy(asc(auditEvents.seq))
    .limit(query.limit);
}
