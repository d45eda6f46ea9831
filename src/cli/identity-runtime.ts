import { openIdentity, type Identity } from '../identity/identity.js';
import { findTenantBySlug, type TenantSummary } from '../store/repositories/tenants.js';
import type { Db } from '../store/connection.js';
import { CliError } from './errors.js';
import { openSealingRuntime, type CliIo, type SealingRuntime } from './runtime.js';

/**
 * Runs `action` with identity open over the data and keys of this deployment, then closes
 * everything. No Redis: a revocation made here reaches running servers through the database
 * within their session-cache age (1 s, see LIVENESS_CACHE_MS), which is the promise anyway.
 */
export async function withIdentity<T>(io: CliIo, action: (identity: Identity, runtime: SealingRuntime) => Promise<T>): Promise<T> {
  const runtime = await openSealingRuntime(io, { logTo: 'stderr', defaultLogLevel: 'warn' });
  try {
    const identity = await openIdentity({ config: runtime.config, db: runtime.database.db, fields: runtime.sealing.fields, logger: runtime.logger });
    try {
      return await action(identity, runtime);
    } finally {
      await identity.close();
    }
  } finally {
    await runtime.close();
  }
}

/** The tenant an operator names by slug (`--tenant`); an unknown slug is one line and exit 1. */
export async function tenantBySlug(db: Db, slug: string): Promise<TenantSummary> {
  return (await findTenantBySlug(db, slug)) ?? unknownTenant(slug);
}

/** What an operator hears for a `--tenant` that names no tenant. */
export function unknownTenant(slug: string): never {
  throw new CliError(`--tenant: no tenant ${JSON.stringify(slug)}`);
}
