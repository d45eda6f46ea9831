/**
 * Reads conversations exported from MongoDB with `mongoexport` (one document per line,
 * MongoDB Extended JSON v2 in relaxed or canonical mode) for `ciphergate import jsonl`.
 * https://www.mongodb.com/docs/manual/reference/mongodb-extended-json/
 *
 * The document shape we accept (members not listed here are ignored):
 *
 *   {
 *     "_id": {"$oid": "65a1…"} | "any-string-id",
 *     "phone": "+14155552671",            also "phoneNumber" or "from"; must be a valid number,
 *                                         stored in E.164 (national numbers read as defaultCountry)
 *     "name": "Maria Lopez",              optional
 *     "messages": [
 *       {
 *         "_id": {"$oid": "…"},           optional; without it the id is "<conversation _id>:<index>"
 *                                         so importing the same file twice adds nothing
 *         "direction": "inbound" | "outbound",
 *           or "role": "user" (→ inbound, contact) | "assistant" (→ outbound, ai)
 *                    | "system" (a prompt, not a message: skipped)
 *         "body": "…",                    also "text" or "content"
 *         "createdAt": {"$date": …},      also "timestamp" or "date"
 *         "author": "contact" | "ai" | "staff"   optional; must agree with the direction
 *       }
 *     ]
 *   }
 *
 * Dates: {"$date": "2024-01-01T00:00:00Z"} (relaxed), {"$date": {"$numberLong": "1700000000000"}}
 * (canonical), {"$date": 1700000000000} (legacy), an ISO-8601 string, or milliseconds since
 * the epoch as a number / $numberLong / $numberInt / $numberDouble.
 *
 * Errors are ImportLineError naming the line and the member (`messages[3].createdAt`), never
 * the value: a line holds message bodies and phone numbers, and errors reach the terminal and
 * the logs.
 */

import { NormaliseError } from '../../domain/normalise.js';
import { normaliseE164 } from '../../domain/normalise.js';
import type { CountryCode } from 'libphonenumber-js';

export interface ImportedMessage {
  externalId: string;
  direction: 'inbound' | 'outbound';
  body: string;
  createdAt: Date;
  author?: 'contact' | 'ai' | 'staff';
}

export interface ImportedConversation {
  externalId: string;
  /** E.164. */
  phone: string;
  name?: string;
  messages: ImportedMessage[];
}

export interface MongoImportOptions {
  /** Country for phone numbers stored without a `+` prefix; 'US' as in src/domain/normalise.ts. */
  defaultCountry?: CountryCode;
}

/** Lines longer than this (in UTF-8 bytes, without the line break) are refused. */
export const MAX_LINE_BYTES = 1024 * 1024;

/** One line of the export could not be imported. `member` is a path such as `messages[2].body`. */
export class ImportLineError extends Error {
  override readonly name = 'ImportLineError';
  constructor(
    readonly lineNumber: number,
    readonly member: string,
    readonly reason: string,
  ) {
    super(`line ${lineNumber}: ${member}: ${reason}`);
  }
}

/** Parses one exported document. `lineNumber` (1-based) is only used in errors. */
export function parseMongoExportLine(line: string, lineNumber: number, options: MongoImportOptions = {}): ImportedConversation {
  const fail = (member: string, reason: string): never => {
    throw new ImportLineError(lineNumber, member, reason);
  };
  if (Buffer.byteLength(line, 'utf8') > MAX_LINE_BYTES) fail(DOCUMENT, `line longer than ${MAX_LINE_BYTES} bytes`);
  const text = line.endsWith('\r') ? line.slice(0, -1) : line;
  if (text.trim() === '') fail(DOCUMENT, 'blank line');

  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    // V8's message can quote the input ('Unexpected token … "…" is not valid JSON'), so only
    // a position at the very end of the message is kept ("… at position 29", Node 22 adds
    // "(line 1 column 30)"), and the error is not chained as a cause.
    const position = error instanceof Error ? / at position (\d+)(?: \(line \d+ column \d+\))?$/.exec(error.message)?.[1] : undefined;
    fail(DOCUMENT, position === undefined ? 'not valid JSON' : `not valid JSON (at character ${position})`);
  }
  return readConversation(parsed, fail, options.defaultCountry ?? 'US');
}

/**
 * Splits `input` (e.g. process.stdin) into lines and parses each non-blank one. Throws the
 * first ImportLineError it meets and stops there: the import is idempotent, so the
 * operator fixes the line and runs it again. A line is refused as soon as it grows past
 * MAX_LINE_BYTES, without buffering the rest of it.
 */
export async function* readMongoExport(
  input: AsyncIterable<string | Buffer>,
  options: MongoImportOptions = {},
): AsyncIterable<{ lineNumber: number; conversation: ImportedConversation }> {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let lineNumber = 0;

  const takeLine = (): string => {
    lineNumber += 1;
    const bytes = Buffer.concat(pending, pendingBytes);
    pending = [];
    pendingBytes = 0;
    const withoutCr = bytes.length > 0 && bytes[bytes.length - 1] === CR ? bytes.subarray(0, -1) : bytes;
    if (withoutCr.length > MAX_LINE_BYTES) {
      throw new ImportLineError(lineNumber, DOCUMENT, `line longer than ${MAX_LINE_BYTES} bytes`);
    }
    try {
      return decoder.decode(withoutCr);
    } catch {
      throw new ImportLineError(lineNumber, DOCUMENT, 'not valid UTF-8');
    }
  };

  for await (const chunk of input) {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
    let start = 0;
    for (;;) {
      const newline = bytes.indexOf(LF, start);
      const end = newline === -1 ? bytes.length : newline;
      if (end > start) {
        pending.push(bytes.subarray(start, end));
        pendingBytes += end - start;
      }
      // +1: the byte may be the CR of a CRLF whose LF is in the next chunk.
      if (pendingBytes > MAX_LINE_BYTES + 1) {
        throw new ImportLineError(lineNumber + 1, DOCUMENT, `line longer than ${MAX_LINE_BYTES} bytes`);
      }
      if (newline === -1) break;
      const line = takeLine();
      if (line.trim() !== '') yield { lineNumber, conversation: parseMongoExportLine(line, lineNumber, options) };
      start = newline + 1;
    }
  }
  if (pendingBytes > 0) {
    const line = takeLine();
    if (line.trim() !== '') yield { lineNumber, conversation: parseMongoExportLine(line, lineNumber, options) };
  }
}

// ---------------------------------------------------------------------------------------

const DOCUMENT = '(document)';
const LF = 0x0a;
const CR = 0x0d;

type Fail = (member: string, reason: string) => never;
type JsonObject = Record<string, unknown>;

const PHONE_MEMBERS = ['phone', 'phoneNumber', 'from'] as const;
const BODY_MEMBERS = ['body', 'text', 'content'] as const;
const DATE_MEMBERS = ['createdAt', 'timestamp', 'date'] as const;
const AUTHORS = ['contact', 'ai', 'staff'] as const;
// Only characters people use to write a number: anything else (letters, "x123"
// extensions, a sentence) means the member is not just a phone number.
const PHONE_CHARACTERS = /^[+\d\s().\-\u00a0]+$/u;
const MAX_ID_LENGTH = 200;

function readConversation(value: unknown, fail: Fail, defaultCountry: CountryCode): ImportedConversation {
  if (!isObject(value)) return fail(DOCUMENT, 'must be a JSON object');
  const externalId = readId(value, '_id', fail) ?? fail('_id', 'is missing');

  const [phoneMember, phoneValue] = firstPresent(value, PHONE_MEMBERS) ?? fail('phone', 'is missing (also looked for phoneNumber, from)');
  if (typeof phoneValue !== 'string') fail(phoneMember, 'must be a string');
  const phone = readPhone(phoneValue, phoneMember, fail, defaultCountry);

  const conversation: ImportedConversation = { externalId, phone, messages: [] };
  const name = member(value, 'name');
  if (name !== undefined && name !== null) {
    if (typeof name !== 'string') fail('name', 'must be a string');
    const trimmed = name.trim();
    if (trimmed !== '') conversation.name = trimmed;
  }

  const messages = member(value, 'messages');
  if (messages === undefined) fail('messages', 'is missing');
  if (!Array.isArray(messages)) fail('messages', 'must be an array');
  const seenIds = new Map<string, number>();
  messages.forEach((raw, index) => {
    const message = readMessage(raw, index, externalId, fail);
    if (message === undefined) return;
    const earlier = seenIds.get(message.externalId);
    if (earlier !== undefined) fail(`messages[${index}]._id`, `repeats the id of messages[${earlier}]`);
    seenIds.set(message.externalId, index);
    conversation.messages.push(message);
  });
  return conversation;
}

function readPhone(value: string, path: string, fail: Fail, defaultCountry: CountryCode): string {
  if (!PHONE_CHARACTERS.test(value)) fail(path, 'is not a phone number');
  try {
    return normaliseE164(value, defaultCountry);
  } catch (error) {
    if (error instanceof NormaliseError) return fail(path, 'is not a valid phone number');
    throw error;
  }
}

function readMessage(value: unknown, index: number, conversationId: string, fail: Fail): ImportedMessage | undefined {
  const path = `messages[${index}]`;
  if (!isObject(value)) return fail(path, 'must be a JSON object');

  const directionValue = member(value, 'direction');
  const roleValue = member(value, 'role');
  let direction: ImportedMessage['direction'] | undefined;
  let roleAuthor: ImportedMessage['author'] | undefined;
  if (directionValue !== undefined) {
    if (directionValue !== 'inbound' && directionValue !== 'outbound') fail(`${path}.direction`, 'must be "inbound" or "outbound"');
    direction = directionValue;
  }
  if (roleValue !== undefined) {
    if (roleValue === 'system') return undefined;
    if (roleValue !== 'user' && roleValue !== 'assistant') fail(`${path}.role`, 'must be "user", "assistant" or "system"');
    const roleDirection = roleValue === 'user' ? 'inbound' : 'outbound';
    if (direction !== undefined && direction !== roleDirection) fail(`${path}.role`, 'contradicts direction');
    direction = roleDirection;
    roleAuthor = roleValue === 'user' ? 'contact' : 'ai';
  }
  if (direction === undefined) return fail(`${path}.direction`, 'is missing (or give role)');

  const [bodyMember, bodyValue] = firstPresent(value, BODY_MEMBERS) ?? fail(`${path}.body`, 'is missing (also looked for text, content)');
  if (typeof bodyValue !== 'string') fail(`${path}.${bodyMember}`, 'must be a string');

  const [dateMember, dateValue] = firstPresent(value, DATE_MEMBERS) ?? fail(`${path}.createdAt`, 'is missing (also looked for timestamp, date)');
  const createdAt = readDate(dateValue, `${path}.${dateMember}`, fail);

  let author = roleAuthor;
  const authorValue = member(value, 'author');
  if (authorValue !== undefined && authorValue !== null) {
    if (!isAuthor(authorValue)) return fail(`${path}.author`, 'must be "contact", "ai" or "staff"');
    author = authorValue;
    if ((author === 'contact') !== (direction === 'inbound')) fail(`${path}.author`, 'contradicts direction');
  }

  const externalId = readId(value, `_id`, fail, path) ?? `${conversationId}:${index}`;
  const message: ImportedMessage = { externalId, direction, body: bodyValue, createdAt };
  if (author !== undefined) message.author = author;
  return message;
}

/** `_id` as `{"$oid": "<24 hex>"}`, a non-empty string, or an integer; undefined when absent. */
function readId(object: JsonObject, name: string, fail: Fail, parent?: string): string | undefined {
  const path = parent === undefined ? name : `${parent}.${name}`;
  const value = member(object, name);
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') {
    if (value.length === 0 || value.length > MAX_ID_LENGTH) fail(path, `must be 1 to ${MAX_ID_LENGTH} characters`);
    return value;
  }
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) fail(path, 'must be an integer when a number');
    return String(value);
  }
  const oid = wrapper(value, '$oid', path, fail);
  if (oid !== undefined) {
    if (typeof oid !== 'string' || !/^[0-9a-fA-F]{24}$/.test(oid)) fail(`${path}.$oid`, 'must be 24 hexadecimal digits');
    return oid.toLowerCase();
  }
  const number = readNumber(value, path, fail);
  if (number !== undefined) {
    if (!Number.isSafeInteger(number)) fail(path, 'must be an integer when a number');
    return String(number);
  }
  return fail(path, 'must be {"$oid": …}, a string or an integer');
}

/** A date in any of the forms listed at the top of this file. */
function readDate(value: unknown, path: string, fail: Fail): Date {
  const inner = wrapper(value, '$date', path, fail);
  if (inner !== undefined) {
    if (typeof inner === 'string') return isoDate(inner, `${path}.$date`, fail);
    const ms = typeof inner === 'number' ? inner : readNumber(inner, `${path}.$date`, fail);
    if (ms === undefined) return fail(`${path}.$date`, 'must be an ISO-8601 string or {"$numberLong": …}');
    return epochDate(ms, `${path}.$date`, fail);
  }
  if (typeof value === 'string') return isoDate(value, path, fail);
  if (typeof value === 'number') return epochDate(value, path, fail);
  const ms = readNumber(value, path, fail);
  if (ms === undefined) return fail(path, 'must be a date ({"$date": …}, an ISO-8601 string or milliseconds)');
  return epochDate(ms, path, fail);
}

// What mongoexport and JSON serialisers write: a full date and time with a zone. Date.parse
// alone also takes "March 7" or "2024-01-01" (read as local or UTC depending on the form).
const ISO_8601 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})$/;

function isoDate(value: string, path: string, fail: Fail): Date {
  if (!ISO_8601.test(value)) fail(path, 'must be an ISO-8601 date and time with a zone');
  // JavaScript dates keep milliseconds; finer digits are dropped rather than refused.
  const date = new Date(value.replace(/(\.\d{3})\d+/, '$1'));
  if (Number.isNaN(date.getTime())) fail(path, 'is not a real date');
  return date;
}

function epochDate(ms: number, path: string, fail: Fail): Date {
  if (!Number.isFinite(ms)) fail(path, 'must be a finite number of milliseconds');
  const date = new Date(Math.trunc(ms));
  if (Number.isNaN(date.getTime())) fail(path, 'is out of range');
  return date;
}

/** `{"$numberLong": "…"}`, `{"$numberInt": "…"}` or `{"$numberDouble": "…"}`; undefined when none. */
function readNumber(value: unknown, path: string, fail: Fail): number | undefined {
  const long = wrapper(value, '$numberLong', path, fail);
  if (long !== undefined) {
    if (typeof long !== 'string' || !/^-?\d{1,19}$/.test(long)) fail(`${path}.$numberLong`, 'must be a string of digits');
    const big = BigInt(long);
    if (big > BigInt(Number.MAX_SAFE_INTEGER) || big < BigInt(Number.MIN_SAFE_INTEGER)) fail(`${path}.$numberLong`, 'is out of range');
    return Number(big);
  }
  const int = wrapper(value, '$numberInt', path, fail);
  if (int !== undefined) {
    if (typeof int !== 'string' || !/^-?\d{1,10}$/.test(int)) fail(`${path}.$numberInt`, 'must be a string of digits');
    const parsed = Number(int);
    if (parsed > 2 ** 31 - 1 || parsed < -(2 ** 31)) fail(`${path}.$numberInt`, 'is out of range');
    return parsed;
  }
  const double = wrapper(value, '$numberDouble', path, fail);
  if (double !== undefined) {
    if (typeof double !== 'string') fail(`${path}.$numberDouble`, 'must be a string');
    const text = double;
    if (text === 'Infinity') return Infinity;
    if (text === '-Infinity') return -Infinity;
    if (text === 'NaN') return NaN;
    if (!/^-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/.test(text)) fail(`${path}.$numberDouble`, 'is not a number');
    return Number(text);
  }
  return undefined;
}

/**
 * The content of an Extended JSON wrapper such as `{"$oid": …}`; undefined when `value` is
 * not that wrapper. A wrapper with other members beside its key is refused, as the spec
 * defines each wrapper as exactly one member.
 */
function wrapper(value: unknown, key: string, path: string, fail: Fail): unknown {
  if (!isObject(value) || !Object.hasOwn(value, key)) return undefined;
  if (Object.keys(value).length !== 1) fail(path, `${key} must be the only member of its object`);
  return value[key];
}

function firstPresent<T extends string>(object: JsonObject, names: readonly T[]): [T, unknown] | undefined {
  for (const name of names) {
    const value = member(object, name);
    if (value !== undefined && value !== null) return [name, value];
  }
  return undefined;
}

/** An own member only: "__proto__" or "constructor" in the input never reach a prototype. */
function member(object: JsonObject, name: string): unknown {
  return Object.hasOwn(object, name) ? object[name] : undefined;
}

function isAuthor(value: unknown): value is NonNullable<ImportedMessage['author']> {
  return (AUTHORS as readonly unknown[]).includes(value);
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
