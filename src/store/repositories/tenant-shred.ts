import { eq, sql, type SQL } from 'drizzle-orm';
import { appendAuditEvent, type AuditEventInput } from '../audit-trail.js';
import { queryRows, type Db } from '../connection.js';
import { tenants } from '../schema.js';
import { destroyScopeKeys, isScopeDestroyed } from './data-keys.js';
import { findTenantBySlug } from './tenants.js';

/**
 * Crypto-shredding a tenant (`ciphergate tenants delete SLUG --shred`), in two transactions:
 *
 * 1. `destroyTenantKeys`: every DEK version of the tenant's scope loses its wrapped key. From
 *    that commit on, every value sealed for the tenant (messages, contacts, provider secrets,
 *    and the same values in any backup without the old `data_keys` rows) is unreadable.
 * 2. `removeTenantRows`: the tenant's rows go, with counts per table in the audit trail.
 *
 * Step 1 comes first and alone because it is what makes the data unreadable everywhere at once,
 * copies included; step 2 only tidies up and may be interrupted: running the command again
 * finishes it (step 1 then finds nothing left to destroy).
 */

export type ShredActor = AuditEventInput['actor'];

export interface ShredResult {
  tenantId: string;
  /** Versions destroyed by this run; empty when an earlier, interrupted run already had. */
  destroyedVersions: number[];
  /** Rows removed per table; undefined when a concurrent run removed them first. */
  removedRows: Record<string, number> | undefined;
}

/** The slug names no tenant (or one whose shredding already finished). */
export class UnknownTenantError extends Error {
  override readonly name = 'UnknownTenantError';
  constructor(readonly slug: string) {
    super(`no tenant ${JSON.stringify(slug)}`);
  }
}

/** Both steps; safe to run again after an interruption at any point. */
export async function shredTenant(db: Db, slug: string, actor: ShredActor): Promise<ShredResult> {
  const tenant = await findTenantBySlug(db, slug);
  if (!tenant) throw new UnknownTenantError(slug);
  const destroyedVersions = await destroyTenantKeys(db, tenant.id, actor);
  const removedRows = await removeTenantRows(db, tenant.id, actor);
  return { tenantId: tenant.id, destroyedVersions, removedRows };
}

/**
 * Step 1, one transaction under the scope lock rotation takes: destroys every DEK version of
 * the tenant and records `keys.destroy`. Returns the versions destroyed now; a second run
 * destroys nothing and records nothing.
 */
export async function destroyTenantKeys(db: Db, tenantId: string, actor: ShredActor): Promise<number[]> {
  return db.transaction(async (tx) => {
    const versions = await destroyScopeKeys(tx, tenantId);
    if (versions.length > 0) {
      await appendAuditEvent(tx, {
        actor,
        action: 'keys.destroy',
        target: { type: 'data_key_scope', id: tenantId },
        tenantId,
        outcome: 'success',
        details: { versions: versions.join(','), count: versions.length },
      });
    }
    return versions;
  });
}

/**
 * Step 2, one transaction: removes the tenant's rows and records `tenant.shredded` with the
 * count per table. Refuses while the tenant's keys are not destroyed, so rows never disappear
 * while their plaintext could still be opened from a copy. Returns undefined when the tenant
 * row is already gone (a concurrent run finished first).
 */
export async function removeTenantRows(db: Db, tenantId: string, actor: ShredActor): Promise<Record<string, number> | undefined> {
  return db.transaction(async (tx) => {
    // Locking the tenant row (and its users) makes every insert that references them wait, so
    // the counts are exactly what the delete below removes.
    const locked = await queryRows<{ id: string }>(tx, sql`select id from tenants where id = ${tenantId} for update`);
    if (locked.length === 0) return undefined;
    if (!(await isScopeDestroyed(tx, tenantId))) throw new Error(`tenant ${tenantId}: its data keys are not destroyed; run step 1 (destroyTenantKeys) first`);
    await tx.execute(sql`select id from users where tenant_id = ${tenantId} for update`);

    const counts: Record<string, number> = {};
    for (const [table, where] of Object.entries(tenantRowsWhere(tenantId))) {
      const [row] = await queryRows<{ count: number | string }>(tx, sql`select count(*)::int as count from ${sql.identifier(table)} where ${where}`);
      counts[table] = Number(row?.count ?? 0);
    }
    // Jobs are the one place a tenant can be named without a foreign key (a payload written by
    // hand or by an older version); everything else goes with the tenant row by ON DELETE CASCADE.
    await tx.execute(sql`delete from jobs where ${tenantRowsWhere(tenantId).jobs}`);
    await tx.delete(tenants).where(eq(tenants.id, tenantId));

    await appendAuditEvent(tx, {
      actor,
      action: 'tenant.shredded',
      target: { type: 'tenant', id: tenantId },
      tenantId,
      outcome: 'success',
      details: counts,
    });
    return counts;
  });
}

/**
 * Every table holding rows of the tenant, and how to find them: what references `tenants`
 * directly, what references those rows (sessions and second factors of the tenant's users,
 * sessions of its API keys), and jobs that name the tenant or one of its messages in their
 * payload. Blind indexes live in the rows they index (contacts.phone_index,
 * users.email_index); API idempotency records are the messages' dedupe keys.
 * test/cli/tenants-delete.test.ts fails when a table referencing these is missing here.
 */
export function tenantRowsWhere(tenantId: string): Record<string, SQL> {
  const users = sql`select id from users where tenant_id = ${tenantId}`;
  const sessions = sql`select id from sessions where user_id in (${users}) or api_key_id in (select id from api_keys where tenant_id = ${tenantId})`;
  return {
    tenants: sql`id = ${tenantId}`,
    contacts: sql`tenant_id = ${tenantId}`,
    conversations: sql`tenant_id = ${tenantId}`,
    messages: sql`tenant_id = ${tenantId}`,
    jobs: sql`tenant_id = ${tenantId} or payload->>'tenantId' = ${tenantId}
      or payload->>'messageId' in (select id::text from messages where tenant_id = ${tenantId})`,
    airtable_cursors: sql`tenant_id = ${tenantId}`,
    import_runs: sql`tenant_id = ${tenantId}`,
    api_keys: sql`tenant_id = ${tenantId}`,
    users: sql`tenant_id = ${tenantId}`,
    sessions: sql`id in (${sessions})`,
    refresh_tokens: sql`session_id in (${sessions})`,
    trusted_devices: sql`user_id in (${users})`,
    login_challenges: sql`user_id in (${users})`,
    user_tokens: sql`user_id in (${users})`,
    totp_factors: sql`user_id in (${users})`,
    recovery_codes: sql`user_id in (${users})`,
    sms_factors: sql`user_id in (${users})`,
    sms_codes: sql`user_id in (${users})`,
  };
}
