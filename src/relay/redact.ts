/**
 * Personal data out of conversation text before it goes to OpenAI, and back into the
 * answer afterwards. (Over 400 lines: the detectors share one placeholder scheme and one
 * collision rule, and are read together; splitting them would scatter the ordering argument below.)
 *
 * Each distinct value becomes a placeholder such as `[PHONE_1]`, the same placeholder for
 * the same value everywhere in the history passed to one call, so the model can still
 * follow "the number I gave you earlier". The placeholder → original map holds the very
 * data being hidden: callers keep it in the memory of the job that made it and never
 * store, log or enqueue it.
 *
 * Categories, applied in this order to each text (a later detector sees the placeholders
 * of earlier ones, which are built so that no detector matches them):
 *   1. e-mail addresses             `[EMAIL_n]`   (identity: lower-cased)
 *   2. payment card numbers         `[CARD_n]`    (13–19 digits passing Luhn; identity: digits)
 *   3. phone numbers                `[PHONE_n]`   (libphonenumber-js; identity: E.164 + extension)
 *   4. US-style street addresses    `[ADDRESS_n]` (own pattern, see "Street addresses" below;
 *                                                identity: lower-cased, spaces and punctuation collapsed)
 *   5. the contact's known names    `[NAME_n]`    (identity: lower-cased)
 * E-mails come first so the digits and names inside them are not half-redacted; cards come
 * before phones so a card number is never also a phone number; addresses come before names
 * so "12 Lopez St" is one address rather than "12 [NAME_1] St".
 *
 * Collisions with text the user wrote: when any input already contains something shaped
 * like one of our placeholders (e.g. a customer pasting "[PHONE_1]"), this call switches to
 * a salted form `[PHONE_1_k3x9]`, with a random salt chosen so that no salted token can
 * already occur in the input. The user's own "[PHONE_1]" then passes through untouched
 * both ways: it is not in the map, so `restorePlaceholders` leaves it alone. Unsalted
 * tokens are kept for the common case because they are shorter and easier for the model
 * to echo faithfully.
 */

import { randomInt } from 'node:crypto';
import { findPhoneNumbersInText, type CountryCode } from 'libphonenumber-js';

export interface Redaction {
  /** The redacted texts, in the same order as the input. */
  text: string[];
  /** placeholder → the original text it replaced (the first spelling seen). */
  placeholders: Map<string, string>;
}

export interface RedactOptions {
  /** The contact's names as known to us ("Maria Lopez"); each word of ≥ 3 letters is redacted too. */
  knownNames?: string[];
  /**
   * Country for phone numbers written without a `+` prefix. Defaults to 'US', the same
   * default as the E.164 blind index (src/domain/normalise.ts), so national numbers are found.
   */
  defaultCountry?: CountryCode;
}

/**
 * Replaces personal data in `texts` with placeholders that are stable across all of them.
 * Texts are compared and returned in Unicode NFC so the same name typed on two keyboards
 * gets one placeholder.
 */
export function redactTexts(texts: string[], options: RedactOptions = {}): Redaction {
  const normalisedTexts = texts.map((text) => text.normalize('NFC'));
  const salt = chooseSalt(normalisedTexts);
  const registry = new PlaceholderRegistry(salt);
  const namePattern = buildNamePattern(options.knownNames ?? []);
  const defaultCountry = options.defaultCountry ?? 'US';

  const redacted = normalisedTexts.map((text) => {
    let out = replaceMatches(text, findEmails(text), 'EMAIL', registry);
    out = replaceMatches(out, findCards(out), 'CARD', registry);
    out = replaceMatches(out, findPhones(out, defaultCountry), 'PHONE', registry);
    out = replaceMatches(out, findAddresses(out), 'ADDRESS', registry);
    if (namePattern !== undefined) out = replaceMatches(out, findNames(out, namePattern), 'NAME', registry);
    return out;
  });
  return { text: redacted, placeholders: registry.placeholders };
}

/**
 * Puts the originals back wherever the model echoed one of this call's placeholders,
 * exactly as issued (same case, same brackets). Placeholder-shaped text that is not in the
 * map — the user's own "[PHONE_1]" under a salted call, or a number the model made up —
 * is left as it is. One pass, so a restored value is never itself rewritten.
 */
export function restorePlaceholders(text: string, placeholders: Map<string, string>): string {
  if (placeholders.size === 0) return text;
  return text.replace(PLACEHOLDER_SHAPE, (token) => placeholders.get(token) ?? token);
}

// ---------------------------------------------------------------------------------------
// Placeholders

type Kind = 'EMAIL' | 'CARD' | 'PHONE' | 'ADDRESS' | 'NAME';

/** Everything `PlaceholderRegistry` can issue, salted or not. */
const PLACEHOLDER_SHAPE = /\[(?:EMAIL|CARD|PHONE|ADDRESS|NAME)_\d+(?:_[a-z0-9]+)?\]/g;

/**
 * What counts as "the input already looks like a placeholder": any kind word, any case,
 * followed by `_` and a digit, after a bracket. Broader than PLACEHOLDER_SHAPE on purpose,
 * so "[phone_1" or "[PHONE_1_x]" typed by a user also forces the salted form.
 */
const PLACEHOLDER_LOOKALIKE = /\[\s*(?:EMAIL|CARD|PHONE|ADDRESS|NAME)_\d/i;

const SALT_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';
const SALT_LENGTH = 4;

function chooseSalt(texts: string[]): string | undefined {
  if (!texts.some((text) => PLACEHOLDER_LOOKALIKE.test(text))) return undefined;
  for (;;) {
    let salt = '';
    for (let i = 0; i < SALT_LENGTH; i++) salt += SALT_ALPHABET[randomInt(SALT_ALPHABET.length)];
    // A salt nobody wrote means no issued token can equal text already in the input.
    if (!texts.some((text) => text.toLowerCase().includes(`_${salt}]`))) return salt;
  }
}

class PlaceholderRegistry {
  readonly placeholders = new Map<string, string>();
  private readonly byIdentity = new Map<string, string>();
  private readonly counters = new Map<Kind, number>();

  constructor(private readonly salt: string | undefined) {}

  placeholderFor(kind: Kind, identity: string, original: string): string {
    const key = `${kind}\u0000${identity}`;
    const existing = this.byIdentity.get(key);
    if (existing !== undefined) return existing;
    const n = (this.counters.get(kind) ?? 0) + 1;
    this.counters.set(kind, n);
    const token = this.salt === undefined ? `[${kind}_${n}]` : `[${kind}_${n}_${this.salt}]`;
    this.byIdentity.set(key, token);
    this.placeholders.set(token, original);
    return token;
  }
}

interface Match {
  start: number;
  end: number;
  /** What makes two matches the same value (normalised); the placeholder is shared by identity. */
  identity: string;
}

/** Replaces non-overlapping matches (earliest first; an overlapping later one is dropped). */
function replaceMatches(text: string, matches: Match[], kind: Kind, registry: PlaceholderRegistry): string {
  if (matches.length === 0) return text;
  const ordered = [...matches].sort((a, b) => a.start - b.start || b.end - a.end);
  let out = '';
  let cursor = 0;
  for (const match of ordered) {
    if (match.start < cursor) continue;
    out += text.slice(cursor, match.start);
    out += registry.placeholderFor(kind, match.identity, text.slice(match.start, match.end));
    cursor = match.end;
  }
  return out + text.slice(cursor);
}

// ---------------------------------------------------------------------------------------
// E-mail

// Pragmatic rather than RFC 5322: a dotted domain with a letters-only last label, so the
// full stop that ends a sentence is not taken as part of the address. Unicode letters are
// allowed on both sides (internationalised addresses, RFC 6531). The look-behind makes a
// match start only where a run of address characters starts, which keeps a long run
// without "@" linear instead of quadratic.
const EMAIL = /(?<![\p{L}\p{N}._%+'-])[\p{L}\p{N}._%+'-]+@(?:[\p{L}\p{N}](?:[\p{L}\p{N}-]*[\p{L}\p{N}])?\.)+\p{L}{2,}/gu;

function findEmails(text: string): Match[] {
  return [...text.matchAll(EMAIL)].map((m) => ({
    start: m.index,
    end: m.index + m[0].length,
    identity: m[0].toLowerCase(),
  }));
}

// ---------------------------------------------------------------------------------------
// Payment cards

// A run of digit groups separated by single spaces or dashes. Card numbers are looked for
// inside a run on group boundaries only, so "4111 1111 1111 1111 2025" still yields the
// card while a 20-digit reference written without separators is never cut into one.
const DIGIT_RUN = /(?<![\p{L}\p{N}_])\d+(?:[ -]\d+)*(?![\p{L}\p{N}_])/gu;
const CARD_MIN_DIGITS = 13;
const CARD_MAX_DIGITS = 19;

function findCards(text: string): Match[] {
  const found: Match[] = [];
  for (const run of text.matchAll(DIGIT_RUN)) {
    const groups = [...run[0].matchAll(/\d+/g)].map((g) => ({
      start: run.index + g.index,
      end: run.index + g.index + g[0].length,
      digits: g[0],
    }));
    let first = 0;
    while (first < groups.length) {
      const card = longestLuhnWindow(groups, first);
      if (card === undefined) {
        first += 1;
        continue;
      }
      found.push(card.match);
      first = card.next;
    }
  }
  return found;
}

function longestLuhnWindow(
  groups: Array<{ start: number; end: number; digits: string }>,
  first: number,
): { match: Match; next: number } | undefined {
  let digits = '';
  const windows: Array<{ last: number; digits: string }> = [];
  for (let last = first; last < groups.length; last++) {
    digits += groups[last]!.digits;
    if (digits.length > CARD_MAX_DIGITS) break;
    if (digits.length >= CARD_MIN_DIGITS) windows.push({ last, digits });
  }
  for (const window of windows.reverse()) {
    if (passesLuhn(window.digits)) {
      return {
        match: { start: groups[first]!.start, end: groups[window.last]!.end, identity: window.digits },
        next: window.last + 1,
      };
    }
  }
  return undefined;
}

/** The Luhn (mod 10) check every payment card number carries (ISO/IEC 7812-1). */
export function passesLuhn(digits: string): boolean {
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = digits.charCodeAt(digits.length - 1 - i) - 48;
    if (i % 2 === 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 === 0;
}

// ---------------------------------------------------------------------------------------
// Phone numbers

// libphonenumber-js's default ("min") metadata on purpose: the "max" set is bundled and
// cheap (about 150 kB), but it only makes `isValid()` stricter digit by digit, and for
// redaction a stricter matcher means more numbers left in the clear. The min set is also
// what src/domain/normalise.ts uses, so a number gets the same E.164 form in both places.
// Leniency stays at the library's default "VALID" (possible numbers would also catch order
// numbers glued to letters). Not found: local numbers without an area code ("555-2671").
// https://gitlab.com/catamphetamine/libphonenumber-js#findphonenumbersintexttext-string-defaultcountry-string--options-object-object
function findPhones(text: string, defaultCountry: CountryCode): Match[] {
  return findPhoneNumbersInText(text, { defaultCountry }).map((found) => ({
    start: found.startsAt,
    end: found.endsAt,
    identity: found.number.ext === undefined ? found.number.number : `${found.number.number};ext=${found.number.ext}`,
  }));
}

// ---------------------------------------------------------------------------------------
// Street addresses
//
// No maintained, permissively licensed JavaScript library finds addresses *inside free
// text*: parse-address (ISC, a port of Perl's Geo::StreetAddress::US, unreleased for years)
// and addressit (MIT) parse a string already known to be an address; pelias-parser (MIT)
// classifies one geocoding query; libpostal / node-postal (MIT) need a native library and
// gigabytes of model data and are parsers too; the real detectors are Python (pyap) and
// Ruby (street-address). So this is our own, deliberately conservative US pattern:
//
//   house number (1–6 digits, optional letter or "-12" part) · optional direction (N, SW,
//   North…) · 1–4 street-name words · a USPS street suffix (St, Ave, Rd, Blvd, Ln, Dr, Way,
//   Ct, Pl, Ter, Pkwy, Hwy, Cir, Sq, Trl, Plz, Aly, Loop, Pike, Expy, Fwy, Tpke and spelled-out
//   forms) · optional direction · optional unit (Apt 4B, Suite 200, #12) · optional
//   "City, ST 12345" / "ST 12345" / "12345" tail; and "PO Box 123".
//
// Known limits (left in the clear): streets without a suffix ("350 Broadway"), suffix-first
// names ("1211 Avenue of the Americas"), street names of more than four words, numbers
// spelled out ("Forty Main St"), intersections ("Main St and 5th Ave"), non-US layouts
// ("Hauptstraße 5", UK postcodes), and a city, state or ZIP mentioned on its own. The city
// and state are only taken when capitalised ("Springfield, IL"), so lower-case sentences
// after an address are not swallowed. Street-name words stop at common function words
// ("3 blocks down the road" is not an address); other false positives ("the 2 way street")
// are over-redaction, which is the safe direction.

const STREET_SUFFIXES = [
  'street', 'st', 'avenue', 'ave', 'av', 'road', 'rd', 'boulevard', 'blvd', 'lane', 'ln', 'drive', 'dr',
  'way', 'court', 'ct', 'circle', 'cir', 'place', 'pl', 'terrace', 'ter', 'parkway', 'pkwy', 'highway',
  'hwy', 'square', 'sq', 'trail', 'trl', 'plaza', 'plz', 'alley', 'aly', 'loop', 'pike', 'expressway',
  'expy', 'freeway', 'fwy', 'turnpike', 'tpke',
];
const STREET_NAME_STOP_WORDS = new Set([
  'a', 'an', 'the', 'and', 'or', 'but', 'to', 'of', 'on', 'in', 'at', 'by', 'for', 'from', 'with', 'my',
  'your', 'our', 'their', 'his', 'her', 'its', 'this', 'that', 'these', 'those', 'is', 'are', 'was',
  'were', 'be', 'down', 'up', 'off', 'over', 'into', 'onto', 'more', 'less', 'than', 'then', 'via',
  'per', 'about', 'around', 'across', 'along', 'i', 'we', 'you', 'it', 'me',
]);
const DIRECTION = String.raw`(?:north|south|east|west|n|s|e|w|ne|nw|se|sw)\.?`;
const WORD = String.raw`[\p{L}\d]+(?:['’-][\p{L}\d]+)*`;
// A street-name word that is not a function word, so "3 blocks down the road" is no address.
const STREET_WORD = String.raw`(?!(?:${[...STREET_NAME_STOP_WORDS].join('|')})(?![\p{L}\p{N}_]))${WORD}`;
const END = String.raw`(?![\p{L}\p{N}_])`;
const START = String.raw`(?<![\p{L}\p{N}_])`;

const STREET_LINE = new RegExp(
  START +
    String.raw`\d{1,6}(?:-\d{1,4})?[a-z]?` + // house number
    String.raw`(?:\s+${DIRECTION})?` +
    String.raw`(?:\s+${STREET_WORD}){1,4}?` + // street name, shortest first so the suffix ends it
    String.raw`\s+(?:${STREET_SUFFIXES.join('|')})\.?` +
    END +
    String.raw`(?:\s+(?:n|s|e|w|ne|nw|se|sw)\.?${END})?`,
  'giu',
);
const PO_BOX = new RegExp(START + String.raw`p\.?\s*o\.?\s*box\s+\d{1,8}` + END, 'giu');
// Extensions tried at the end of a street line, in order, each at most once. A unit is a
// keyword and a number ("Apt 4B", "Suite 200", "#12") or a single letter ("Apt B"), so the
// words after "123 Main St apartment is nice" are not taken as a unit.
const UNIT = new RegExp(
  String.raw`,?\s*(?:(?:apt|apartment|unit|suite|ste|fl|floor|rm|room|bldg|building)(?!\p{L})\.?\s*#?\s*|#\s*)(?:[a-z]{0,2}\d[a-z0-9]{0,5}(?:-[a-z0-9]{1,6})?|[a-z])` + END,
  'iuy',
);
const US_STATES = [
  'AL', 'AK', 'AZ', 'AR', 'CA', 'CO', 'CT', 'DE', 'DC', 'FL', 'GA', 'HI', 'ID', 'IL', 'IN', 'IA', 'KS', 'KY',
  'LA', 'ME', 'MD', 'MA', 'MI', 'MN', 'MS', 'MO', 'MT', 'NE', 'NV', 'NH', 'NJ', 'NM', 'NY', 'NC', 'ND', 'OH',
  'OK', 'OR', 'PA', 'PR', 'RI', 'SC', 'SD', 'TN', 'TX', 'UT', 'VT', 'VA', 'WA', 'WV', 'WI', 'WY',
  'Alabama', 'Alaska', 'Arizona', 'Arkansas', 'California', 'Colorado', 'Connecticut', 'Delaware',
  'Florida', 'Georgia', 'Hawaii', 'Idaho', 'Illinois', 'Indiana', 'Iowa', 'Kansas', 'Kentucky',
  'Louisiana', 'Maine', 'Maryland', 'Massachusetts', 'Michigan', 'Minnesota', 'Mississippi', 'Missouri',
  'Montana', 'Nebraska', 'Nevada', 'New Hampshire', 'New Jersey', 'New Mexico', 'New York',
  'North Carolina', 'North Dakota', 'Ohio', 'Oklahoma', 'Oregon', 'Pennsylvania', 'Rhode Island',
  'South Carolina', 'South Dakota', 'Tennessee', 'Texas', 'Utah', 'Vermont', 'Virginia', 'Washington',
  'West Virginia', 'Wisconsin', 'Wyoming',
];
const STATE = `(?:${[...US_STATES].sort((a, b) => b.length - a.length).join('|')})`;
const ZIP = String.raw`\d{5}(?:-\d{4})?(?!\d)`;
const CITY = String.raw`\p{Lu}[\p{L}'’.-]*(?:\s+\p{Lu}[\p{L}'’.-]*){0,2}`;
// Case-sensitive: only a capitalised city and an upper-case (or capitalised) state count.
const LOCALITY = new RegExp(
  String.raw`(?:,?\s+${CITY},?\s+${STATE}${END}(?:,?\s+${ZIP})?|,?\s+${STATE}\s+${ZIP}|,?\s+${ZIP})`,
  'uy',
);

function findAddresses(text: string): Match[] {
  const found: Match[] = [];
  for (const m of text.matchAll(STREET_LINE)) {
    let end = m.index + m[0].length;
    end = extendWith(UNIT, text, end);
    end = extendWith(LOCALITY, text, end);
    found.push(addressMatch(text, m.index, end));
  }
  for (const m of text.matchAll(PO_BOX)) {
    const end = extendWith(LOCALITY, text, m.index + m[0].length);
    found.push(addressMatch(text, m.index, end));
  }
  return found;
}

function extendWith(sticky: RegExp, text: string, from: number): number {
  sticky.lastIndex = from;
  const m = sticky.exec(text);
  return m === null ? from : from + m[0].length;
}

function addressMatch(text: string, start: number, end: number): Match {
  const original = text.slice(start, end);
  return { start, end, identity: original.toLowerCase().replace(/[\s,.]+/gu, ' ').trim() };
}

// ---------------------------------------------------------------------------------------
// Known names

const MIN_NAME_LETTERS = 3;

/**
 * One alternation of the full names and their words of at least three letters, longest
 * first so "Maria Lopez" is one placeholder rather than two. Whole words only, by Unicode
 * letters and digits, so "Maria" never matches inside "Mariana". Common words that are also
 * names ("Will", "Hope") are redacted wherever they appear: over-redaction is the safe side.
 */
function buildNamePattern(knownNames: string[]): RegExp | undefined {
  const forms = new Set<string>();
  for (const raw of knownNames) {
    const name = raw.normalize('NFC').trim().replace(/\s+/gu, ' ');
    if (letterCount(name) >= MIN_NAME_LETTERS) forms.add(name.toLowerCase());
    // Words, and the parts of hyphenated words: "O'Brien-Smith" → itself, "O'Brien", "Smith".
    for (const word of [...name.split(/\s+/u), ...name.split(/[\s-]+/u)]) {
      const token = word.replace(/^[^\p{L}\p{N}]+|[^\p{L}\p{N}]+$/gu, '');
      if (letterCount(token) >= MIN_NAME_LETTERS) forms.add(token.toLowerCase());
    }
  }
  if (forms.size === 0) return undefined;
  const alternatives = [...forms]
    .sort((a, b) => b.length - a.length)
    .map((form) => form.split(' ').map(escapeRegExp).join(String.raw`\s+`));
  return new RegExp(`${START}(?:${alternatives.join('|')})${END}`, 'giu');
}

function findNames(text: string, pattern: RegExp): Match[] {
  return [...text.matchAll(pattern)].map((m) => ({
    start: m.index,
    end: m.index + m[0].length,
    identity: m[0].toLowerCase().replace(/\s+/gu, ' '),
  }));
}

function letterCount(value: string): number {
  return value.match(/\p{L}/gu)?.length ?? 0;
}

function escapeRegExp(value: string): string {
  return value.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
