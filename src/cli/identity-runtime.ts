import type { TenantSummary } from '../domain/tenant.js';
import { findTenant } from '../relay/tenant-catalogue.js';
import { CliError } from './errors.js';
import type { Runtime } from './runtime.js';

// Opening identity over this deployment's data and keys is the composition root's (src/runtime).
export { withIdentity } from '../runtime/identity.js';

/** The tenant an operator names by slug (`--tenant`); an unknown slug is one line and exit 1. */
export async function tenantBySlug(db: Runtime['database']['db'], slug: string): Promise<TenantSummary> {
  return (await findTenant(db, slug)) ?? unknownTenant(slug);
}

/** What an operator hears for a `--tenant` that names no tenant. */
export function unknownTenant(slug: string): never {
  throw new CliError(`--tenant: no tenant ${JSON.stringify(slug)}`);
}
