import { SYSTEM_SCOPE } from '../seal/binding.js';
import type { Db } from '../store/connection.js';
import { listTenants } from '../store/repositories/tenants.js';

/** A data-key scope with the label an operator knows it by. */
export interface KeyScope {
  scope: string;
  label: string;
  slug?: string;
}

/**
 * `system` plus every tenant, or the one tenant named (undefined when no tenant has that slug):
 * the scopes `keys rotate` and `keys reencrypt` work on.
 */
export async function keyScopes(db: Db, tenantSlug: string | undefined): Promise<KeyScope[] | undefined> {
  const all = await listTenants(db);
  if (tenantSlug !== undefined) {
    const tenant = all.find((entry) => entry.slug === tenantSlug);
    if (!tenant) return undefined;
    return [{ scope: tenant.id, label: `tenant ${tenant.slug}`, slug: tenant.slug }];
  }
  return [{ scope: SYSTEM_SCOPE, label: 'system' }, ...all.map((tenant) => ({ scope: tenant.id, label: `tenant ${tenant.slug}`, slug: tenant.slug }))];
}
