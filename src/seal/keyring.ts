import { randomBytes } from 'node:crypto';
import { and, eq, sql } from 'drizzle-orm';
import type { Db } from '../store/connection.js';
import { dataKeys } from '../store/schema.js';
import { DEK_BYTES } from './derive.js';
import { ScopeDestroyedError } from './errors.js';
import { KeyProviderError, type KeyProvider } from './providers/key-provider.js';
import { InMemoryKeyring, type Keyring } from './sealer.js';

export class KekMismatchError extends KeyProviderError {
  constructor(scope: string, version: number, storedKekId: string, configuredKekId: string) {
    super(
      `keys: data key ${scope} v${version} is wrapped under ${storedKekId}, but the configured key is ${configuredKekId}; ` +
        'start with the key it was wrapped under, or run `ciphergate keys rewrap` to move it',
    );
  }
}

/**
 * The DEKs of every scope, persisted wrapped in `data_keys` and held unwrapped in memory only.
 * The Sealer's hot path asks synchronously; `refresh()` (on an interval in `serve`, and after
 * any change made here) picks up versions that another process added.
 */
export class StoredKeyring implements Keyring {
  /** The unwrapped DEKs; InMemoryKeyring gives the version bookkeeping, this class the persistence. */
  private readonly held = new InMemoryKeyring();
  private readonly scopes = new Set<string>();
  private readonly retireListeners: Array<(scope: string) => void> = [];

  private constructor(
    private readonly db: Db,
    private readonly provider: KeyProvider,
  ) {}

  /** Loads and unwraps every active DEK; fails when one is wrapped under another KEK. */
  static async open(db: Db, provider: KeyProvider): Promise<StoredKeyring> {
    const keyring = new StoredKeyring(db, provider);
    await keyring.refresh();
    return keyring;
  }

  /** A keyring that has loaded nothing yet: for `keys rewrap`, whose DEKs are still under the old KEK. */
  static unloaded(db: Db, provider: KeyProvider): StoredKeyring {
    return new StoredKeyring(db, provider);
  }

  get kekId(): string {
    return this.provider.kekId;
  }

  current(scope: string): { version: number; dek: Buffer } {
    return this.held.current(scope);
  }

  byVersion(scope: string, version: number): Buffer | undefined {
    return this.held.byVersion(scope, version);
  }

  activeVersions(scope: string): readonly number[] {
    return this.held.activeVersions(scope);
  }

  /**
   * Calls `listener(scope)` after a refresh wiped DEKs of that scope from memory (destroyed
   * elsewhere): the Sealer's derived column keys of the scope must go too (open-sealing.ts).
   */
  onRetire(listener: (scope: string) => void): void {
    this.retireListeners.push(listener);
  }

  has(scope: string): boolean {
    return this.held.activeVersions(scope).length > 0;
  }

  /**
   * Re-reads `data_keys`. DEKs already held are kept (same Buffer, so the Sealer's derived-key
   * cache stays valid); new ones are unwrapped; destroyed ones are wiped from memory.
   */
  async refresh(): Promise<void> {
    const rows = await this.db.select().from(dataKeys);
    const live = new Set<string>();
    for (const row of rows) {
      if (row.state !== 'active' || row.wrappedKey === null) continue;
      live.add(`${row.scope}\u0000${row.version}`);
      if (this.held.byVersion(row.scope, row.version) !== undefined) continue;
      if (row.kekId !== this.provider.kekId) throw new KekMismatchError(row.scope, row.version, row.kekId, this.provider.kekId);
      const dek = await this.provider.unwrapKey(row.wrappedKey, { scope: row.scope, version: row.version });
      // A refresh running alongside may have added it meanwhile; keep the Buffer already held.
      if (this.held.byVersion(row.scope, row.version) === undefined) this.held.add(row.scope, row.version, dek);
      dek.fill(0); // add() keeps its own copy
      this.scopes.add(row.scope);
    }
    const retired = new Set<string>();
    for (const scope of this.scopes) {
      for (const version of [...this.held.activeVersions(scope)]) {
        if (live.has(`${scope}\u0000${version}`)) continue;
        this.held.retire(scope, version);
        retired.add(scope);
      }
    }
    for (const scope of retired) for (const listener of this.retireListeners) listener(scope);
  }

  /** Makes version 1 for a scope that has no key yet; a no-op when it has one; ScopeDestroyedError when shredded. */
  async ensureScope(scope: string): Promise<void> {
    if (this.has(scope)) return;
    await this.addVersion(scope, { onlyIfNone: true });
  }

  /**
   * Adds a new DEK version for a scope: new writes use it at once, reads keep every active
   * version. Versions are allocated in the database, so two rotations at once get two
   * distinct versions instead of one overwriting the other. A destroyed scope is refused
   * (ScopeDestroyedError): rotation must not bring a shredded tenant back.
   */
  async rotate(scope: string): Promise<number> {
    return this.addVersion(scope, { onlyIfNone: false });
  }

  /** Scopes with at least one active DEK. */
  scopeNames(): string[] {
    return [...this.scopes].filter((scope) => this.has(scope)).sort();
  }

  private async addVersion(scope: string, options: { onlyIfNone: boolean }): Promise<number> {
    const dek = randomBytes(DEK_BYTES);
    try {
      const version = await this.db.transaction(async (tx) => {
        await lockScope(tx, scope);
        if (await isScopeDestroyed(tx, scope)) throw new ScopeDestroyedError(scope);
        const [latest] = await tx
          .select({ version: sql<number>`coalesce(max(${dataKeys.version}), 0)::int` })
          .from(dataKeys)
          .where(eq(dataKeys.scope, scope));
        const newest = latest?.version ?? 0;
        if (options.onlyIfNone && newest > 0) return undefined;
        const version = newest + 1;
        const wrappedKey = await this.provider.wrapKey(dek, { scope, version });
        await tx.insert(dataKeys).values({
          scope,
          version,
          wrappedKey,
          kekKind: this.provider.kind,
          kekId: this.provider.kekId,
          state: 'active',
          createdAt: new Date(),
        });
        return version;
      });
      await this.refresh();
      return version ?? this.current(scope).version;
    } finally {
      dek.fill(0);
    }
  }

  /**
   * Re-wraps every active DEK still under `from` with this keyring's provider. Data rows are
   * not touched: only the wrapping changes. Returns how many keys moved.
   */
  async rewrapFrom(from: KeyProvider): Promise<{ rewrapped: number; alreadyCurrent: number }> {
    const rows = await this.db.select().from(dataKeys).where(eq(dataKeys.state, 'active'));
    let rewrapped = 0;
    let alreadyCurrent = 0;
    for (const row of rows) {
      if (row.kekId === this.provider.kekId) {
        alreadyCurrent += 1;
        continue;
      }
      if (row.kekId !== from.kekId) throw new KekMismatchError(row.scope, row.version, row.kekId, from.kekId);
      const context = { scope: row.scope, version: row.version };
      const dek = await from.unwrapKey(row.wrappedKey!, context);
      try {
        const wrappedKey = await this.provider.wrapKey(dek, context);
        await this.db
          .update(dataKeys)
          .set({ wrappedKey, kekKind: this.provider.kind, kekId: this.provider.kekId, rewrappedAt: new Date() })
          .where(and(eq(dataKeys.scope, row.scope), eq(dataKeys.version, row.version), eq(dataKeys.kekId, from.kekId)));
        rewrapped += 1;
      } finally {
        dek.fill(0);
      }
    }
    await this.refresh();
    return { rewrapped, alreadyCurrent };
  }

  /** Wipes every DEK from memory (shutdown). */
  close(): void {
    for (const scope of this.scopes) for (const version of [...this.held.activeVersions(scope)]) this.held.retire(scope, version);
    this.scopes.clear();
  }
}

/**
 * Serialises every change to a scope's keys across processes (a new version, destroying them)
 * until the surrounding transaction ends.
 */
export async function lockScope(tx: Db, scope: string): Promise<void> {
  await tx.execute(sql`select pg_advisory_xact_lock(hashtext(${`data_keys:${scope}`}))`);
}

/**
 * True when the scope was shredded: it has destroyed versions and no active one left. (A single
 * old version destroyed beside a live one is not a shredded scope.)
 */
export async function isScopeDestroyed(db: Db, scope: string): Promise<boolean> {
  const rows = await db
    .select({ state: dataKeys.state, count: sql<number>`count(*)::int` })
    .from(dataKeys)
    .where(eq(dataKeys.scope, scope))
    .groupBy(dataKeys.state);
  const countOf = (state: string) => Number(rows.find((row) => row.state === state)?.count ?? 0);
  return countOf('destroyed') > 0 && countOf('active') === 0;
}

/**
 * Crypto-shredding: forgets the wrapped form of every DEK version of the scope (the rows stay
 * as `destroyed` tombstones, so versions are never reused and the scope is never re-keyed).
 * Run it inside the caller's transaction; it takes the scope lock that rotation takes, so a
 * rotation either committed before (and its version is destroyed here too) or waits and then
 * refuses. Returns the versions destroyed now (empty when they already were).
 */
export async function destroyScopeKeys(tx: Db, scope: string): Promise<number[]> {
  await lockScope(tx, scope);
  const destroyed = await tx
    .update(dataKeys)
    .set({ wrappedKey: null, state: 'destroyed' })
    .where(and(eq(dataKeys.scope, scope), eq(dataKeys.state, 'active')))
    .returning({ version: dataKeys.version });
  if (destroyed.length === 0 && !(await isScopeDestroyed(tx, scope))) {
    // A scope that never had a key still gets its tombstone, or ensureScope would make one later.
    await tx.insert(dataKeys).values({ scope, version: 1, wrappedKey: null, kekKind: 'none', kekId: 'none', state: 'destroyed', createdAt: new Date() });
    return [1];
  }
  return destroyed.map((row) => row.version).sort((a, b) => a - b);
}
