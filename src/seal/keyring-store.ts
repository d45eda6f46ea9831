/**
 * Where the keyring keeps its data keys: the one thing the seal layer needs from a database,
 * declared here so that seal never imports the store. The store implements it over the
 * `data_keys` table (src/store/repositories/data-keys.ts); tests may implement it in memory.
 *
 * A data key (DEK) is identified by its scope (a tenant id, or `system`) and its version. It is
 * only ever stored wrapped under a KEK; the keyring wraps and unwraps, the store never sees a
 * key in clear. A destroyed key keeps its version (versions are never reused) but has lost its
 * wrapped form: that is crypto-shredding, and a scope whose versions are all destroyed is
 * shredded for good.
 */
export interface KeyringStore {
  /**
   * Every data key of every scope, active and destroyed, ordered by scope and then version.
   * Reads committed state: a version another process added appears once that process has
   * committed it. A destroyed key has `wrappedKey` null.
   */
  list(): Promise<StoredDataKey[]>;

  /**
   * Adds the next version of `scope` and resolves with its number; the key stored is whatever
   * `wrap(version)` resolves with, in state `active`. The version is one above the highest the
   * scope has ever had, destroyed ones included.
   *
   * Atomic and serialised per scope across processes: from reading the highest version to the
   * commit of the new row, the scope is locked against every other `addVersion` and against
   * destroying the scope's keys, so two rotations at once get two distinct versions and a
   * rotation never slips past a shred.
   *
   * - Rejects with ScopeDestroyedError, without calling `wrap` and writing nothing, when the
   *   scope is shredded (it has destroyed versions and no active one).
   * - With `onlyIfNone`, resolves undefined without calling `wrap` when the scope already has a
   *   version (first use of a scope racing another process's first use).
   * - When `wrap` rejects, nothing is written and the rejection is passed on.
   */
  addVersion(scope: string, options: { onlyIfNone: boolean }, wrap: (version: number) => Promise<WrappedDataKey>): Promise<number | undefined>;

  /**
   * Stores `wrapped` as the wrapping of one active key, records when it was re-wrapped, and
   * changes nothing when the key is no longer wrapped under `fromKekId` (another rewrap, or a
   * shred, got there first). The key itself, and every value sealed under it, stay the same.
   */
  replaceWrapping(key: { scope: string; version: number }, fromKekId: string, wrapped: WrappedDataKey): Promise<void>;
}

/** A data key as the store holds it. */
export interface StoredDataKey {
  scope: string;
  version: number;
  state: 'active' | 'destroyed';
  /** The DEK wrapped under the KEK `kekId`; null once destroyed. */
  wrappedKey: Buffer | null;
  /** Which kind of key provider wrapped it (`local`, `pkcs11`; `none` for a tombstone). */
  kekKind: string;
  kekId: string;
  createdAt: Date;
}

/** A DEK wrapped by a key provider, ready to store. */
export interface WrappedDataKey {
  wrappedKey: Buffer;
  kekKind: string;
  kekId: string;
}
