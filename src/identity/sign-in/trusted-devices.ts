import { createHash, randomUUID } from 'node:crypto';
import Bowser from 'bowser';
import type { Db } from '../../store/connection.js';
import type { TrustedDeviceRow, TrustedDevicesRepository } from '../../store/repositories/trusted-devices.js';
import { hashOpaqueToken, isOpaqueToken, issueOpaqueToken } from '../tokens/opaque-tokens.js';

/**
 * Trusted devices: after a passed second factor the client gets a `deviceToken`; a later
 * password sign-in of the same user presenting it skips the second factor. The token is
 * bound to the user (a token of another user is simply unknown), slides 30 days from its
 * last use, can be revoked, and alone signs nobody in: it only ever replaces the second
 * factor, never the password.
 */
export const DEVICE_TRUST_MS = 30 * 24 * 60 * 60 * 1000;

export type TrustedDeviceView = TrustedDeviceRow;

export class TrustedDevices {
  constructor(
    private readonly store: TrustedDevicesRepository,
    private readonly now: () => Date = () => new Date(),
  ) {}

  async trust(userId: string, label: string, db?: Db): Promise<{ deviceId: string; deviceToken: string }> {
    const now = this.now();
    const { token, hash } = issueOpaqueToken('device');
    const deviceId = randomUUID();
    await this.store.insert({ id: deviceId, userId, tokenHash: hash, label: label.slice(0, 200), createdAt: now, expiresAt: new Date(now.getTime() + DEVICE_TRUST_MS) }, db);
    return { deviceId, deviceToken: token };
  }

  /**
   * The device id when `deviceToken` is a live device of this user, sliding its expiry; else
   * undefined. The user id is part of the lookup, so another user's token never matches.
   */
  async recognise(userId: string, deviceToken: unknown): Promise<string | undefined> {
    if (!isOpaqueToken('device', deviceToken)) return undefined;
    const now = this.now();
    return this.store.use(userId, hashOpaqueToken(deviceToken), now, new Date(now.getTime() + DEVICE_TRUST_MS));
  }

  async list(userId: string): Promise<TrustedDeviceView[]> {
    return this.store.listLive(userId, this.now());
  }

  /** Revokes one device of this user; false when it is not theirs or already gone. */
  async revoke(userId: string, deviceId: string, db?: Db): Promise<boolean> {
    return this.store.revoke(userId, deviceId, this.now(), db);
  }

  /** Every device of a user: on a password or factor change, and when the user is disabled. */
  async revokeAll(userId: string, db?: Db): Promise<number> {
    return this.store.revokeAll(userId, this.now(), db);
  }
}

/** "Firefox on Linux"-style label from a User-Agent, for the sessions list; never the raw header. */
export function deviceLabelFrom(userAgent: string | undefined): string {
  if (!userAgent) return 'unknown device';
  const parsed = Bowser.parse(userAgent.slice(0, 512));
  const browser = parsed.browser.name;
  const os = parsed.os.name;
  if (browser && os) return `${browser} on ${os}`;
  if (browser || os) return (browser ?? os)!;
  // Scripts and CLIs: the product token (`curl/8.5.0` → `curl`) is still a useful label.
  const product = /^[A-Za-z][\w.-]{0,40}/.exec(userAgent)?.[0];
  return product ?? 'unknown device';
}

/** What a login challenge is bound to besides the user: the device that asked for it. */
export function deviceFingerprint(userAgent: string | undefined): string {
  return createHash('sha256').update(userAgent ?? '', 'utf8').digest('hex');
}
