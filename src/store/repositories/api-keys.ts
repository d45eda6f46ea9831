import { and, desc, eq, inArray, isNotNull, isNull, type SQL } from 'drizzle-orm';
import type { Db } from '../connection.js';
import { apiKeys, users } from '../schema.js';
import type { UserRole, UserStatus } from './users.js';

/**
 * Machine credentials by the SHA-256 of the key (made and checked by
 * src/identity/machines/api-keys.ts; the key itself is never stored), with their tenant, scopes,
 * creator and lifetime. Scopes are stored as given; identity says which exist.
 */
export interface ApiKeyRow {
  id: string;
  name: string;
  hint: string;
  tenantId: string | null;
  scopes: string[];
  createdBy: string | null;
  createdAt: Date;
  expiresAt: Date | null;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
}

/** A live key and the user who made it, as that user is now (null once deleted). */
export interface ApiKeyWithCreator extends Pick<ApiKeyRow, 'id' | 'tenantId' | 'scopes'> {
  createdBy: string;
  creator: { role: UserRole; status: UserStatus } | null;
}

export class ApiKeysRepository {
  constructor(private readonly db: Db) {}

  async insert(key: { id: string; name: string; keyHash: string; hint: string; tenantId: string | null; scopes: string[]; createdBy: string | null; createdAt: Date; expiresAt: Date | null }, db: Db = this.db): Promise<ApiKeyRow> {
    await db.insert(apiKeys).values(key);
    const [row] = await db.select(rowColumns).from(apiKeys).where(eq(apiKeys.id, key.id));
    return row!;
  }

  async findByHash(keyHash: string): Promise<ApiKeyRow | undefined> {
    const [row] = await this.db.select(rowColumns).from(apiKeys).where(eq(apiKeys.keyHash, keyHash)).limit(1);
    return row;
  }

  async get(id: string): Promise<ApiKeyRow | undefined> {
    const [row] = await this.db.select(rowColumns).from(apiKeys).where(eq(apiKeys.id, id)).limit(1);
    return row;
  }

  /** Keys newest first; `tenantId` narrows to one tenant. Revoked keys are listed too. */
  async list(filter: { tenantId?: string } = {}): Promise<ApiKeyRow[]> {
    const where: SQL | undefined = filter.tenantId ? eq(apiKeys.tenantId, filter.tenantId) : undefined;
    return this.db.select(rowColumns).from(apiKeys).where(where).orderBy(desc(apiKeys.createdAt));
  }

  async setLastUsed(id: string, at: Date): Promise<void> {
    await this.db.update(apiKeys).set({ lastUsedAt: at }).where(eq(apiKeys.id, id));
  }

  /** Revokes a key; false when it does not exist or was revoked already. */
  async revoke(id: string, at: Date, db: Db = this.db): Promise<boolean> {
    const rows = await db.update(apiKeys).set({ revokedAt: at }).where(and(eq(apiKeys.id, id), isNull(apiKeys.revokedAt))).returning({ id: apiKeys.id });
    return rows.length === 1;
  }

  /** The keys a user created that are not revoked. */
  async liveCreatedBy(userId: string, db: Db = this.db): Promise<Array<Pick<ApiKeyRow, 'id' | 'scopes' | 'tenantId'>>> {
    return db
      .select({ id: apiKeys.id, scopes: apiKeys.scopes, tenantId: apiKeys.tenantId })
      .from(apiKeys)
      .where(and(eq(apiKeys.createdBy, userId), isNull(apiKeys.revokedAt)));
  }

  /** Revokes those of `ids` not revoked yet; returns the ones this call revoked. */
  async revokeMany(ids: string[], at: Date, db: Db = this.db): Promise<Array<Pick<ApiKeyRow, 'id' | 'tenantId'>>> {
    if (ids.length === 0) return [];
    return db
      .update(apiKeys)
      .set({ revokedAt: at })
      .where(and(inArray(apiKeys.id, ids), isNull(apiKeys.revokedAt)))
      .returning({ id: apiKeys.id, tenantId: apiKeys.tenantId });
  }

  /**
   * Every key that has a creator and is not revoked, with that creator's role and status as
   * they are now (null when the creator was deleted), to judge keys against their creators.
   */
  async liveWithCreators(db: Db = this.db): Promise<ApiKeyWithCreator[]> {
    const rows = await db
      .select({ id: apiKeys.id, tenantId: apiKeys.tenantId, scopes: apiKeys.scopes, createdBy: apiKeys.createdBy, role: users.role, status: users.status })
      .from(apiKeys)
      .leftJoin(users, eq(users.id, apiKeys.createdBy))
      .where(and(isNotNull(apiKeys.createdBy), isNull(apiKeys.revokedAt)));
    return rows.map(({ role, status, createdBy, ...key }) => ({ ...key, createdBy: createdBy!, creator: role !== null && status !== null ? { role, status } : null }));
  }
}

const rowColumns = {
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
