import { dictionary } from '@zxcvbn-ts/language-common';

/**
 * The shipped list of common passwords: zxcvbn-ts's `passwords-common` (~49k entries,
 * most common first, all lower case, drawn from public breach corpora). The Set is built on
 * first use, not at import, so processes that never check a new password (workers, the
 * CLI's read-only commands) do not pay for it.
 */
export function isCommonPassword(candidate: string): boolean {
  return commonPasswords().has(candidate.toLowerCase());
}

let commonPasswordSet: ReadonlySet<string> | undefined;

function commonPasswords(): ReadonlySet<string> {
  commonPasswordSet ??= new Set(dictionary['passwords-common'].map((entry) => entry.toLowerCase()));
  return commonPasswordSet;
}
