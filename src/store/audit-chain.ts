import { createHash, timingSafeEqual } from 'node:crypto';

/** The chain starts from 32 zero bytes, so the first entry is hashed like every other. */
export const GENESIS_HASH = '0'.repeat(64);

export type AuditActorType = 'user' | 'api_key' | 'provider' | 'system' | 'anonymous';
export type AuditOutcome = 'success' | 'failure' | 'denied';
export type AuditDetails = Record<string, string | number | boolean | null>;

/** What is hashed: every column of an entry except `seq`, `prev_hash` and `hash` themselves. */
export interface AuditEntry {
  id: string;
  occurredAt: Date;
  actorType: AuditActorType;
  actorId: string | null;
  action: string;
  targetType: string | null;
  targetId: string | null;
  tenantId: string | null;
  sourceIp: string | null;
  outcome: AuditOutcome;
  details: AuditDetails;
}

/**
 * A fixed-order JSON array (with `details` keys sorted) is unambiguous and stable across
 * processes and both database backends, so any verifier can recompute it. The leading "1" is
 * the format version of the canonical form.
 */
export function canonicalEntry(entry: AuditEntry): string {
  const sortedDetails = Object.keys(entry.details)
    .sort()
    .map((key) => [key, entry.details[key] ?? null]);
  return JSON.stringify([
    1,
    entry.id,
    entry.occurredAt.toISOString(),
    entry.actorType,
    entry.actorId,
    entry.action,
    entry.targetType,
    entry.targetId,
    entry.tenantId,
    entry.sourceIp,
    entry.outcome,
    sortedDetails,
  ]);
}

/** hash = SHA-256(previous hash ‖ canonical entry), hex. */
export function chainHash(prevHashHex: string, entry: AuditEntry): string {
  return createHash('sha256').update(Buffer.from(prevHashHex, 'hex')).update(canonicalEntry(entry), 'utf8').digest('hex');
}

export function hashesEqual(a: string, b: string): boolean {
  const left = Buffer.from(a, 'hex');
  const right = Buffer.from(b, 'hex');
  return left.length === 32 && right.length === 32 && timingSafeEqual(left, right);
}
