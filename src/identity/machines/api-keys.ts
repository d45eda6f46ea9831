import { randomUUID } from 'node:crypto';
import { and, desc, eq, inArray, isNotNull, isNull, type SQL } from 'drizzle-orm';
import type { Db } from '../../store/connection.js';
import { apiKeys, users } from '../../store/schema.js';
import { OPAQUE_TOKEN_PREFIXES, hashOpaqueToken, isOpaqueToken, issueOpaqueToken } from '../tokens/opaque-tokens.js';
import type { ApiKeyScope, Role } from '../permissions.js';
import type { UserStatus } from '../../store/repositories/users.js';

/**
 * API keys for machines: `cgk_` + 256 random bits, shown once, stored as SHA-256, bound to a
 * tenant and a set of scopes, with an optional expiry. A key is used directly as a bearer
 * token, or as the client secret of the OAuth client-credentials grant (client id = key id).
 */
export interface ApiKeyRecord {
  id: string;
  name: string;
  hint: string;
  tenantId: string | null;
  scopes: ApiKeyScope[];
  createdBy: string | null;
  createdAt: Date;
  expiresAt: Date | null;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
}

/** A live key and the user who made it, as that user is now (null once deleted). */
export interface KeyWithCreator extends Pick<ApiKeyRecord, 'id' | 'tenantId' | 'scopes'> {
  createdBy: string;
  creator: { role: Role; status: UserStatus } | null;
}

/** `last_used_at` is written at most this often per key: one write per request would be the cost of the whole request. */
const LAST_USED_GRANULARITY_MS = 60_000;

export class ApiKeys {
  constructor(
    private readonly db: Db,
    private readonly now: () => Date = () => new Date(),
  ) {}

  async create(input: { name: string; tenantId: string | null; scopes: ApiKeyScope[]; expiresAt?: Date | null; createdBy?: string | null }, db: Db = this.db): Promise<{ record: ApiKeyRecord; key: string }> {
    const { token, hash } = issueOpaqueToken('apiKey');
    const id = randomUUID();
    const hint = token.slice(0, OPAQUE_TOKEN_PREFIXES.apiKey.length + 6);
    await db.insert(apiKeys).values({
      id,
      name: input.name,
      keyHash: hash,
      hint,
      tenantId: input.tenantId,
      scopes: [...new Set(input.scopes)].sort(),
      createdBy: input.createdBy ?? null,
      createdAt: this.now(),
      expiresAt: input.expiresAt ?? null,
    });
    const [record] = await db.select(recordColumns).from(apiKeys).where(eq(apiKeys.id, id));
    return { record: record as ApiKeyRecord, key: token };
  }

  /**
   * The live key behind `key` (not revoked, not expired), recording its use unless `touch` is
   * false (the caller still has checks to make); else undefined.
   */
  async authenticate(key: string, options: { touch?: boolean } = {}): Promise<ApiKeyRecord | undefined> {
    if (!isOpaqueToken('apiKey', key)) return undefined;
    const [record] = await this.db.select(recordColumns).from(apiKeys).where(eq(apiKeys.keyHash, hashOpaqueToken(key))).limit(1);
    if (!record || !isUsable(record as ApiKeyRecord, this.now())) return undefined;
    if (options.touch !== false) await this.touch(record as ApiKeyRecord);
    return record as ApiKeyRecord;
  }

  /** Records a use, at most once per minute per key. */
  async touch(record: ApiKeyRecord): Promise<void> {
    const now = this.now();
    if (!record.lastUsedAt || now.getTime() - record.lastUsedAt.getTime() >= LAST_USED_GRANULARITY_MS) {
      await this.db.update(apiKeys).set({ lastUsedAt: now }).where(eq(apiKeys.id, record.id));
      record.lastUsedAt = now;
    }
  }

  async get(id: string): Promise<ApiKeyRecord | undefined> {
    const [record] = await this.db.select(recordColumns).from(apiKeys).where(eq(apiKeys.id, id)).limit(1);
    return record as ApiKeyRecord | undefined;
  }

  /** Keys newest first; `tenantId` narrows to one tenant. Revoked keys are listed too, marked. */
  async list(filter: { tenantId?: string } = {}): Promise<ApiKeyRecord[]> {
    const where: SQL | undefined = filter.tenantId ? eq(apiKeys.tenantId, filter.tenantId) : undefined;
    return (await this.db.select(recordColumns).from(apiKeys).where(where).orderBy(desc(apiKeys.createdAt))) as ApiKeyRecord[];
  }

  /** Revokes a key; false when it does not exist or was revoked already. */
  async revoke(id: string, db: Db = this.db): Promise<boolean> {
    const rows = await db.update(apiKeys).set({ revokedAt: this.now() }).where(and(eq(apiKeys.id, id), isNull(apiKeys.revokedAt))).returning({ id: apiKeys.id });
    return rows.length === 1;
  }

  /**
   * Revokes the keys a user created that are not revoked yet, except those `keep` accepts
   * (by default none). Returns the keys this call revoked; one revoked meanwhile by someone
   * else is not among them.
   */
  async revokeCreatedBy(userId: string, db: Db = this.db, keep: (key: Pick<ApiKeyRecord, 'scopes' | 'tenantId'>) => boolean = () => false): Promise<Array<Pick<ApiKeyRecord, 'id' | 'tenantId'>>> {
    const live = await db
      .select({ id: apiKeys.id, scopes: apiKeys.scopes, tenantId: apiKeys.tenantId })
      .from(apiKeys)
      .where(and(eq(apiKeys.createdBy, userId), isNull(apiKeys.revokedAt)));
    const ids = live.filter((key) => !keep(key as Pick<ApiKeyRecord, 'scopes' | 'tenantId'>)).map((key) => key.id);
    if (ids.length === 0) return [];
    return db
      .update(apiKeys)
      .set({ revokedAt: this.now() })
      .where(and(inArray(apiKeys.id, ids), isNull(apiKeys.revokedAt)))
      .returning({ id: apiKeys.id, tenantId: apiKeys.tenantId });
  }

  /**
   * Every key that has a creator and is not revoked, with that creator's role and status as
   * they are now (null when the creator was deleted), to judge keys against their creators.
   */
  async liveWithCreators(db: Db = this.db): Promise<KeyWithCreator[]> {
    const rows = await db
      .select({ id: apiKeys.id, tenantId: apiKeys.tenantId, scopes: apiKeys.scopes, createdBy: apiKeys.createdBy, role: users.role, status: users.status })
      .from(apiKeys)
      .leftJoin(users, eq(users.id, apiKeys.createdBy))
      .where(and(isNotNull(apiKeys.createdBy), isNull(apiKeys.revokedAt)));
    return rows.map(({ role, status, ...key }) => ({ ...(key as Omit<KeyWithCreator, 'creator'>), creator: role !== null && status !== null ? { role, status } : null }));
  }
}

export function isUsable(record: Pick<ApiKeyRecord, 'revokedAt' | 'expiresAt'>, now: Date): boolean {
  return record.revokedAt === null && (record.expiresAt === null || record.expiresAt.getTime() > now.getTime());
}

const recordColumns = {
  id: apiKeys.id,
  name: apiKeys.name,
  hint: apiKeys.hint,
  tenantId: apiKeys.tenantId,
  scopes: apiKeys.scopes,
  createdBy: apiKeys.createdBy,
  createdAt: apiKeys.createdAt,
  expiresAt: apiKeys.expiresAt,
  lastUsedAt: apiKeys.lastUsedAt,
  revokedAt: apiKeys.revokedAt,
};
