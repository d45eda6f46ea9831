import { randomUUID } from 'node:crypto';
import { and, asc, eq, isNull, sql } from 'drizzle-orm';
import type { JWK } from 'jose';
import { SYSTEM_SCOPE, type SealedFields } from '../../seal/sealed-fields.js';
import type { Db } from '../connection.js';
import { signingKeysSealed } from '../sealed-tables.js';
import { signingKeys } from '../schema.js';

/** Any number nothing else uses: every process serialises the first-key check on it. */
const FIRST_SIGNING_KEY_LOCK_KEY = 0x4347534bn; // "CGSK"

/** One token-signing key as stored: the private JWK in plaintext here, sealed in the row. */
export interface StoredSigningKey {
  /** RFC 7638 thumbprint of the public key; also the JWT `kid` header. */
  kid: string;
  /** Public half (kty, crv, x). Stored in clear so the JWKS can be listed, but never trusted alone (src/identity/tokens/signing-keys.ts re-derives it). */
  publicJwk: JWK;
  /** Private half (includes `d`), sealed as JSON under the system key. */
  privateJwk: JWK;
  createdAt: Date;
  /** When a newer key took over; null for a key that may still sign. */
  retiredAt: Date | null;
}

/**
 * Token-signing keys in the database, the private JWK sealed under the system key and bound to
 * its row: a key copied into another row, or edited, fails to open instead of signing. This is
 * the `SigningKeyStore` that src/identity/tokens/signing-keys.ts reads and rotates keys through.
 */
export class SigningKeysRepository {
  constructor(
    private readonly db: Db,
    private readonly fields: SealedFields,
  ) {}

  async list(): Promise<StoredSigningKey[]> {
    const rows = await this.db.select().from(signingKeys).orderBy(asc(signingKeys.createdAt));
    const keys: StoredSigningKey[] = [];
    for (const row of rows) {
      const { privateJwk } = await this.fields.openRowFresh(signingKeysSealed, { scope: SYSTEM_SCOPE, id: row.id }, { privateJwk: row.privateJwk });
      keys.push({ kid: row.kid, publicJwk: row.publicJwk, privateJwk: JSON.parse(privateJwk!) as JWK, createdAt: row.createdAt, retiredAt: row.retiredAt });
    }
    return keys;
  }

  async insert(key: StoredSigningKey): Promise<void> {
    await this.insertRow(this.db, key);
  }

  /**
   * "Is there an active key? If not, insert one" under a transaction-scoped advisory lock, so
   * instances starting at once on an empty database create one key between them, not one each
   * (each would then sign with its own until the next reload, and the JWKS would list both).
   */
  async insertIfNoneActive(key: StoredSigningKey): Promise<boolean> {
    return this.db.transaction(async (tx) => {
      await tx.execute(sql`select pg_advisory_xact_lock(${FIRST_SIGNING_KEY_LOCK_KEY.toString()}::bigint)`);
      const [active] = await tx.select({ id: signingKeys.id }).from(signingKeys).where(isNull(signingKeys.retiredAt)).limit(1);
      if (active) return false;
      await this.insertRow(tx, key);
      return true;
    });
  }

  async retire(kid: string, retiredAt: Date): Promise<void> {
    await this.db.update(signingKeys).set({ retiredAt }).where(and(eq(signingKeys.kid, kid), isNull(signingKeys.retiredAt)));
  }

  private async insertRow(db: Db, key: StoredSigningKey): Promise<void> {
    const id = randomUUID();
    const sealed = this.fields.sealRow(signingKeysSealed, { scope: SYSTEM_SCOPE, id }, { privateJwk: JSON.stringify(key.privateJwk) });
    await db.insert(signingKeys).values({ id, kid: key.kid, publicJwk: key.publicJwk, ...sealed, createdAt: key.createdAt, retiredAt: key.retiredAt });
  }
}
