import type { AuditAction } from '../domain/audit-actions.js';
import type { AuditDetails } from '../store/audit-chain.js';
import { appendAuditEvent } from '../store/audit-trail.js';
import type { Db } from '../store/connection.js';
import { RelayError } from './errors.js';

/**
 * Who asks a relay use case, as identity established it (the HTTP layer builds it from the
 * principal): the ids the audit trail names and the caller's tenant confinement. Never a
 * credential or a role: whether a caller may do something at all is the guard's, before the use
 * case runs; which tenants' data it may touch is the use case's, through `mayAccessTenant`.
 */
export interface Caller {
  /** The audit actor: ids only. A user acts as staff, an API key as a machine. */
  actor: { type: 'user' | 'api_key'; id: string };
  /** Whether the caller may act on this tenant's data (identity's tenant confinement). */
  mayAccessTenant(tenantId: string): boolean;
  /** The one tenant the caller is confined to, or null (staff, or a key bound to no tenant). */
  tenantId: string | null;
  /** The caller's address, for the audit trail. */
  sourceIp: string;
}

/** What a refusal to show another tenant's data records: what was asked for, and why it was refused. */
export interface DeniedAccess {
  target: { type: string; id: string };
  details: AuditDetails;
}

/**
 * `tenant` when the caller may act on it; otherwise RelayError `tenant-not-found`, the answer for
 * a slug that names no tenant, so a confined caller cannot enumerate the agency's clients. A
 * confined caller asking for another tenant is a probe worth recording: with `denied`, it is
 * audited as `access.denied`.
 */
export async function tenantFor<T extends { id: string }>(db: Db, caller: Caller, tenant: T | undefined, denied?: (tenant: T) => DeniedAccess): Promise<T> {
  if (tenant && caller.mayAccessTenant(tenant.id)) return tenant;
  if (tenant && denied) await auditDenied(db, caller, denied(tenant));
  throw new RelayError('tenant-not-found', 'no such tenant');
}

/** An `access.denied` audit entry for a caller refused another tenant's data. */
export async function auditDenied(db: Db, caller: Caller, denied: DeniedAccess): Promise<void> {
  await appendAuditEvent(db, {
    actor: caller.actor,
    action: 'access.denied',
    target: denied.target,
    tenantId: caller.tenantId,
    sourceIp: caller.sourceIp,
    outcome: 'denied',
    details: denied.details,
  });
}

/** What the caller did, audited as a success; resolves once the entry is committed. */
export async function auditDone(db: Db, caller: Caller, event: { action: AuditAction; target?: { type: string; id: string }; tenantId: string; details: AuditDetails }): Promise<void> {
  await appendAuditEvent(db, { actor: caller.actor, ...event, sourceIp: caller.sourceIp, outcome: 'success' });
}
