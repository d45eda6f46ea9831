import { createHash, randomInt, timingSafeEqual } from 'node:crypto';

export const RECOVERY_CODE_COUNT = 10;

/**
 * The key of the stored form: HMAC-SHA256 under a key of the system key hierarchy (the
 * blind-index key of `recovery_codes.code_hash`, derived from the system data key), which
 * RecoveryCodesFactor (recovery-factor.ts) supplies from the sealer.
 */
export interface RecoveryCodeKey {
  /** The MAC of `message` under the current key version. */
  mac(message: string): Buffer;
  /** The MAC under every active key version, newest first: codes outlive key rotations. */
  macAllVersions(message: string): Buffer[];
}

export interface RecoveryCodeSet {
  /** Shown to the user once, formatted `xxxxx-xxxxx`; never stored or logged. */
  codes: string[];
  /** What to store, one per code, in the same order (`storedFormOf`). */
  hashes: string[];
}

export interface StoredRecoveryCode<Id> {
  id: Id;
  hash: string;
  usedAt: Date | null;
}

/**
 * Ten characters from Crockford's base32 alphabet: exactly 50 bits each, drawn with
 * crypto.randomInt so there is no modulo bias.
 *
 * The stored form is a keyed MAC, not argon2: a slow hash exists to protect low-entropy,
 * human-chosen secrets, and these are uniformly random; a MAC also lets `findRecoveryCode`
 * check all ten entries in microseconds. Unkeyed (the SHA-256 stored before), a copy of the
 * table let anyone with GPUs search the 2^50 codes offline in days; keyed, the search needs the
 * system data key, which the database holds only wrapped under the KEK.
 */
export function generateRecoveryCodes(userId: string, key: RecoveryCodeKey, count = RECOVERY_CODE_COUNT): RecoveryCodeSet {
  const normalised = new Set<string>();
  // A repeat is a 2^-50 event, but a duplicate would make two rows spend as one.
  while (normalised.size < count) {
    let code = '';
    for (let i = 0; i < CODE_LENGTH; i++) code += ALPHABET[randomInt(ALPHABET.length)];
    normalised.add(code);
  }
  const codes = [...normalised];
  return {
    codes: codes.map((code) => `${code.slice(0, GROUP)}-${code.slice(GROUP)}`),
    hashes: codes.map((code) => storedFormOf(userId, legacyDigestOf(code), key)),
  };
}

/**
 * `hmac-sha256:` + hex HMAC of the user id and the SHA-256 of the normalised code. The MAC is
 * over the old unkeyed digest, not the code, so a stored SHA-256 (`legacyHex`) of an earlier
 * release becomes this form without anyone knowing the code (`upgradeLegacyRecoveryCodes`).
 * The user id binds a row to its owner: copied to another user's codes, it matches nothing.
 */
export function storedFormOf(userId: string, legacyHex: string, key: RecoveryCodeKey): string {
  return `${KEYED_PREFIX}${key.mac(macInput(userId, legacyHex)).toString('hex')}`;
}

/** A stored form of an earlier release: bare SHA-256 hex of the normalised code, no key. */
export function isLegacyForm(hash: string): boolean {
  return LEGACY_FORM.test(hash);
}

/**
 * The id of the unused stored code that `input` matches, or undefined. Every entry is
 * compared in constant time, used or not, with no early exit, so timing says neither
 * whether nor where a code matched. Entries still in the legacy form (written by an older
 * instance during an upgrade) are compared with the unkeyed digest.
 *
 * Finding a code does not spend it. The caller marks it used in the same transaction that
 * accepts the sign-in, with a conditional update (see `RecoveryCodeStore`), so that two
 * concurrent requests with one code cannot both succeed.
 */
export function findRecoveryCode<Id>(stored: ReadonlyArray<StoredRecoveryCode<Id>>, userId: string, input: string, key: RecoveryCodeKey): Id | undefined {
  const normalised = normaliseRecoveryCode(input);
  if (normalised === undefined) return undefined;
  const legacyHex = legacyDigestOf(normalised);
  const legacy = Buffer.from(legacyHex, 'hex');
  const keyed = key.macAllVersions(macInput(userId, legacyHex));
  let found: Id | undefined;
  for (const entry of stored) {
    const isKeyed = entry.hash.startsWith(KEYED_PREFIX);
    const storedBytes = Buffer.from(isKeyed ? entry.hash.slice(KEYED_PREFIX.length) : entry.hash, 'hex');
    let equal = false;
    for (const candidate of isKeyed ? keyed : [legacy]) {
      // A corrupt row must not throw (timingSafeEqual needs equal lengths) nor match.
      const comparable = storedBytes.length === candidate.length;
      equal = (timingSafeEqual(comparable ? storedBytes : candidate, candidate) && comparable) || equal;
    }
    if (equal && entry.usedAt === null && found === undefined) found = entry.id;
  }
  return found;
}

/**
 * What the database layer provides. `markUsed` must be one conditional statement, e.g.
 *   UPDATE recovery_codes SET used_at = $at WHERE id = $id AND used_at IS NULL
 * returning whether a row changed, run in the transaction that completes the sign-in.
 */
export interface RecoveryCodeStore<Id> {
  listForUser(userId: string): Promise<Array<StoredRecoveryCode<Id>>>;
  markUsed(id: Id, usedAt: Date): Promise<boolean>;
}

/** Find plus spend: the id of the code this request used up, or undefined. */
export async function redeemRecoveryCode<Id>(
  store: RecoveryCodeStore<Id>,
  userId: string,
  input: string,
  key: RecoveryCodeKey,
  now: Date = new Date(),
): Promise<Id | undefined> {
  const id = findRecoveryCode(await store.listForUser(userId), userId, input, key);
  if (id === undefined) return undefined;
  return (await store.markUsed(id, now)) ? id : undefined;
}

/**
 * Lower case, without dashes and whitespace, with Crockford's look-alikes folded (o→0,
 * i/l→1) so a code read off paper in a different font still works. Undefined when the
 * result cannot be a code of ours.
 */
export function normaliseRecoveryCode(input: string): string | undefined {
  const folded = input
    .toLowerCase()
    .replace(/[\s-]/g, '')
    .replace(/o/g, '0')
    .replace(/[il]/g, '1');
  return CODE_PATTERN.test(folded) ? folded : undefined;
}

/** Crockford base32 (https://www.crockford.com/base32.html): no i, l, o, u. */
const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz';
const CODE_LENGTH = 10;
const GROUP = 5;
const CODE_PATTERN = new RegExp(`^[${ALPHABET}]{${CODE_LENGTH}}$`);

/** Marks the keyed form, so a row says which way it is compared. */
const KEYED_PREFIX = 'hmac-sha256:';
const LEGACY_FORM = /^[0-9a-f]{64}$/;

/** SHA-256 (hex) of a normalised code: the whole stored form before, the MAC's input now. */
function legacyDigestOf(normalised: string): string {
  return createHash('sha256').update(normalised, 'ascii').digest('hex');
}

function macInput(userId: string, legacyHex: string): string {
  return `${userId}\n${legacyHex}`;
}
