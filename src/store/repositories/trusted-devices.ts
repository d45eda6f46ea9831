import { and, eq, gt, isNull } from 'drizzle-orm';
import type { Db } from '../connection.js';
import { trustedDevices } from '../schema.js';

/**
 * Devices that passed a second factor, by the hash of their device token. The trust rules (how
 * long, sliding, what revokes it) are identity's (src/identity/sign-in/trusted-devices.ts).
 */
export interface TrustedDeviceRow {
  id: string;
  label: string;
  createdAt: Date;
  lastUsedAt: Date;
  expiresAt: Date;
}

export class TrustedDevicesRepository {
  constructor(private readonly db: Db) {}

  async insert(device: { id: string; userId: string; tokenHash: string; label: string; createdAt: Date; expiresAt: Date }, db: Db = this.db): Promise<void> {
    await db.insert(trustedDevices).values({ ...device, lastUsedAt: device.createdAt });
  }

  /**
   * Marks a live device of this user used and moves its expiry to `expiresAt`, in one
   * statement; the id when the hash named one, else undefined. The user id is part of the
   * lookup, so another user's token never matches.
   */
  async use(userId: string, tokenHash: string, at: Date, expiresAt: Date): Promise<string | undefined> {
    const [row] = await this.db
      .update(trustedDevices)
      .set({ lastUsedAt: at, expiresAt })
      .where(and(eq(trustedDevices.tokenHash, tokenHash), eq(trustedDevices.userId, userId), isNull(trustedDevices.revokedAt), gt(trustedDevices.expiresAt, at)))
      .returning({ id: trustedDevices.id });
    return row?.id;
  }

  async listLive(userId: string, now: Date): Promise<TrustedDeviceRow[]> {
    return this.db
      .select({ id: trustedDevices.id, label: trustedDevices.label, createdAt: trustedDevices.createdAt, lastUsedAt: trustedDevices.lastUsedAt, expiresAt: trustedDevices.expiresAt })
      .from(trustedDevices)
      .where(and(eq(trustedDevices.userId, userId), isNull(trustedDevices.revokedAt), gt(trustedDevices.expiresAt, now)));
  }

  /** Revokes one device of this user; false when it is not theirs or already revoked. */
  async revoke(userId: string, deviceId: string, at: Date, db: Db = this.db): Promise<boolean> {
    const rows = await db
      .update(trustedDevices)
      .set({ revokedAt: at })
      .where(and(eq(trustedDevices.id, deviceId), eq(trustedDevices.userId, userId), isNull(trustedDevices.revokedAt)))
      .returning({ id: trustedDevices.id });
    return rows.length === 1;
  }

  /** Revokes every device of the user not revoked yet; returns how many. */
  async revokeAll(userId: string, at: Date, db: Db = this.db): Promise<number> {
    const rows = await db
      .update(trustedDevices)
      .set({ revokedAt: at })
      .where(and(eq(trustedDevices.userId, userId), isNull(trustedDevices.revokedAt)))
      .returning({ id: trustedDevices.id });
    return rows.length;
  }
}
