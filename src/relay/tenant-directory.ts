import type { TenantSettings } from '../domain/tenant.js';
import { SealOpenError } from '../seal/errors.js';
import { isScopeDestroyed } from '../store/repositories/data-keys.js';
import type { Db } from '../store/connection.js';
import type { TenantRepository, TenantSecrets } from '../store/repositories/tenants.js';

/** A tenant as the relay needs it: settings and opened provider secrets. */
export interface TenantContext {
  id: string;
  slug: string;
  settings: TenantSettings;
  secrets: TenantSecrets;
}

/** How long an opened tenant is reused; a `tenants put` reaches every instance within it. */
export const TENANT_CACHE_MS = 10_000;
/** The set of known slugs is read again for a missing slug at most this often. */
const KNOWN_SLUGS_RELOAD_MS = 1_000;

/**
 * Tenants by slug (webhooks) and by id (jobs), opened once and held for a few seconds. Every
 * webhook needs the tenant's secret to check a signature; opening it per request would cost a
 * query and an unwrap on the hottest path. The cost of the cache is that provider secrets stay
 * in this process's memory for up to TENANT_CACHE_MS after their last use, and a changed
 * tenant takes that long to apply (the same window as data keys, see docs/providers.md).
 */
export class TenantDirectory {
  private readonly bySlugCache = new Map<string, { at: number; tenant: Promise<TenantContext | undefined> }>();
  /** Every slug that exists, as last read; see `mayExist`. */
  private knownSlugs: { at: number; slugs: Promise<Set<string>> } | undefined;

  constructor(
    /** Asked whether a tenant's keys were shredded (the keyring's record, not this tenant's rows). */
    private readonly db: Db,
    private readonly repository: TenantRepository,
    private readonly options: { ttlMs?: number; now?: () => number } = {},
  ) {}

  /**
   * The tenant a webhook URL names. A slug that is not in the set of known slugs (`mayExist`) is
   * answered from memory and not cached, so made-up slugs neither query nor crowd the cache.
   */
  async bySlug(slug: string): Promise<TenantContext | undefined> {
    if (!this.isCached(slug) && !(await this.mayExist(slug))) return undefined;
    return this.cached(slug, () => this.load(slug));
  }

  async byId(id: string): Promise<TenantContext | undefined> {
    const slug = await this.repository.slugOf(id);
    // The row exists: no need to ask the set of known slugs, which may predate the tenant.
    return slug === undefined ? undefined : this.cached(slug, () => this.load(slug));
  }

  private isCached(slug: string): boolean {
    const cached = this.bySlugCache.get(slug);
    return cached !== undefined && (this.options.now ?? Date.now)() - cached.at < (this.options.ttlMs ?? TENANT_CACHE_MS);
  }

  private cached(slug: string, load: () => Promise<TenantContext | undefined>): Promise<TenantContext | undefined> {
    const now = (this.options.now ?? Date.now)();
    const cached = this.bySlugCache.get(slug);
    if (cached && now - cached.at < (this.options.ttlMs ?? TENANT_CACHE_MS)) return cached.tenant;
    const tenant = load().catch((error: unknown) => {
      this.bySlugCache.delete(slug);
      throw error;
    });
    // A slug that vanished since the set was read is cached too (as undefined). The map is bounded.
    if (this.bySlugCache.size > 10_000) this.bySlugCache.clear();
    this.bySlugCache.set(slug, { at: now, tenant });
    return tenant;
  }

  /** Forget everything (a test changed a tenant and wants the change now). */
  clear(): void {
    this.bySlugCache.clear();
    this.knownSlugs = undefined;
  }

  /**
   * Whether a tenant with this slug may exist, from the set of every slug (one small query).
   * A flood of forged webhooks for a new made-up slug each time would otherwise cost a query per
   * request (issue #13 item 1); with the set it costs at most one query a second. A slug not in
   * a set older than a second reloads it, so a tenant created by another process (`tenants
   * put`) is found within a second, as before.
   */
  private async mayExist(slug: string): Promise<boolean> {
    const clock = this.options.now ?? Date.now;
    const known = this.currentSlugs(clock(), this.options.ttlMs ?? TENANT_CACHE_MS);
    if ((await known.slugs).has(slug)) return true;
    const reloaded = this.currentSlugs(clock(), KNOWN_SLUGS_RELOAD_MS);
    return reloaded !== known && (await reloaded.slugs).has(slug);
  }

  /** The set read at most `maxAgeMs` ago, read now if there is none; concurrent callers share one read. */
  private currentSlugs(now: number, maxAgeMs: number): { at: number; slugs: Promise<Set<string>> } {
    if (this.knownSlugs && now - this.knownSlugs.at < maxAgeMs) return this.knownSlugs;
    const slugs = this.repository.allSlugs();
    const loading = { at: now, slugs };
    // A failed read is not kept: the next caller tries again (and this one gets the error).
    slugs.catch(() => {
      if (this.knownSlugs === loading) this.knownSlugs = undefined;
    });
    this.knownSlugs = loading;
    return loading;
  }

  private async load(slug: string): Promise<TenantContext | undefined> {
    const row = await this.repository.settingsBySlug(slug);
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
