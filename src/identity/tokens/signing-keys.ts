import { createPrivateKey, createPublicKey, generateKeyPairSync, type JsonWebKey } from 'node:crypto';
import { calculateJwkThumbprint, importJWK, type CryptoKey, type JWK } from 'jose';
import type { StoredSigningKey } from '../../store/repositories/signing-keys.js';
import { ACCESS_TOKEN_TTL_SECONDS, CLOCK_TOLERANCE_SECONDS } from './token-lifetimes.js';

/**
 * Ed25519 keys that sign access tokens, their rotation, and the public JWKS other services
 * verify with. The private half only ever leaves this module towards a `SigningKeyStore`,
 * which seals it before it reaches the database.
 */

export type { StoredSigningKey };

/**
 * Where signing keys live. The database's (src/store/repositories/signing-keys.ts) seals
 * `privateJwk` under the system scope, bound to the row, so a key copied between rows or
 * tampered with fails to open.
 */
export interface SigningKeyStore {
  list(): Promise<StoredSigningKey[]>;
  insert(key: StoredSigningKey): Promise<void>;
  /**
   * Inserts `key` only if no key is active, atomically across every process sharing the store:
   * instances started together on an empty database must agree on one first key. Returns
   * whether `key` was inserted.
   */
  insertIfNoneActive(key: StoredSigningKey): Promise<boolean>;
  /** Sets `retiredAt` on a key that has none; a no-op for an already retired key. */
  retire(kid: string, retiredAt: Date): Promise<void>;
}

/** The one signing key in use, with its private half imported for jose. */
export interface ActiveSigningKey {
  kid: string;
  privateKey: CryptoKey;
  createdAt: Date;
}

/** A public JWK as published at `/.well-known/jwks.json`. */
export interface PublishedJwk {
  kty: 'OKP';
  crv: 'Ed25519';
  x: string;
  kid: string;
  alg: 'EdDSA';
  use: 'sig';
}

export interface JsonWebKeySet {
  keys: PublishedJwk[];
}

/**
 * How often a server re-reads the key store (src/runtime/server.ts). Until it does, a
 * server that did not perform a rotation keeps signing with the key another process retired.
 */
export const SIGNING_KEY_RELOAD_INTERVAL_MS = 10_000;

/**
 * A retired key keeps verifying for as long as a token it signed could still be accepted: the
 * token lifetime plus the verifier's clock tolerance, plus the reload interval, because other
 * servers may go on signing with it for that long after it was retired. After that every token
 * it signed has expired anyway, so dropping it changes no outcome and shrinks what a leaked
 * old key could do.
 */
export const RETIRED_KEY_VERIFICATION_WINDOW_MS = (ACCESS_TOKEN_TTL_SECONDS + CLOCK_TOLERANCE_SECONDS) * 1000 + SIGNING_KEY_RELOAD_INTERVAL_MS;

/**
 * A kid we do not know may belong to a key another instance just rotated in, so a miss reloads
 * the store; but a kid is attacker-chosen, so at most one reload per interval, or garbage kids
 * would turn every request into a database query.
 */
const RELOAD_ON_MISS_INTERVAL_MS = 5_000;

export class SigningKeyIntegrityError extends Error {
  override readonly name = 'SigningKeyIntegrityError';
  constructor(
    readonly kid: string,
    message: string,
  ) {
    super(`signing key ${kid}: ${message}`);
  }
}

export class SigningKeys {
  private keys: LoadedKey[] = [];
  private lastReload = Number.NEGATIVE_INFINITY;

  private constructor(
    private readonly store: SigningKeyStore,
    private readonly now: () => Date,
  ) {}

  /** Loads the store's keys and creates the first one when none may sign. */
  static async open(store: SigningKeyStore, options: { now?: () => Date } = {}): Promise<SigningKeys> {
    const keys = new SigningKeys(store, options.now ?? (() => new Date()));
    await keys.reload();
    if (!keys.newestActive()) {
      // Another instance may be doing the same right now; the store lets only one key in.
      await store.insertIfNoneActive(await generateSigningKey(keys.now()));
      await keys.reload();
    }
    return keys;
  }

  /** The key new tokens are signed with: the newest key not retired. */
  current(): ActiveSigningKey {
    const key = this.newestActive();
    // open() guarantees one and rotate() inserts before it retires, so this is a broken store.
    if (!key) throw new Error('no active signing key; was SigningKeys.open() used?');
    return { kid: key.kid, privateKey: key.privateKey, createdAt: key.createdAt };
  }

  /**
   * Makes a fresh key current and retires every other active key (more than one exists only
   * after two instances rotated or opened at once). The new key is inserted before the old
   * ones are retired, so a crash in between leaves two active keys, never none.
   */
  async rotate(): Promise<ActiveSigningKey> {
    // Fresh list first, so keys another instance added since our last load are retired too.
    await this.reload();
    const at = this.now();
    const fresh = await generateSigningKey(at);
    await this.store.insert(fresh);
    for (const key of this.keys) {
      if (key.retiredAt === null && key.kid !== fresh.kid) await this.store.retire(key.kid, at);
    }
    await this.reload();
    return this.current();
  }

  /** The public key for `kid` if it may verify at `at`, reloading the store once on a miss. */
  async verificationKey(kid: string, at: Date = this.now()): Promise<CryptoKey | undefined> {
    const found = this.verifiable(at).find((key) => key.kid === kid);
    if (found) return found.publicKey;
    if (this.now().getTime() - this.lastReload < RELOAD_ON_MISS_INTERVAL_MS) return undefined;
    await this.reload();
    return this.verifiable(at).find((key) => key.kid === kid)?.publicKey;
  }

  /**
   * Every key a verifier should accept at `at`: the current one and those retired less than the
   * verification window ago. Built member by member so no private field can slip through.
   */
  jwks(at: Date = this.now()): JsonWebKeySet {
    return {
      keys: this.verifiable(at).map((key) => ({ kty: 'OKP', crv: 'Ed25519', x: key.x, kid: key.kid, alg: 'EdDSA', use: 'sig' })),
    };
  }

  /**
   * Re-reads the store. Instances sharing a database should call this periodically (or on a
   * rotation notice): until they do they keep signing with a key another instance retired,
   * whose tokens stop verifying once its window ends.
   */
  async reload(): Promise<void> {
    const stored = await this.store.list();
    this.keys = await Promise.all(stored.map(loadKey));
    this.lastReload = this.now().getTime();
  }

  private newestActive(): LoadedKey | undefined {
    return this.keys
      .filter((key) => key.retiredAt === null)
      .sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || (a.kid < b.kid ? 1 : -1))[0];
  }

  private verifiable(at: Date): LoadedKey[] {
    return this.keys
      .filter((key) => key.retiredAt === null || at.getTime() < key.retiredAt.getTime() + RETIRED_KEY_VERIFICATION_WINDOW_MS)
      .sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime());
  }
}

/** Keeps keys in a Map; for tests and for a single process that can afford new keys on restart. */
export class InMemorySigningKeyStore implements SigningKeyStore {
  private readonly keys = new Map<string, StoredSigningKey>();

  async list(): Promise<StoredSigningKey[]> {
    return [...this.keys.values()].map((key) => structuredClone(key));
  }

  async insert(key: StoredSigningKey): Promise<void> {
    if (this.keys.has(key.kid)) throw new Error(`signing key ${key.kid} already exists`);
    this.keys.set(key.kid, structuredClone(key));
  }

  async insertIfNoneActive(key: StoredSigningKey): Promise<boolean> {
    if ([...this.keys.values()].some((stored) => stored.retiredAt === null)) return false;
    await this.insert(key);
    return true;
  }

  async retire(kid: string, retiredAt: Date): Promise<void> {
    const key = this.keys.get(kid);
    if (key && key.retiredAt === null) key.retiredAt = new Date(retiredAt);
  }
}

/** A new Ed25519 key pair as the store keeps it. */
export async function generateSigningKey(createdAt: Date): Promise<StoredSigningKey> {
  const { privateKey } = generateKeyPairSync('ed25519');
  const privateJwk = privateKey.export({ format: 'jwk' }) as JWK;
  const publicJwk = publicPart(privateJwk);
  return { kid: await calculateJwkThumbprint(publicJwk, 'sha256'), publicJwk, privateJwk, createdAt, retiredAt: null };
}

interface LoadedKey {
  kid: string;
  x: string;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  createdAt: Date;
  retiredAt: Date | null;
}

/**
 * The public key is derived from the private one, which the store has opened and
 * authenticated; the clear `publicJwk` and `kid` columns are only checked against it. Trusting
 * them would let anyone with write access to the table swap in a public key of their own and
 * forge tokens that verify.
 */
async function loadKey(stored: StoredSigningKey): Promise<LoadedKey> {
  const { privateJwk } = stored;
  if (privateJwk.kty !== 'OKP' || privateJwk.crv !== 'Ed25519' || typeof privateJwk.d !== 'string') {
    throw new SigningKeyIntegrityError(stored.kid, 'private key is not an Ed25519 private JWK');
  }
  const derived = createPublicKey(createPrivateKey({ key: privateJwk as JsonWebKey, format: 'jwk' })).export({ format: 'jwk' }) as JWK;
  const publicJwk = publicPart(derived);
  if (stored.publicJwk.x !== publicJwk.x) throw new SigningKeyIntegrityError(stored.kid, 'stored public key does not match the private key');
  if ((await calculateJwkThumbprint(publicJwk, 'sha256')) !== stored.kid) throw new SigningKeyIntegrityError(stored.kid, 'kid is not the thumbprint of the key');
  return {
    kid: stored.kid,
    x: publicJwk.x!,
    privateKey: (await importJWK({ ...privateJwk, x: publicJwk.x }, 'EdDSA')) as CryptoKey,
    publicKey: (await importJWK(publicJwk, 'EdDSA')) as CryptoKey,
    createdAt: new Date(stored.createdAt),
    retiredAt: stored.retiredAt === null ? null : new Date(stored.retiredAt),
  };
}

function publicPart(jwk: JWK): JWK {
  return { kty: 'OKP', crv: 'Ed25519', x: jwk.x! };
}
