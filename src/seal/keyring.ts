import { randomBytes } from 'node:crypto';
import { DEK_BYTES } from './derive.js';
import type { KeyringStore } from './keyring-store.js';
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
 * The DEKs of every scope, persisted wrapped in a KeyringStore (the store's `data_keys`) and
 * held unwrapped in memory only.
 * The Sealer's hot path asks synchronously; `refresh()` (on an interval in `serve`, and after
 * any change made here) picks up versions that another process added.
 */
export class StoredKeyring implements Keyring {
  /** The unwrapped DEKs; InMemoryKeyring gives the version bookkeeping, this class the persistence. */
  private readonly held = new InMemoryKeyring();
  private readonly scopes = new Set<string>();
  private readonly retireListeners: Array<(scope: string) => void> = [];

  private constructor(
    private readonly store: KeyringStore,
    private readonly provider: KeyProvider,
  ) {}

  /** Loads and unwraps every active DEK; fails when one is wrapped under another KEK. */
  static async open(store: KeyringStore, provider: KeyProvider): Promise<StoredKeyring> {
    const keyring = new StoredKeyring(store, provider);
    await keyring.refresh();
    return keyring;
  }

  /** A keyring that has loaded nothing yet: for `keys rewrap`, whose DEKs are still under the old KEK. */
  static unloaded(store: KeyringStore, provider: KeyProvider): StoredKeyring {
    return new StoredKeyring(store, provider);
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
   * elsewhere): the Sealer's derived column keys of the scope must go too (src/runtime/sealing.ts).
   */
  onRetire(listener: (scope: string) => void): void {
    this.retireListeners.push(listener);
  }

  has(scope: string): boolean {
    return this.held.activeVersions(scope).length > 0;
  }

  /**
   * Re-reads the stored keys. DEKs already held are kept (same Buffer, so the Sealer's derived-key
   * cache stays valid); new ones are unwrapped; destroyed ones are wiped from memory.
   */
  async refresh(): Promise<void> {
    const rows = await this.store.list();
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
      // The store allocates the version under its scope lock and refuses a shredded scope
      // (ScopeDestroyedError); the DEK is wrapped for exactly the version it allocated.
      const version = await this.store.addVersion(scope, options, async (allocated) => ({
        wrappedKey: await this.provider.wrapKey(dek, { scope, version: allocated }),
        kekKind: this.provider.kind,
        kekId: this.provider.kekId,
      }));
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
    const rows = (await this.store.list()).filter((row) => row.state === 'active');
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
        await this.store.replaceWrapping(context, from.kekId, { wrappedKey, kekKind: this.provider.kind, kekId: this.provider.kekId });
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
