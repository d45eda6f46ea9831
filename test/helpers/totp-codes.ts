import { HOTP, Secret } from 'otpauth';

/** A TOTP code for `secret` at a given step offset from now (each step usable once). */
export function totpCode(secretBase32: string, stepOffset = 0, now = Date.now()): string {
  const counter = Math.floor(now / 30_000) + stepOffset;
  return HOTP.generate({ secret: Secret.fromBase32(secretBase32), counter, algorithm: 'SHA1', digits: 6 });
}

/** The base32 secret of an `otpauth://` enrollment URI, as an authenticator app reads it from the QR code. */
export function secretFromUri(otpauthUri: string): string {
  return new URL(otpauthUri).searchParams.get('secret')!;
}
