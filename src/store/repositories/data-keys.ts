import { and, asc, eq, sql } from 'drizzle-orm';
import { ScopeDestroyedError } from '../../seal/errors.js';
import type { KeyringStore, StoredDataKey, WrappedDataKey } from '../../seal/keyring-store.js';
import type { Db } from '../connection.js';
import { dataKeys } from '../schema.js';

/**
 * The keyring's persistence: wrapped data keys in `data_keys`, one row per scope and version.
 * The contract of each method is written on KeyringStore (src/seal/keyring-store.ts).
 */
export class DataKeyRepository implements KeyringStore {
  constructor(private readonly db: Db) {}

  async list(): Promise<StoredDataKey[]> {
    return listDataKeys(this.db);
  }

  async addVersion(scope: string, options: { onlyIfNone: boolean }, wrap: (version: number) => Promise<WrappedDataKey>): Promise<number | undefined> {
    return this.db.transaction(async (tx) => {
      await lockScope(tx, scope);
      if (await isScopeDestroyed(tx, scope)) throw new ScopeDestroyedError(scope);
      const [latest] = await tx
        .select({ version: sql<number>`coalesce(max(${dataKeys.version}), 0)::int` })
        .from(dataKeys)
        .where(eq(dataKeys.scope, scope));
      const newest = latest?.version ?? 0;
      if (options.onlyIfNone && newest > 0) return undefined;
      const version = newest + 1;
      const wrapped = await wrap(version);
      await tx.insert(dataKeys).values({
        scope,
        version,
        wrappedKey: wrapped.wrappedKey,
        kekKind: wrapped.kekKind,
        kekId: wrapped.kekId,
        state: 'active',
        createdAt: new Date(),
      });
      return version;
    });
  }

  async replaceWrapping(key: { scope: string; version: number }, fromKekId: string, wrapped: WrappedDataKey): Promise<void> {
    await this.db
      .update(dataKeys)
      .set({ wrappedKey: wrapped.wrappedKey, kekKind: wrapped.kekKind, kekId: wrapped.kekId, rewrappedAt: new Date() })
      .where(and(eq(dataKeys.scope, key.scope), eq(dataKeys.version, key.version), eq(dataKeys.kekId, fromKekId)));
  }
}

/** Every data key, ordered by scope and version (`keys status` reads them without a keyring). */
export async function listDataKeys(db: Db): Promise<StoredDataKey[]> {
  return db.select().from(dataKeys).orderBy(asc(dataKeys.scope), asc(dataKeys.version));
}

/**
 * Serialises every change to a scope's keys across processes (a new version, destroying them)
 * until the surrounding transaction ends.
 */
async function lockScope(tx: Db, scope: string): Promise<void> {
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
