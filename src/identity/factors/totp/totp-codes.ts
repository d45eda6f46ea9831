import { randomBytes, timingSafeEqual } from 'node:crypto';
import { HOTP, Secret, TOTP } from 'otpauth';

/**
 * RFC 6238 with the parameters every authenticator app supports: Google Authenticator
 * ignores `algorithm`, `digits` and `period` in the URI and always uses these.
 */
export const TOTP_PARAMETERS = { algorithm: 'SHA1', digits: 6, period: 30 } as const;

/** Steps either side of now that are still accepted: one period of clock drift each way. */
export const TOTP_WINDOW = 1;

export interface TotpEnrollment {
  /** Seal before storing; show only inside the URI / QR code. */
  secretBase32: string;
  otpauthUri: string;
}

export type TotpVerification =
  | { ok: true; step: number }
  | { ok: false; reason: 'malformed' | 'wrong-code' | 'replayed' };

export function createTotpEnrollment(options: { issuer?: string; label: string }): TotpEnrollment {
  // 160 bits: the HMAC-SHA1 key size RFC 4226 section 4 recommends.
  const secret = new Secret({ buffer: toArrayBuffer(randomBytes(20)) });
  const totp = new TOTP({ issuer: options.issuer ?? 'Ciphergate', label: options.label, secret, ...TOTP_PARAMETERS });
  return { secretBase32: secret.base32, otpauthUri: totp.toString() };
}

/**
 * Checks a code against the steps now-1, now and now+1. Pure: the replay guard only works if
 * the caller stores the returned `step` as the factor's new `lastUsedStep`, and does so with
 * a conditional update (see `TotpStepStore`), because two requests carrying the same code can
 * both pass this check before either stores.
 *
 * `lastUsedStep` is null for a factor that has never accepted a code.
 */
export function verifyTotp(input: {
  secretBase32: string;
  code: string;
  lastUsedStep: number | null;
  now?: Date | number;
}): TotpVerification {
  const code = input.code.trim();
  if (!SIX_ASCII_DIGITS.test(code)) return { ok: false, reason: 'malformed' };
  const secret = decodeSecret(input.secretBase32);
  const nowMs = input.now === undefined ? Date.now() : typeof input.now === 'number' ? input.now : input.now.getTime();
  const currentStep = Math.floor(nowMs / 1000 / TOTP_PARAMETERS.period);

  // Every candidate is generated and compared, with no early exit, so the response time does
  // not say which step (if any) matched. otpauth's own validate stops at the first match.
  const submitted = Buffer.from(code, 'ascii');
  let acceptedStep: number | undefined;
  let replayed = false;
  for (let step = currentStep - TOTP_WINDOW; step <= currentStep + TOTP_WINDOW; step++) {
    const expected = Buffer.from(HOTP.generate({ secret, counter: step, ...TOTP_PARAMETERS }), 'ascii');
    const matches = timingSafeEqual(submitted, expected);
    const fresh = input.lastUsedStep === null || step > input.lastUsedStep;
    // Ascending loop: if a code were valid at two steps (a 1-in-a-million collision), the
    // later fresh one wins, which keeps lastUsedStep moving forward.
    if (matches && fresh) acceptedStep = step;
    if (matches && !fresh) replayed = true;
  }
  if (acceptedStep !== undefined) return { ok: true, step: acceptedStep };
  return { ok: false, reason: replayed ? 'replayed' : 'wrong-code' };
}

/**
 * What the database layer provides for the replay guard. `advanceLastUsedStep` must be one
 * conditional statement, e.g.
 *   UPDATE totp_factors SET last_used_step = $step
 *    WHERE id = $id AND (last_used_step IS NULL OR last_used_step < $step)
 * returning whether a row changed; a read-then-write would let two concurrent requests
 * both spend the same code.
 */
export interface TotpStepStore {
  advanceLastUsedStep(factorId: string, step: number): Promise<boolean>;
}

/**
 * `verifyTotp` plus the store's compare-and-set: the code counts only if this request is
 * the one that moved `lastUsedStep` forward.
 */
export async function consumeTotpCode(
  store: TotpStepStore,
  factor: { id: string; secretBase32: string; lastUsedStep: number | null },
  code: string,
  now?: Date | number,
): Promise<TotpVerification> {
  const verification = verifyTotp({ secretBase32: factor.secretBase32, code, lastUsedStep: factor.lastUsedStep, now });
  if (!verification.ok) return verification;
  const advanced = await store.advanceLastUsedStep(factor.id, verification.step);
  return advanced ? verification : { ok: false, reason: 'replayed' };
}

/**
 * A stored TOTP secret could not be decoded. This is corrupt data or a wrong unseal, never
 * user input, so it is thrown rather than reported as a wrong code.
 */
export class TotpSecretError extends Error {
  override readonly name = 'TotpSecretError';
  constructor(message = 'stored TOTP secret is not valid base32') {
    super(message);
  }
}

const SIX_ASCII_DIGITS = /^[0-9]{6}$/;

/** RFC 4226 section 4 requires at least 128 bits; anything shorter is not a secret we made. */
const MIN_SECRET_BYTES = 16;

function decodeSecret(secretBase32: string): Secret {
  let secret: Secret;
  try {
    secret = Secret.fromBase32(secretBase32);
  } catch {
    throw new TotpSecretError();
  }
  if (secret.bytes.length < MIN_SECRET_BYTES) throw new TotpSecretError('stored TOTP secret is shorter than 128 bits');
  return secret;
}

function toArrayBuffer(bytes: Buffer): ArrayBuffer {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}
