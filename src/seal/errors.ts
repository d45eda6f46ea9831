/**
 * Typed failures of the sealing layer. Callers branch on `name` and `reason`, never on
 * message text, so the HTTP error handler can map them to problem+json in one place.
 */

export type SealOpenFailure =
  | 'not-sealed'
  | 'unsupported-format'
  | 'truncated'
  | 'unknown-key-version'
  | 'authentication-failed';

/**
 * A sealed value could not be opened. Messages never include key material, plaintext or
 * the sealed bytes, because they end up in logs.
 */
export class SealOpenError extends Error {
  override readonly name = 'SealOpenError';
  constructor(
    readonly reason: SealOpenFailure,
    message: string = DEFAULT_OPEN_MESSAGES[reason],
  ) {
    super(message);
  }
}

/**
 * A caller passed something the sealing layer refuses to guess about: an empty tenant, a
 * table name that would make key labels ambiguous, a key of the wrong length. These are
 * programming or configuration errors, not bad end-user input.
 */
export class SealInputError extends Error {
  override readonly name = 'SealInputError';
}

/** The keyring has no current data key for a scope, so nothing can be sealed for it yet. */
export class MissingKeyError extends Error {
  override readonly name = 'MissingKeyError';
  constructor(readonly scope: string) {
    super(`no current data key for scope "${scope}"`);
  }
}

/**
 * The scope's data keys were destroyed (crypto-shredding). A destroyed scope never gets a key
 * again: making one would let new data, or a restored old row, be sealed or opened under a
 * scope the operator was told is gone.
 */
export class ScopeDestroyedError extends Error {
  override readonly name = 'ScopeDestroyedError';
  constructor(readonly scope: string) {
    super(`the data keys of scope "${scope}" were destroyed (crypto-shredded); a destroyed scope never gets keys again`);
  }
}

const DEFAULT_OPEN_MESSAGES: Record<SealOpenFailure, string> = {
  'not-sealed': 'value is not a sealed envelope',
  'unsupported-format': 'sealed envelope has an unsupported format version',
  truncated: 'sealed envelope is truncated',
  'unknown-key-version': 'sealed envelope names a key version that is not available',
  'authentication-failed': 'sealed envelope failed authentication (tampered, or opened in the wrong context)',
};
