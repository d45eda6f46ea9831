/**
 * How a list shows who a conversation is with, without showing who it is: the last few digits of
 * the sender as stored, behind a fixed run of bullets. Nothing else of the number survives: not
 * its country code, not its length (the bullets never vary), not a letter of an alphanumeric
 * sender. Long enough numbers show 4 digits, short ones (short codes, odd senders) 2, and a
 * sender with fewer than 4 digits shows none, so a mask never holds more than half the digits.
 *
 * Stricter than the Airtable `masked` policy (src/relay/field-policy.ts), which keeps the
 * country code and length for staff who already see the row; a list is browsed by anyone with
 * `conversations:read`, before any audited read.
 */
export function maskContactNumber(storedNumber: string): string {
  const digits = storedNumber.replace(/\D/g, '');
  const shown = digits.length >= 8 ? 4 : digits.length >= 4 ? 2 : 0;
  return `${MASK_PREFIX}${digits.slice(digits.length - shown)}`;
}

const MASK_PREFIX = '\u2022\u2022\u2022\u2022';
