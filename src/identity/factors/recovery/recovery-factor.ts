import { SYSTEM_SCOPE, type SealedFields } from '../../../seal/sealed-fields.js';
import type { Db } from '../../../store/connection.js';
import type { RecoveryCodesRepository } from '../../../store/repositories/recovery-codes.js';
import type { FactorCheck, SecondFactor } from '../second-factor.js';
import { findRecoveryCode, generateRecoveryCodes, isLegacyForm, storedFormOf, type RecoveryCodeKey } from './recovery-codes.js';

/**
 * One-time recovery codes: ten, issued when an authenticator is confirmed (replacing the
 * earlier ten), for someone whose authenticator is lost. Stored as keyed MACs
 * (recovery-codes.ts); each is spent by a compare-and-set on `used_at`.
 */
export class RecoveryCodesFactor implements SecondFactor {
  readonly method = 'recovery';
  readonly standsAlone = false;

  /** The MAC key of stored codes: the system key's blind-index key of `recovery_codes.code_hash`, every version. */
  private readonly key: RecoveryCodeKey = {
    mac: (message) => this.fields.sealer.blindIndex(RECOVERY_CODE_MAC_CONTEXT, message, RECOVERY_CODE_MAC),
    macAllVersions: (message) => this.fields.sealer.blindIndexAllVersions(RECOVERY_CODE_MAC_CONTEXT, message, RECOVERY_CODE_MAC),
  };

  constructor(
    private readonly store: RecoveryCodesRepository,
    private readonly fields: SealedFields,
  ) {}

  offered(userId: string): Promise<boolean> {
    return this.store.hasUnused(userId);
  }

  async verify(attempt: { userId: string; code: string }): Promise<FactorCheck> {
    return (await this.redeem(attempt.userId, attempt.code)) ? { ok: true } : { ok: false, reason: 'wrong-or-used-code' };
  }

  remove(userId: string, tx: Db): Promise<number> {
    return this.store.removeAll(userId, tx);
  }

  /** Ten fresh codes for the user, replacing every earlier one, in the caller's transaction; returned for showing once. */
  async issue(userId: string, tx: Db, now: Date): Promise<string[]> {
    const codes = generateRecoveryCodes(userId, this.key);
    await this.store.replaceAll(userId, codes.hashes, now, tx);
    return codes.codes;
  }

  /**
   * Spends one code; true only for the request that spent it. Codes of this user still in the
   * unkeyed form (written by an older instance while a deployment upgrades) are checked as
   * they are, then re-keyed.
   */
  async redeem(userId: string, code: string, now: Date = new Date()): Promise<boolean> {
    const stored = await this.store.listOfUser(userId);
    const id = findRecoveryCode(stored, userId, code, this.key);
    for (const row of stored) if (isLegacyForm(row.hash)) await this.rekey({ id: row.id, userId, hash: row.hash });
    if (id === undefined) return false;
    return this.store.markUsed(id, now);
  }

  remaining(userId: string): Promise<number> {
    return this.store.countUnused(userId);
  }

  /**
   * Re-keys every code still stored as bare SHA-256 (before the keyed form): the MAC is taken
   * over that digest, so no code is needed and nobody is locked out. Run at start
   * (openIdentity); each row is a compare-and-set, so instances starting together do each row
   * once. Returns how many rows this call changed.
   */
  async upgradeLegacy(batchSize = 500): Promise<number> {
    let upgraded = 0;
    for (;;) {
      const rows = await this.store.legacyBatch(batchSize);
      for (const row of rows) if (await this.rekey(row)) upgraded += 1;
      // A row another instance re-keyed meanwhile no longer matches, so every pass shrinks the set.
      if (rows.length < batchSize) return upgraded;
    }
  }

  private rekey(row: { id: string; userId: string; hash: string }): Promise<boolean> {
    return this.store.replaceHash(row.id, row.hash, storedFormOf(row.userId, row.hash, this.key));
  }
}

/** Derived per (scope, table, column) like any blind-index key, so it is used for nothing else. */
const RECOVERY_CODE_MAC_CONTEXT = { tenantId: SYSTEM_SCOPE, table: 'recovery_codes', column: 'code_hash' } as const;
/** The whole HMAC-SHA256, untruncated ('exact' keeps the input as given). */
const RECOVERY_CODE_MAC = { normaliser: 'exact', lengthBytes: 32 } as const;
