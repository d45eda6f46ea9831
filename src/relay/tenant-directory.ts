import { eq } from 'drizzle-orm';
import { SealOpenError } from '../seal/errors.js';
import { isScopeDestroyed } from '../seal/keyring.js';
import type { Db } from '../store/connection.js';
import type { TenantRepository, TenantSecrets } from '../store/repositories/tenants.js';
import { tenants, type TenantSettings } from '../store/schema.js';

/** A tenant as the relay needs it: settings and opened provider secrets. */
export interface TenantContext {
  id: string;
  slug: string;
  settings: TenantSettings;
  secrets: TenantSecrets;
}

/** How long an opened tenant is reused; a `tenants put` reaches every instance within it. */
export const TENANT_CACHE_MS = 10_000;

/**
 * Tenants by slug (webhooks) and by id (jobs), opened once and held for a few seconds. Every
 * webhook needs the tenant's secret to check a signature; opening it per request would cost a
 * query and an unwrap on the hottest path. The cost of the cache is that provider secrets stay
 * in this process's memory for up to TENANT_CACHE_MS after their last use, and a changed
 * tenant takes that long to apply (the same window as data keys, see docs/providers.md).
 */
export class TenantDirectory {
  private readonly bySlugCache = new Map<string, { at: number; tenant: Promise<TenantContext | undefined> }>();

  constructor(
    private readonly db: Db,
    private readonly repository: TenantRepository,
    private readonly options: { ttlMs?: number; now?: () => number } = {},
  ) {}

  bySlug(slug: string): Promise<TenantContext | undefined> {
    const now = (this.options.now ?? Date.now)();
    const cached = this.bySlugCache.get(slug);
    if (cached && now - cached.at < (this.options.ttlMs ?? TENANT_CACHE_MS)) return cached.tenant;
    const tenant = this.load(slug).catch((error: unknown) => {
      this.bySlugCache.delete(slug);
      throw error;
    });
    // Unknown slugs are cached too (as undefined): a flood of forged webhooks for made-up
    // tenants costs one query per slug per window, not one per request. The map is bounded.
    if (this.bySlugCache.size > 10_000) this.bySlugCache.clear();
    this.bySlugCache.set(slug, { at: now, tenant });
    return tenant;
  }

  async byId(id: string): Promise<TenantContext | undefined> {
    const [row] = await this.db.select({ slug: tenants.slug }).from(tenants).where(eq(tenants.id, id)).limit(1);
    return row ? this.bySlug(row.slug) : undefined;
  }

  /** Forget everything (a test changed a tenant and wants the change now). */
  clear(): void {
    this.bySlugCache.clear();
  }

  private async load(slug: string): Promise<TenantContext | undefined> {
    const [row] = await this.db.select({ id: tenants.id, slug: tenants.slug, settings: tenants.settings }).from(tenants).where(eq(tenants.slug, slug)).limit(1);
    if (!row) return undefined;
    try {
      return { ...row, secrets: await this.repository.openSecrets(row.id) };
    } catch (error) {
      // A tenant whose keys were shredded and whose rows are not removed yet is, to webhooks
      // and jobs, a tenant that does not exist (403, like any unknown tenant), not a 500.
      if (error instanceof SealOpenError && (await isScopeDestroyed(this.db, row.id))) return undefined;
      throw error;
    }
  }
}
