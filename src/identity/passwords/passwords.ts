import { randomBytes } from 'node:crypto';
import { hash, parseOptions, verify, type Options, type ParsedHashOptions } from '@node-rs/argon2';
import { isCommonPassword } from './common-passwords.js';
import { IdentityError } from '../errors.js';

/**
 * OWASP Password Storage Cheat Sheet, argon2id, first configuration:
 * https://cheatsheetseries.owasp.org/cheatsheets/Password_Storage_Cheat_Sheet.html#argon2id
 * Raising any of these makes older hashes report `needsRehash` on their next sign-in.
 */
export const PASSWORD_HASH_POLICY = {
  memoryCost: 19456,
  timeCost: 2,
  parallelism: 1,
} as const;

export const PASSWORD_MIN_CODE_POINTS = 12;
export const PASSWORD_MAX_CODE_POINTS = 128;

export type PasswordRule = 'too-short' | 'too-long' | 'common' | 'contains-email';

/** A new password broke the policy; `rule` says which one. */
export class PasswordPolicyError extends Error {
  override readonly name = 'PasswordPolicyError';
  constructor(
    readonly rule: PasswordRule,
    message: string,
  ) {
    super(message);
  }
}

export type PasswordPolicyResult = { ok: true } | { ok: false; rule: PasswordRule; message: string };

/** Hashes a password (after NFKC normalisation) into a PHC string: `$argon2id$v=19$m=…`. */
export async function hashPassword(plain: string): Promise<string> {
  return hash(normalisePassword(plain), HASH_OPTIONS);
}

/**
 * True when `plain` matches `phc`. Never throws: a malformed or foreign hash is `false`, and
 * it still costs one argon2id verification, so a corrupt row is not faster to probe than a
 * good one.
 */
export async function verifyPassword(phc: string, plain: string): Promise<boolean> {
  if (plain.length > MAX_INPUT_UTF16_UNITS) return false;
  const normalised = normalisePassword(plain);
  try {
    return await verify(phc, normalised);
  } catch {
    await verifyAgainstDummy(plain);
    return false;
  }
}

/**
 * Spends the same work as a wrong-password `verifyPassword` for a user who does not exist,
 * so the response time of a sign-in does not tell whether an email is registered. Always
 * resolves to false.
 */
export async function verifyAgainstDummy(plain: string): Promise<false> {
  if (plain.length > MAX_INPUT_UTF16_UNITS) return false;
  const normalised = normalisePassword(plain);
  try {
    await verify(await dummyHash, normalised);
  } catch {
    // Only reachable if hashing failed at start-up; the caller's answer is "no" either way.
  }
  return false;
}

/**
 * True when `phc` was made with weaker settings than the current policy (or is not a
 * readable argon2 hash), so the caller should store `hashPassword(plain)` after a
 * successful sign-in. Stronger-than-policy hashes are left alone.
 */
export function needsRehash(phc: string): boolean {
  let parsed: ParsedHashOptions;
  try {
    parsed = parseOptions(phc);
  } catch {
    return true;
  }
  return (
    parsed.algorithm !== ARGON2ID ||
    parsed.version !== ARGON2_VERSION_0x13 ||
    parsed.memoryCost < PASSWORD_HASH_POLICY.memoryCost ||
    parsed.timeCost < PASSWORD_HASH_POLICY.timeCost ||
    parsed.parallelism < PASSWORD_HASH_POLICY.parallelism ||
    parsed.outputLen < OUTPUT_BYTES ||
    parsed.saltLen < SALT_BYTES
  );
}

/**
 * Checks a new password. Messages are shown to the user as they are, so they never repeat
 * the password or the email.
 */
export function checkPasswordPolicy(plain: string, context: { email?: string } = {}): PasswordPolicyResult {
  if (plain.length > MAX_INPUT_UTF16_UNITS) return tooLong();
  const normalised = normalisePassword(plain);
  // Code points, not UTF-16 units: an emoji is one character to the person typing it.
  const codePoints = [...normalised].length;
  if (codePoints < PASSWORD_MIN_CODE_POINTS) {
    return { ok: false, rule: 'too-short', message: `Use at least ${PASSWORD_MIN_CODE_POINTS} characters.` };
  }
  if (codePoints > PASSWORD_MAX_CODE_POINTS) return tooLong();
  if (isCommonPassword(normalised)) {
    return { ok: false, rule: 'common', message: 'This password is on a list of commonly used passwords; choose another.' };
  }
  if (context.email !== undefined && containsEmail(normalised, context.email)) {
    return { ok: false, rule: 'contains-email', message: 'The password must not contain your email address or its name part (before the @).' };
  }
  return { ok: true };
}

/** `checkPasswordPolicy`, refusing with `weak-password` (its message, and the rule as `rule`). */
export function assertPasswordPolicy(password: string, email: string): void {
  const result = checkPasswordPolicy(password, { email });
  if (!result.ok) throw new IdentityError('weak-password', result.message, { rule: result.rule });
}

function tooLong(): PasswordPolicyResult {
  return { ok: false, rule: 'too-long', message: `Use at most ${PASSWORD_MAX_CODE_POINTS} characters.` };
}

// `Algorithm` and `Version` are ambient const enums, which isolatedModules cannot read;
// these are their documented values (Argon2id = 2, V0x13 = 1).
const ARGON2ID = 2;
const ARGON2_VERSION_0x13 = 1;
const OUTPUT_BYTES = 32;
const SALT_BYTES = 16;

const HASH_OPTIONS: Options = {
  algorithm: ARGON2ID,
  version: ARGON2_VERSION_0x13,
  outputLen: OUTPUT_BYTES,
  ...PASSWORD_HASH_POLICY,
};

/**
 * Far above any policy-valid password (128 code points), so refusing longer input early only
 * keeps NFKC and argon2's pre-hash of a megabyte body off the worker pool. It depends on the
 * input alone, never on the account, so the faster answer leaks nothing about who exists.
 */
const MAX_INPUT_UTF16_UNITS = 4096;

/**
 * NFKC so that the same password typed on different keyboards or input methods (full-width
 * forms, ligatures, composed vs decomposed accents) hashes the same; NIST SP 800-63B 5.1.1.2.
 */
function normalisePassword(plain: string): string {
  return plain.normalize('NFKC');
}

/** A local part of 1–3 characters would forbid most passwords while protecting nothing. */
const MIN_LOCAL_PART_FOR_CONTAINS = 4;

/**
 * The context-specific words of NIST SP 800-63B (§3.1.1.2 of revision 4: "the username, and
 * derivatives thereof"): the whole address, whatever its length, and its local part, which is
 * the username people type (alice+shop@… is still alice). A local part of under four characters
 * counts only as the whole password: as a substring it would refuse half the dictionary.
 */
function containsEmail(normalisedPassword: string, email: string): boolean {
  const address = email.normalize('NFKC').toLowerCase();
  const password = normalisedPassword.toLowerCase();
  if (address.length > 0 && password.includes(address)) return true;
  const at = address.lastIndexOf('@');
  const localPart = at === -1 ? address : address.slice(0, at);
  const candidates = new Set([localPart, localPart.split('+')[0] ?? '']);
  for (const candidate of candidates) {
    if (candidate.length === 0) continue;
    if (password === candidate) return true;
    if ([...candidate].length >= MIN_LOCAL_PART_FOR_CONTAINS && password.includes(candidate)) return true;
  }
  return false;
}

/**
 * Made once per process with the current policy, so verifying against it costs exactly what
 * verifying a real, current hash costs. Its password is random and thrown away: nothing can
 * match it. Started at import so the first unknown-email sign-in does not also pay for a hash.
 */
const dummyHash: Promise<string> = hash(randomBytes(32), HASH_OPTIONS);
// Keeps a start-up failure from being an unhandled rejection; verifyAgainstDummy still sees it.
dummyHash.catch(() => undefined);
