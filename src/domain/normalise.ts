/**
 * Canonical forms for blind-indexed values. A blind index only finds a row when the
 * lookup value normalises to exactly the bytes that were indexed, so every writer and
 * every reader of a column must use the same normaliser.
 */

import { parsePhoneNumberFromString, type CountryCode } from 'libphonenumber-js';

/** A value handed to a normaliser cannot be put into canonical form (e.g. not a phone number). */
export class NormaliseError extends Error {
  override readonly name = 'NormaliseError';
  constructor(
    readonly normaliser: string,
    message: string,
  ) {
    super(message);
  }
}

export type NormaliserKind = 'e164' | 'email' | 'exact';
export type Normaliser = NormaliserKind | ((value: string) => string);

/**
 * A phone number in E.164 (`+14155550100`). Numbers without a country prefix are read as
 * national numbers of `defaultCountry`. Extensions are dropped: an SMS reaches the line,
 * not the extension. Throws NormaliseError for anything libphonenumber does not consider a
 * valid number, so an index is never built over a typo or a short code.
 */
export function normaliseE164(value: string, defaultCountry: CountryCode = 'US'): string {
  const phone = parsePhoneNumberFromString(value, { defaultCountry });
  if (phone === undefined || !phone.isValid()) {
    throw new NormaliseError('e164', 'not a valid phone number');
  }
  return phone.number;
}

/**
 * An e-mail address trimmed, lower-cased and in NFC. Lower-casing the local part is
 * technically lossy (RFC 5321 lets it be case-sensitive) but no mail system in use treats
 * it so, and users type addresses in any case.
 */
export function normaliseEmail(value: string): string {
  const email = value.trim().toLowerCase().normalize('NFC');
  if (email.length === 0) throw new NormaliseError('email', 'e-mail address is empty');
  return email;
}

/** The value as given, in NFC, so the same text typed on different systems matches. */
export function normaliseExact(value: string): string {
  return value.normalize('NFC');
}

export function normalise(normaliser: Normaliser, value: string): string {
  if (typeof value !== 'string') {
    throw new NormaliseError(typeof normaliser === 'string' ? normaliser : 'custom', 'value must be a string');
  }
  switch (normaliser) {
    case 'e164':
      return normaliseE164(value);
    case 'email':
      return normaliseEmail(value);
    case 'exact':
      return normaliseExact(value);
    default:
      if (typeof normaliser === 'function') return normaliser(value);
      throw new NormaliseError(String(normaliser), `unknown normaliser "${String(normaliser)}"`);
  }
}

/** `value` in E.164, or undefined when it is no phone number (a short code, an alphanumeric sender, a typo). */
export function e164OrUndefined(value: string | undefined, defaultCountry: CountryCode = 'US'): string | undefined {
  if (value === undefined) return undefined;
  try {
    return normaliseE164(value, defaultCountry);
  } catch {
    return undefined;
  }
}
