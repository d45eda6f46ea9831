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

export type NormaliserKind = 'e164' | 'sender' | 'email' | 'exact';
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
    case 'sender':
      return normaliseSender(value);
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

/**
 * Who sent an inbound message, as the provider names them. Most senders are phone numbers that
 * normalise to E.164. Some are genuine yet no number libphonenumber accepts: short codes
 * ("12345"), alphanumeric sender ids ("ACME"), fictional 555 numbers ("+1 555 123 0001"),
 * national numbers of another country without their prefix. A correctly signed delivery from
 * one of them is stored like any other (issue 15 item 4: no silent drop), flagged as not E.164.
 */

/**
 * `e164`: a phone number, stored and indexed in E.164. `digits`: digits and phone punctuation
 * that make no valid number, stored as received and indexed by its digits. `text`: anything
 * with a letter or another sign (an alphanumeric sender id), stored and indexed as received.
 */
export const SENDER_KINDS = ['e164', 'digits', 'text'] as const;
export type SenderKind = (typeof SENDER_KINDS)[number];

export interface InboundSender {
  /** What the contact's sealed phone column holds: the E.164 form, or the sender as received (trimmed). */
  address: string;
  kind: SenderKind;
  /**
   * Where an SMS back goes, in E.164 shape (what Twilio's `To` takes), or undefined when none
   * can: short codes and alphanumeric ids only send, carriers deliver nothing to them, so no AI
   * reply is made for them (docs/providers.md, "Senders that are no phone number"). A 555 number
   * or another number libphonenumber calls possible but not valid is answered there.
   */
  replyTo: string | undefined;
}

/** Longer than any phone number or sender id a carrier uses (E.164: 15 digits; alphanumeric ids: 11 characters). */
export const MAX_SENDER_LENGTH = 64;

/** Digits with the punctuation people and providers write phone numbers with. */
const PHONE_LIKE = /^\+?[\d\s().-]+$/;

/**
 * The sender `value` names, or undefined when it names none (empty, only punctuation, longer
 * than MAX_SENDER_LENGTH, a control character): such a delivery is malformed, refused with 4xx.
 */
export function inboundSenderOf(value: string | undefined): InboundSender | undefined {
  if (value === undefined) return undefined;
  const trimmed = value.trim().normalize('NFC');
  // eslint-disable-next-line no-control-regex
  if (trimmed.length === 0 || trimmed.length > MAX_SENDER_LENGTH || /[\u0000-\u001f\u007f]/.test(trimmed)) return undefined;
  try {
    const address = normaliseE164(trimmed);
    return { address, kind: 'e164', replyTo: address };
  } catch (error) {
    if (!(error instanceof NormaliseError)) throw error;
  }
  if (PHONE_LIKE.test(trimmed)) {
    const digits = trimmed.replace(/\D/g, '');
    if (digits.length === 0) return undefined;
    // A number of the right length for its country (libphonenumber's "possible") is a line, if
    // an odd one; a short code is not. Read as US when it has no prefix, as the e164 normaliser does.
    const possible = parsePhoneNumberFromString(trimmed, { defaultCountry: 'US' });
    return { address: trimmed, kind: 'digits', replyTo: possible?.isPossible() ? possible.number : undefined };
  }
  if (!/[\p{L}\p{N}]/u.test(trimmed)) return undefined;
  return { address: trimmed, kind: 'text', replyTo: undefined };
}

/**
 * The form a sender's blind index is computed over (normaliser `sender`): E.164 for a phone
 * number, exactly as the `e164` normaliser gives it, so contacts indexed before non-E.164
 * senders were accepted are still found; the digits alone for other digit strings (never
 * starting with `+`, so never equal to an E.164 form); the trimmed text for the rest (it
 * holds a sign no digit string has). Throws NormaliseError when `value` names no sender.
 */
export function normaliseSender(value: string): string {
  const sender = inboundSenderOf(value);
  if (sender === undefined) throw new NormaliseError('sender', 'not a sender address');
  switch (sender.kind) {
    case 'e164':
      return sender.address;
    case 'digits':
      return sender.address.replace(/\D/g, '');
    case 'text':
      return sender.address;
  }
}
