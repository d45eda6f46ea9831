import { randomUUID } from 'node:crypto';
import { and, asc, eq, inArray, isNull, lt, sql, type SQL } from 'drizzle-orm';
import { isUuid } from '../../domain/ids.js';
import { normaliseEmail } from '../../domain/normalise.js';
import { SYSTEM_SCOPE, type SealedFields } from '../../seal/sealed-fields.js';
import type { Db } from '../connection.js';
import { violatedUniqueConstraint } from '../constraint-errors.js';
import { usersSealed } from '../sealed-tables.js';
import { users, userTokens } from '../schema.js';

/**
 * The users aggregate: people who sign in, and the single-use tokens sent to them out of band
 * (an admin's setup token, a signup's verification link). Emails are sealed under the system
 * key with a blind index, so `findByEmail` is an indexed equality on keyed hashes and never
 * decrypts a row; the methods that show an email open it here, and nowhere else.
 *
 * Every method takes an optional `db`: the caller's transaction, when the change must commit
 * with its audit event and the rest of the use case.
 */
export type UserRole = (typeof users.role.enumValues)[number];
export type UserStatus = (typeof users.status.enumValues)[number];
export type UserTokenPurpose = (typeof userTokens.purpose.enumValues)[number];

/** A user as the sign-in flows need it: no email, which stays sealed until someone must read it. */
export interface UserRecord {
  id: string;
  role: UserRole;
  tenantId: string | null;
  status: UserStatus;
  passwordHash: string | null;
  createdAt: Date;
  updatedAt: Date;
}

/** A user as an admin sees it: the email opened for display. */
export interface UserView extends Omit<UserRecord, 'passwordHash'> {
  email: string;
  hasPassword: boolean;
}

export interface NewUser {
  email: string;
  role: UserRole;
  tenantId: string | null;
  status: UserStatus;
  passwordHash?: string | null;
}

/** An unused user token as `findUnusedToken` reads it. */
export interface StoredUserToken {
  id: string;
  userId: string;
  expiresAt: Date;
}

/** The address is registered already (found by its blind index, or refused by the unique index). */
export class EmailTakenError extends Error {
  override readonly name = 'EmailTakenError';
  constructor() {
    super('a user with this email exists already');
  }
}

/** The unique index on `users.email_index` (src/store/tables/users.ts): one account per address and key version. */
export const USERS_EMAIL_UNIQUE = 'users_email_index_unique';

export class UsersRepository {
  constructor(
    private readonly db: Db,
    private readonly fields: SealedFields,
  ) {}

  /**
   * Inserts a user, the email sealed and indexed here; throws `EmailTakenError` when the
   * address is registered already, under any key version or by a concurrent insert.
   */
  async create(input: NewUser, db: Db = this.db): Promise<UserRecord> {
    const email = normaliseEmail(input.email);
    if (await this.findByEmail(email, db)) throw new EmailTakenError();
    const id = randomUUID();
    const now = new Date();
    const sealed = this.fields.sealRow(usersSealed, { scope: SYSTEM_SCOPE, id }, { email });
    try {
      await db.insert(users).values({
        id,
        ...sealed,
        role: input.role,
        tenantId: input.tenantId,
        status: input.status,
        passwordHash: input.passwordHash ?? null,
        passwordChangedAt: input.passwordHash ? now : null,
        createdAt: now,
        updatedAt: now,
      });
    } catch (error) {
      // Two concurrent creates of one address: the unique index decides, the loser hears so.
      if (violatedUniqueConstraint(error) === USERS_EMAIL_UNIQUE) throw new EmailTakenError();
      throw error;
    }
    return (await this.get(id, db))!;
  }

  /** The user registered under `email` (any case), looked up by blind index under every key version. */
  async findByEmail(email: string, db: Db = this.db): Promise<UserRecord | undefined> {
    const indexes = this.emailIndexes(email);
    if (!indexes) return undefined;
    const [row] = await db.select(recordColumns).from(users).where(inArray(users.emailIndex, indexes)).limit(1);
    return row;
  }

  async get(id: string, db: Db = this.db): Promise<UserRecord | undefined> {
    if (!isUuid(id)) return undefined;
    const [row] = await db.select(recordColumns).from(users).where(eq(users.id, id)).limit(1);
    return row;
  }

  /**
   * The user, its row locked until `tx` ends. Changes that must not interleave on one user
   * take it first: a key made by a user and that user's demotion, disabling or deletion then
   * happen one after the other, never half over each other.
   */
  async getForUpdate(id: string, tx: Db): Promise<UserRecord | undefined> {
    if (!isUuid(id)) return undefined;
    const [row] = await tx.select(recordColumns).from(users).where(eq(users.id, id)).limit(1).for('update');
    return row;
  }

  /**
   * Locks the user's row until `tx` ends (SELECT … FOR UPDATE). Changes to one user's second
   * factors take this lock first, so two of them racing (a stale enrollment against the real
   * one) run one after the other and the second sees what the first did. False when there is
   * no such user.
   */
  async lock(id: string, tx: Db): Promise<boolean> {
    const [row] = await tx.select({ id: users.id }).from(users).where(eq(users.id, id)).for('update');
    return row !== undefined;
  }

  /** Users with their emails opened, for an admin listing; `tenantId` narrows to one tenant, `roles` to those roles. */
  async list(filter: { tenantId?: string; roles?: readonly UserRole[] } = {}): Promise<UserView[]> {
    const conditions: SQL[] = [];
    if (filter.tenantId) conditions.push(eq(users.tenantId, filter.tenantId));
    if (filter.roles) conditions.push(filter.roles.length > 0 ? inArray(users.role, [...filter.roles]) : sql`false`);
    const where = conditions.length > 0 ? and(...conditions) : undefined;
    const rows = await this.db
      .select({ ...recordColumns, email: users.email })
      .from(users)
      .where(where)
      .orderBy(asc(users.createdAt), asc(users.id));
    // One at a time: a refresh of the keyring, when one is needed, then happens once.
    const views: UserView[] = [];
    for (const row of rows) views.push(await this.view(row));
    return views;
  }

  /** One user with the email opened; undefined when there is no such user. */
  async viewById(id: string): Promise<UserView | undefined> {
    if (!isUuid(id)) return undefined;
    const [row] = await this.db.select({ ...recordColumns, email: users.email }).from(users).where(eq(users.id, id)).limit(1);
    return row ? await this.view(row) : undefined;
  }

  async update(id: string, patch: Partial<Pick<UserRecord, 'role' | 'tenantId' | 'status'>>, db: Db = this.db): Promise<UserRecord | undefined> {
    await db.update(users).set({ ...patch, updatedAt: new Date() }).where(eq(users.id, id));
    return this.get(id, db);
  }

  async setPassword(id: string, passwordHash: string, db: Db = this.db): Promise<void> {
    const now = new Date();
    await db.update(users).set({ passwordHash, passwordChangedAt: now, updatedAt: now }).where(eq(users.id, id));
  }

  /** Activates a pending or unverified user; false when the user was in another state (a race, or disabled meanwhile). */
  async activate(id: string, from: UserStatus, db: Db = this.db): Promise<boolean> {
    const changed = await db
      .update(users)
      .set({ status: 'active', updatedAt: new Date() })
      .where(and(eq(users.id, id), eq(users.status, from)))
      .returning({ id: users.id });
    return changed.length === 1;
  }

  /**
   * Removes the self-registration pending for `email`, if there is one (any age), with its
   * verification token (the foreign key cascades): a newer signup or an admin invite for the
   * address takes its place. Returns the removed user's id. Never touches any other status.
   */
  async removePendingSignup(email: string, db: Db = this.db): Promise<string | undefined> {
    const indexes = this.emailIndexes(email);
    if (!indexes) return undefined;
    const [removed] = await db
      .delete(users)
      .where(and(inArray(users.emailIndex, indexes), eq(users.status, 'unverified')))
      .returning({ id: users.id });
    return removed?.id;
  }

  /** Removes every self-registration still unverified that was made before `createdBefore`; returns how many. */
  async removeExpiredSignups(createdBefore: Date, db: Db = this.db): Promise<number> {
    const removed = await db
      .delete(users)
      .where(and(eq(users.status, 'unverified'), lt(users.createdAt, createdBefore)))
      .returning({ id: users.id });
    return removed.length;
  }

  async delete(id: string, db: Db = this.db): Promise<boolean> {
    const deleted = await db.delete(users).where(eq(users.id, id)).returning({ id: users.id });
    return deleted.length === 1;
  }

  async countAdmins(db: Db = this.db): Promise<number> {
    const [row] = await db.select({ count: sql<number>`count(*)::int` }).from(users).where(and(eq(users.role, 'admin'), eq(users.status, 'active')));
    return row?.count ?? 0;
  }

  /** Stores a single-use token of the user by its hash (the token itself is never stored). */
  async insertToken(token: { userId: string; purpose: UserTokenPurpose; tokenHash: string; expiresAt: Date; createdAt: Date }, db: Db = this.db): Promise<void> {
    await db.insert(userTokens).values({ id: randomUUID(), ...token });
  }

  /** The unused token of this purpose stored under `tokenHash`, expired or not (the caller decides). */
  async findUnusedToken(tokenHash: string, purpose: UserTokenPurpose): Promise<StoredUserToken | undefined> {
    const [row] = await this.db
      .select({ id: userTokens.id, userId: userTokens.userId, expiresAt: userTokens.expiresAt })
      .from(userTokens)
      .where(and(eq(userTokens.tokenHash, tokenHash), eq(userTokens.purpose, purpose), isNull(userTokens.usedAt)))
      .limit(1);
    return row;
  }

  /** Spends a token: a compare-and-set on `used_at`, so of two requests with one token only one gets true. */
  async spendToken(id: string, db: Db = this.db): Promise<boolean> {
    const rows = await db.update(userTokens).set({ usedAt: new Date() }).where(and(eq(userTokens.id, id), isNull(userTokens.usedAt))).returning({ id: userTokens.id });
    return rows.length === 1;
  }

  /**
   * The address's blind index under the current key version, as a new row would store it, known
   * or not; undefined when it is not an address. A keyed, non-reversible stand-in for the
   * address where one is needed outside the table (the keys of sign-in and email limits).
   */
  currentEmailIndex(email: string): Buffer | undefined {
    return this.emailIndexes(email)?.[0];
  }

  /** The blind indexes of an address under every key version; undefined when it is not an address. */
  private emailIndexes(email: string) {
    try {
      return this.fields.lookupIndexes(usersSealed, 'email', SYSTEM_SCOPE, email);
    } catch {
      return undefined;
    }
  }

  private async view(row: UserRecord & { email: Buffer }): Promise<UserView> {
    const { email } = await this.fields.openRowFresh(usersSealed, { scope: SYSTEM_SCOPE, id: row.id }, { email: row.email });
    const { passwordHash, email: _sealed, ...rest } = row;
    return { ...rest, email: email!, hasPassword: passwordHash !== null };
  }
}

const recordColumns = {
  id: users.id,
  role: users.role,
  tenantId: users.tenantId,
  status: users.status,
  passwordHash: users.passwordHash,
  createdAt: users.createdAt,
  updatedAt: users.updatedAt,
};
