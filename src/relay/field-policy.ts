/**
 * How one value appears in the tenant's Airtable base, under the per-field policy of
 * tenant.json (`airtable.fields`, see shared CONTRACT.md):
 *
 *   plain    the value as it is
 *   masked   enough for staff to recognise a row, not enough to recover the value:
 *              phone   country calling code + one bullet per hidden digit + last 4 digits
 *                      (+14155552671 → +1••••••2671)
 *              name    initials (Maria Lopez → M. L.)
 *              body / aiReply
 *                      only the length, `[42 chars]`. The first word was considered and
 *                      refused: in SMS it is often the very thing to hide ("4111111111111111
 *                      is my card", "Maria here"), and any fixed-length prefix has the same
 *                      problem. The length tells staff a message exists and how long it is.
 *   sealed   a reference only, `sealed:<reference>`; the value stays sealed in Ciphergate and
 *            staff open it through the API, where the read is audited
 *   omitted  `undefined`: the field is left out of the Airtable write altogether
 *
 * A null value (nothing to show) stays null under plain, masked and sealed, so the cell is
 * cleared; omitted wins over everything.
 */

import { parsePhoneNumberFromString } from 'libphonenumber-js';

export type FieldPolicy = 'plain' | 'masked' | 'sealed' | 'omitted';
export type PresentedFieldKind = 'phone' | 'name' | 'body' | 'aiReply';

export const FIELD_POLICIES: readonly FieldPolicy[] = ['plain', 'masked', 'sealed', 'omitted'];

/**
 * The value to write to Airtable for `value` under `policy`; `undefined` means "do not
 * send this field". `reference` names the row in Ciphergate (e.g. the message id) and must
 * be an opaque id: it is written to Airtable as it is under `sealed`.
 */
export function presentField(
  kind: PresentedFieldKind,
  value: string | null,
  policy: FieldPolicy,
  reference: string,
): string | null | undefined {
  switch (policy) {
    case 'omitted':
      return undefined;
    case 'plain':
      return value;
    case 'sealed':
      if (value === null) return null;
      return `sealed:${checkedReference(reference)}`;
    case 'masked':
      if (value === null) return null;
      return maskValue(kind, value);
    default:
      // tenant.json is read at run time; a policy the type does not know must not fall
      // through to showing the value.
      throw new FieldPolicyError(`unknown field policy "${String(policy)}"`);
  }
}

/** A policy, kind or reference the presenter refuses; the message never holds the value. */
export class FieldPolicyError extends Error {
  override readonly name = 'FieldPolicyError';
}

/** Masks a phone number: `+<country calling code><bullets><last digits>`. */
export function maskPhone(value: string): string {
  // E.164 is what we store; a national number is read as US, the same default as the
  // blind index (src/domain/normalise.ts). Validity does not matter for masking.
  const phone = parsePhoneNumberFromString(value, { defaultCountry: 'US', extract: false });
  if (phone === undefined) {
    // Nothing we can split safely: show that there is a number, reveal none of it.
    return BULLET.repeat(6);
  }
  const national = phone.nationalNumber;
  // Last 4 for real numbers; for short ones never more than half, so a 6-digit short code
  // is not shown whole.
  const shown = Math.min(4, Math.floor(national.length / 2));
  return `+${phone.countryCallingCode}${BULLET.repeat(national.length - shown)}${national.slice(national.length - shown)}`;
}

/** Initials of each word that has a letter: "maria de la cruz" → "M. D. L. C.". */
export function maskName(value: string): string {
  const initials = value
    .normalize('NFC')
    .split(/\s+/u)
    .map((word) => word.match(/\p{L}/u)?.[0])
    .filter((letter): letter is string => letter !== undefined)
    .map((letter) => `${letter.toUpperCase()}.`);
  return initials.length === 0 ? BULLET : initials.join(' ');
}

/** `[N chars]`, counting Unicode code points (what a person would call characters). */
export function maskText(value: string): string {
  const length = Array.from(value).length;
  return `[${length} ${length === 1 ? 'char' : 'chars'}]`;
}

const BULLET = '\u2022';

function maskValue(kind: PresentedFieldKind, value: string): string {
  switch (kind) {
    case 'phone':
      return maskPhone(value);
    case 'name':
      return maskName(value);
    case 'body':
    case 'aiReply':
      return maskText(value);
    default:
      throw new FieldPolicyError(`unknown field kind "${String(kind)}"`);
  }
}

// Ids such as `msg_01HV…`, `conv:42` or a UUID; nothing with spaces, `+` or `@`, so a phone
// number or an e-mail passed by mistake is not written to Airtable as a "reference".
const REFERENCE = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;

function checkedReference(reference: string): string {
  if (typeof reference !== 'string' || !REFERENCE.test(reference)) {
    throw new FieldPolicyError('sealed field reference must be an opaque id (letters, digits, _ . : -; at most 128)');
  }
  return reference;
}
