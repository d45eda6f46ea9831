/**
 * The public sealing API for repositories: seal and open column values, compute blind
 * indexes. It owns no keys; a Keyring supplies the plaintext DEK of each scope and
 * version, and this class derives and caches the per-column keys from it.
 */

import { createSecretKey, randomBytes, timingSafeEqual, type KeyObject } from 'node:crypto';
import { normalise, type Normaliser } from '../domain/normalise.js';
import { sealCounters } from '../metrics/seal-counters.js';
import { BindingBuilder, bindingPrefix, type BindingContext, type ColumnContext } from './binding.js';
import { checkBlindIndexLength, computeBlindIndex } from './blind-index.js';
import { DEK_BYTES, deriveBlindIndexKey, deriveColumnKey } from './derive.js';
import { HEADER_BYTES, openEnvelopeWithAadSlot, readEnvelopeHeader, sealEnvelopeWithAadSlot } from './envelope.js';
import { MissingKeyError, SealInputError, SealOpenError, type SealOpenFailure } from './errors.js';

/**
 * Source of plaintext DEKs, by scope (a tenant id, or `system`). Persistence and wrapping
 * under the KEK live behind it; the Sealer only asks. Hand out the same Buffer for a
 * (scope, version) each time: the Sealer compares it with the DEK its cached column keys
 * came from, and a fresh copy per call costs a constant-time compare on every operation.
 */
export interface Keyring {
  /** The version new values are sealed with; throws MissingKeyError when the scope has none. */
  current(scope: string): { version: number; dek: Buffer };
  /** A DEK that may still have data under it, or undefined when unknown or destroyed. */
  byVersion(scope: string, version: number): Buffer | undefined;
  /**
   * Every version that may still have data under it, newest first. Blind-index lookups
   * during a rotation compute one index per version, because rows not yet moved forward
   * were indexed with an older key.
   */
  activeVersions(scope: string): readonly number[];
}

export type SealContext = BindingContext;
export type IndexContext = ColumnContext;

export interface BlindIndexOptions {
  normaliser: Normaliser;
  /** Declared per column, 8 to 32; see docs/sealing.md. */
  lengthBytes: number;
}

export class Sealer {
  // scope → table → column → version. Nested maps rather than one joined string key:
  // nothing built from caller input can alias another entry, and the hot path allocates
  // no key string.
  private readonly cache = new Map<string, Map<string, Map<string, Map<number, ColumnKeys>>>>();

  constructor(private readonly keyring: Keyring) {}

  seal(ctx: SealContext, plaintext: string | Buffer): Buffer {
    const { version, dek } = this.keyring.current(ctx.tenantId);
    const keys = this.keysFor(ctx, version, dek);
    const aad = keys.bindings.forRow(ctx.rowId);
    const plaintextBytes = typeof plaintext === 'string' ? Buffer.from(plaintext, 'utf8') : plaintext;
    let sealed: Buffer;
    try {
      sealed = sealEnvelopeWithAadSlot(keys.columnKey(), version, plaintextBytes, aad);
    } finally {
      // Short strings land in Node's shared buffer pool; wipe our own copy rather than
      // leave plaintext there until the slot is reused. A caller's Buffer is theirs.
      if (plaintextBytes !== plaintext) plaintextBytes.fill(0);
    }
    sealCounters.seals++;
    return sealed;
  }

  /** Opens with the key version named in the envelope. Throws SealOpenError, never guesses. */
  open(ctx: SealContext, sealed: Buffer): Buffer {
    try {
      const header = readEnvelopeHeader(sealed);
      if (header === null) throw new SealOpenError('not-sealed');
      const dek = this.keyring.byVersion(ctx.tenantId, header.keyVersion);
      if (dek === undefined) throw new SealOpenError('unknown-key-version');
      const keys = this.keysFor(ctx, header.keyVersion, dek);
      const plaintext = openEnvelopeWithAadSlot(keys.columnKey(), sealed, keys.bindings.forRow(ctx.rowId));
      sealCounters.opens++;
      return plaintext;
    } catch (error) {
      if (error instanceof SealOpenError) {
        sealCounters.openFailures++;
        sealCounters.openFailuresByReason[error.reason]++;
      }
      throw error;
    }
  }

  openString(ctx: SealContext, sealed: Buffer): string {
    const plaintext = this.open(ctx, sealed);
    const text = plaintext.toString('utf8');
    plaintext.fill(0); // only the string is handed out, so the bytes need not outlive it
    return text;
  }

  /** The index to store with a value sealed now (current key version). */
  blindIndex(ctx: IndexContext, value: string, opts: BlindIndexOptions): Buffer {
    checkBlindIndexLength(opts.lengthBytes);
    const normalised = normalise(opts.normaliser, value);
    const { version, dek } = this.keyring.current(ctx.tenantId);
    const index = computeBlindIndex(this.keysFor(ctx, version, dek).indexKey(), normalised, opts.lengthBytes);
    sealCounters.blindIndexes++;
    return index;
  }

  /** One index per active key version, newest first: `WHERE idx = ANY($1)` during rotation. */
  blindIndexAllVersions(ctx: IndexContext, value: string, opts: BlindIndexOptions): Buffer[] {
    checkBlindIndexLength(opts.lengthBytes);
    const normalised = normalise(opts.normaliser, value);
    const indexes: Buffer[] = [];
    for (const version of this.keyring.activeVersions(ctx.tenantId)) {
      const dek = this.keyring.byVersion(ctx.tenantId, version);
      if (dek === undefined) continue;
      indexes.push(computeBlindIndex(this.keysFor(ctx, version, dek).indexKey(), normalised, opts.lengthBytes));
      sealCounters.blindIndexes++;
    }
    return indexes;
  }

  /** Drops cached derived keys, e.g. after a tenant's DEKs were destroyed. */
  forget(scope?: string): void {
    if (scope === undefined) this.cache.clear();
    else this.cache.delete(scope);
  }

  private keysFor(ctx: ColumnContext, version: number, dek: Buffer): ColumnKeys {
    const byVersion = this.cache.get(ctx.tenantId)?.get(ctx.table)?.get(ctx.column);
    const cached = byVersion?.get(version);
    // The keyring stays authoritative: a cached entry is used only while it was derived
    // from the DEK the keyring hands out now.
    if (cached !== undefined && sameKey(cached.dek, dek)) return cached;

    const keys = new ColumnKeys(dek, ctx);
    (byVersion ?? this.versionsOf(ctx)).set(version, keys);
    return keys;
  }

  private versionsOf(ctx: ColumnContext): Map<number, ColumnKeys> {
    const byTable = getOrCreate(this.cache, ctx.tenantId);
    const byColumn = getOrCreate(byTable, ctx.table);
    return getOrCreate(byColumn, ctx.column);
  }
}

/** A test and benchmark keyring; production DEKs are persisted wrapped under the KEK. */
export class InMemoryKeyring implements Keyring {
  // Newest first, recomputed on change: current() is on every seal's path.
  private readonly scopes = new Map<string, { deks: Map<number, Buffer>; newestFirst: number[] }>();

  /** Installs a DEK (copied) under a version. */
  add(scope: string, version: number, dek: Buffer): this {
    if (dek.length !== DEK_BYTES) throw new SealInputError(`a data key must be ${DEK_BYTES} bytes`);
    if (!Number.isInteger(version) || version < 1 || version > 0xffffffff) {
      throw new SealInputError('key version must be an integer from 1 to 2^32-1');
    }
    let entry = this.scopes.get(scope);
    if (entry === undefined) {
      entry = { deks: new Map(), newestFirst: [] };
      this.scopes.set(scope, entry);
    }
    entry.deks.set(version, Buffer.from(dek));
    entry.newestFirst = [...entry.deks.keys()].sort((a, b) => b - a);
    return this;
  }

  /** Adds a random DEK one version above the newest and returns its version. */
  rotate(scope: string): number {
    const next = (this.activeVersions(scope)[0] ?? 0) + 1;
    this.add(scope, next, randomBytes(DEK_BYTES));
    return next;
  }

  /** Destroys a version: values sealed under it can no longer be opened. */
  retire(scope: string, version: number): void {
    const entry = this.scopes.get(scope);
    if (entry === undefined) return;
    entry.deks.get(version)?.fill(0);
    entry.deks.delete(version);
    entry.newestFirst = entry.newestFirst.filter((v) => v !== version);
  }

  current(scope: string): { version: number; dek: Buffer } {
    const entry = this.scopes.get(scope);
    const version = entry?.newestFirst[0];
    const dek = version === undefined ? undefined : entry?.deks.get(version);
    if (version === undefined || dek === undefined) throw new MissingKeyError(scope);
    return { version, dek };
  }

  byVersion(scope: string, version: number): Buffer | undefined {
    return this.scopes.get(scope)?.deks.get(version);
  }

  activeVersions(scope: string): readonly number[] {
    return this.scopes.get(scope)?.newestFirst ?? [];
  }
}

/** Keys of one (scope, version, table, column), derived on first use of each purpose. */
class ColumnKeys {
  readonly bindings: BindingBuilder;
  private sealingKey: KeyObject | undefined;
  private blindIndexKey: KeyObject | undefined;

  constructor(
    readonly dek: Buffer,
    private readonly ctx: ColumnContext,
  ) {
    this.bindings = new BindingBuilder(bindingPrefix(ctx), HEADER_BYTES);
  }

  columnKey(): KeyObject {
    this.sealingKey ??= toKeyObject(deriveColumnKey(this.dek, this.ctx.table, this.ctx.column));
    return this.sealingKey;
  }

  indexKey(): KeyObject {
    this.blindIndexKey ??= toKeyObject(deriveBlindIndexKey(this.dek, this.ctx.table, this.ctx.column));
    return this.blindIndexKey;
  }
}

function toKeyObject(raw: Buffer): KeyObject {
  const key = createSecretKey(raw);
  raw.fill(0); // createSecretKey copied it; the loose copy is not needed any more.
  return key;
}

function sameKey(a: Buffer, b: Buffer): boolean {
  return a === b || (a.length === b.length && timingSafeEqual(a, b));
}

function getOrCreate<K, InnerK, InnerV>(map: Map<K, Map<InnerK, InnerV>>, key: K): Map<InnerK, InnerV> {
  let inner = map.get(key);
  if (inner === undefined) {
    inner = new Map();
    map.set(key, inner);
  }
  return inner;
}
