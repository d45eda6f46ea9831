/**
 * What the key maintenance use cases answer instead of throwing when the operator asked for
 * something that cannot be done; front ends (the CLI) turn each code into their own words.
 */
export const KEYS_ERRORS = {
  /** The tenant was crypto-shredded (its keys destroyed) and its rows are not removed yet: never re-keyed. */
  'scope-destroyed': { title: 'The data keys of this tenant were destroyed' },
  /** `keys rewrap` from the KEK that is configured already: nothing would move. */
  'same-kek': { title: 'The old and the configured KEK are the same key' },
} as const;

export type KeysErrorCode = keyof typeof KEYS_ERRORS;
