import { createHash, randomInt, timingSafeEqual } from 'node:crypto';

export const RECOVERY_CODE_COUNT = 10;

export interface RecoveryCodeSet {
  /** Shown to the user once, formatted `xxxxx-xxxxx`; never stored or logged. */
  codes: string[];
  /** What to store, one per code, in the same order: SHA-256 (hex) of the normalised code. */
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
 * The stored form is plain SHA-256, not argon2: a slow hash exists to protect low-entropy,
 * human-chosen secrets, and these are uniformly random. It also lets `findRecoveryCode`
 * check all ten entries in microseconds. The limit of that choice: someone holding a copy
 * of the table and GPUs could search 2^50 per code offline (days, not years), and would then
 * still need the argon2id-protected password.
 */
export function generateRecoveryCodes(count = RECOVERY_CODE_COUNT): RecoveryCodeSet {
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
    hashes: codes.map(hashNormalisedCode),
  };
}

/**
 * The id of the unused stored code that `input` matches, or undefined. Every entry is
 * compared in constant time, used or not, with no early exit, so timing says neither
 * whether nor where a code matched.
 *
 * Finding a code does not spend it. The caller marks it used in the same transaction that
 * accepts the sign-in, with a conditional update (see `RecoveryCodeStore`), so that two
 * concurrent requests with one code cannot both succeed.
 */
export function findRecoveryCode<Id>(stored: ReadonlyArray<StoredRecoveryCode<Id>>, input: string): Id | undefined {
  const normalised = normaliseRecoveryCode(input);
  if (normalised === undefined) return undefined;
  const candidate = Buffer.from(hashNormalisedCode(normalised), 'hex');
  let found: Id | undefined;
  for (const entry of stored) {
    const storedHash = Buffer.from(entry.hash, 'hex');
    // A corrupt row must not throw (timingSafeEqual needs equal lengths) nor match.
    const comparable = storedHash.length === candidate.length;
    const equal = timingSafeEqual(comparable ? storedHash : candidate, candidate) && comparable;
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
  now: Date = new Date(),
): Promise<Id | undefined> {
  const id = findRecoveryCode(await store.listForUser(userId), input);
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

function hashNormalisedCode(normalised: string): string {
  return createHash('sha256').update(normalised, 'ascii').digest('hex');
}
