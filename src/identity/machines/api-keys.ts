import { randomUUID } from 'node:crypto';
import type { Db } from '../../store/connection.js';
import { ApiKeysRepository, type ApiKeyRow, type ApiKeyWithCreator } from '../../store/repositories/api-keys.js';
import { OPAQUE_TOKEN_PREFIXES, hashOpaqueToken, isOpaqueToken, issueOpaqueToken } from '../tokens/opaque-tokens.js';
import type { ApiKeyScope, Role } from '../permissions.js';

/**
 * API keys for machines: `cgk_` + 256 random bits, shown once, stored as SHA-256, bound to a
 * tenant and a set of scopes, with an optional expiry. A key is used directly as a bearer
 * token, or as the client secret of the OAuth client-credentials grant (client id = key id).
 */
export interface ApiKeyRecord extends Omit<ApiKeyRow, 'scopes'> {
  scopes: ApiKeyScope[];
}

/** A live key and the user who made it, as that user is now (null once deleted). */
export interface KeyWithCreator extends Omit<ApiKeyWithCreator, 'scopes' | 'creator'> {
  scopes: ApiKeyScope[];
  creator: { role: Role; status: NonNullable<ApiKeyWithCreator['creator']>['status'] } | null;
}

/** `last_used_at` is written at most this often per key: one write per request would be the cost of the whole request. */
const LAST_USED_GRANULARITY_MS = 60_000;

/** The keys, newest first, for an operator's listing: it reads nothing sealed, so it needs no identity opened. */
export function listApiKeys(db: Db, filter: { tenantId?: string } = {}): Promise<ApiKeyRecord[]> {
  return new ApiKeys(new ApiKeysRepository(db)).list(filter);
}

export class ApiKeys {
  constructor(
    private readonly store: ApiKeysRepository,
    private readonly now: () => Date = () => new Date(),
  ) {}

  async create(input: { name: string; tenantId: string | null; scopes: ApiKeyScope[]; expiresAt?: Date | null; createdBy?: string | null }, db?: Db): Promise<{ record: ApiKeyRecord; key: string }> {
    const { token, hash } = issueOpaqueToken('apiKey');
    const row = await this.store.insert(
      {
        id: randomUUID(),
        name: input.name,
        keyHash: hash,
        hint: token.slice(0, OPAQUE_TOKEN_PREFIXES.apiKey.length + 6),
        tenantId: input.tenantId,
        scopes: [...new Set(input.scopes)].sort(),
        createdBy: input.createdBy ?? null,
        createdAt: this.now(),
        expiresAt: input.expiresAt ?? null,
      },
      db,
    );
    return { record: asRecord(row), key: token };
  }

  /**
   * The live key behind `key` (not revoked, not expired), recording its use unless `touch` is
   * false (the caller still has checks to make); else undefined.
   */
  async authenticate(key: string, options: { touch?: boolean } = {}): Promise<ApiKeyRecord | undefined> {
    if (!isOpaqueToken('apiKey', key)) return undefined;
    const row = await this.store.findByHash(hashOpaqueToken(key));
    if (!row || !isUsable(row, this.now())) return undefined;
    const record = asRecord(row);
    if (options.touch !== false) await this.touch(record);
    return record;
  }

  /** Records a use, at most once per minute per key. */
  async touch(record: ApiKeyRecord): Promise<void> {
    const now = this.now();
    if (!record.lastUsedAt || now.getTime() - record.lastUsedAt.getTime() >= LAST_USED_GRANULARITY_MS) {
      await this.store.setLastUsed(record.id, now);
      record.lastUsedAt = now;
    }
  }

  async get(id: string): Promise<ApiKeyRecord | undefined> {
    const row = await this.store.get(id);
    return row ? asRecord(row) : undefined;
  }

  /** Keys newest first; `tenantId` narrows to one tenant. Revoked keys are listed too, marked. */
  async list(filter: { tenantId?: string } = {}): Promise<ApiKeyRecord[]> {
    return (await this.store.list(filter)).map(asRecord);
  }

  /** Revokes a key; false when it does not exist or was revoked already. */
  revoke(id: string, db?: Db): Promise<boolean> {
    return this.store.revoke(id, this.now(), db);
  }

  /**
   * Revokes the keys a user created that are not revoked yet, except those `keep` accepts
   * (by default none). Returns the keys this call revoked; one revoked meanwhile by someone
   * else is not among them.
   */
  async revokeCreatedBy(userId: string, db?: Db, keep: (key: Pick<ApiKeyRecord, 'scopes' | 'tenantId'>) => boolean = () => false): Promise<Array<Pick<ApiKeyRecord, 'id' | 'tenantId'>>> {
    const live = await this.store.liveCreatedBy(userId, db);
    const ids = live.filter((key) => !keep({ tenantId: key.tenantId, scopes: key.scopes as ApiKeyScope[] })).map((key) => key.id);
    return this.store.revokeMany(ids, this.now(), db);
  }

  /**
   * Every key that has a creator and is not revoked, with that creator's role and status as
   * they are now (null when the creator was deleted), to judge keys against their creators.
   */
  async liveWithCreators(db?: Db): Promise<KeyWithCreator[]> {
    return (await this.store.liveWithCreators(db)) as KeyWithCreator[];
  }
}

export function isUsable(record: Pick<ApiKeyRecord, 'revokedAt' | 'expiresAt'>, now: Date): boolean {
  return record.revokedAt === null && (record.expiresAt === null || record.expiresAt.getTime() > now.getTime());
}

/** Stored scopes are ones this module wrote (create validates them), so they are read back as scopes. */
function asRecord(row: ApiKeyRow): ApiKeyRecord {
  return row as ApiKeyRecord;
}
