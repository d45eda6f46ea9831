import type { TenantSummary } from '../domain/tenant.js';
import type { Db } from '../store/connection.js';
import { findTenantBySlug, listTenants } from '../store/repositories/tenants.js';
import { tenantFor, type Caller } from './caller.js';

/**
 * Which clients exist and which providers each has configured, never a secret (nothing sealed is
 * read). Tenant-confined callers (client users, API keys) see only their own tenant; another
 * tenant reads as absent, so they cannot enumerate the agency's clients.
 */

/** The tenants the caller may see, by slug. */
export async function listTenantsFor(db: Db, caller: Caller): Promise<TenantSummary[]> {
  return (await listTenants(db)).filter((tenant) => caller.mayAccessTenant(tenant.id));
}

/** One tenant; another tenant's asked for by a confined caller is audited and reads as absent. */
export async function showTenant(db: Db, caller: Caller, slug: string): Promise<TenantSummary> {
  return tenantFor(db, caller, await findTenantBySlug(db, slug), (tenant) => ({ target: { type: 'tenant', id: tenant.id }, details: { reason: 'other-tenant' } }));
}

/** The operator's view (the CLI acts for whoever holds the deployment): every tenant, no secret. */
export async function listAllTenants(db: Db): Promise<TenantSummary[]> {
  return listTenants(db);
}

/** One tenant by slug for the operator, or undefined. */
export async function findTenant(db: Db, slug: string): Promise<TenantSummary | undefined> {
  return findTenantBySlug(db, slug);
}
