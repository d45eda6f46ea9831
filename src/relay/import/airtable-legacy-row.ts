import type { CountryCode } from 'libphonenumber-js';
import type { AirtableRecord } from '../../providers/airtable/records-client.js';
import { NormaliseError } from '../../domain/normalise.js';
import { normaliseE164 } from '../../domain/normalise.js';
import type { MessageAuthor } from '../../domain/conversation.js';
import { AIRTABLE_FIELDS } from '../airtable-layout.js';

/**
 * One row of a tenant's Airtable table as it was before Ciphergate: one message per row, in plain
 * text, for `ciphergate import airtable` (docs/import.md shows operators the layout):
 *
 *   Phone       the contact's number (text or phone field; a number without + is read as
 *               the default country's, US unless --default-country says otherwise)     required
 *   Name        the contact's name                                                      optional
 *   Body        the message; a table that calls it "Message" works too (not both)       required
 *   Direction   "inbound" (from the contact) or "outbound" (to them), any case;
 *               empty means inbound                                                     optional
 *   Author      "contact", "ai" or "staff"; must agree with Direction                   optional
 *   Created     when the message was written: an ISO-8601 date and time with a zone
 *               (an Airtable date-time field), or a date alone (a date field, read as
 *               midnight UTC); empty means the row's own createdTime                    optional
 *   Ciphergate ID   set by the import (and by the relay's own sync): a row that has it
 *               is never imported again
 *
 * Readings never carry a value in their reasons: they reach the terminal and the logs.
 */

/** The columns the import reads; "Phone", "Name", "Body", "Direction", "Author", "Created" and "Ciphergate ID" are the relay's own (AIRTABLE_FIELDS). */
export const LEGACY_COLUMNS = {
  phone: AIRTABLE_FIELDS.phone,
  name: AIRTABLE_FIELDS.name,
  body: AIRTABLE_FIELDS.body,
  message: 'Message',
  direction: AIRTABLE_FIELDS.direction,
  author: AIRTABLE_FIELDS.author,
  created: AIRTABLE_FIELDS.created,
  ciphergateId: AIRTABLE_FIELDS.id,
} as const;

export interface LegacyRow {
  recordId: string;
  /** E.164. */
  phone: string;
  name: string | null;
  body: string;
  /** The column the body was in, to rewrite that one. */
  bodyColumn: typeof LEGACY_COLUMNS.body | typeof LEGACY_COLUMNS.message;
  direction: 'inbound' | 'outbound';
  author: MessageAuthor | undefined;
  createdAt: Date;
}

export type LegacyRowReading =
  | { kind: 'row'; row: LegacyRow }
  /** Has a Ciphergate ID: imported before, or written by the relay. */
  | { kind: 'imported' }
  /** Neither a phone number nor a message: a blank row. */
  | { kind: 'empty' }
  | { kind: 'unreadable'; column: string; reason: string };

/** A record as listed; `createdTime` is Airtable's (https://airtable.com/developers/web/api/list-records), when the client passes it on. */
export type ListedRecord = AirtableRecord & { createdTime?: string };

export function readLegacyRow(record: ListedRecord, options: { defaultCountry?: CountryCode } = {}): LegacyRowReading {
  const fields = record.fields;
  if (isFilled(fields[LEGACY_COLUMNS.ciphergateId])) return { kind: 'imported' };
  const hasBody = isFilled(fields[LEGACY_COLUMNS.body]);
  const hasMessage = isFilled(fields[LEGACY_COLUMNS.message]);
  if (!isFilled(fields[LEGACY_COLUMNS.phone]) && !hasBody && !hasMessage) return { kind: 'empty' };
  const unreadable = (column: string, reason: string): LegacyRowReading => ({ kind: 'unreadable', column, reason });

  const phone = readPhone(fields[LEGACY_COLUMNS.phone], options.defaultCountry ?? 'US');
  if (typeof phone !== 'string') return unreadable(LEGACY_COLUMNS.phone, phone.reason);

  const nameValue = fields[LEGACY_COLUMNS.name];
  if (isFilled(nameValue) && typeof nameValue !== 'string') return unreadable(LEGACY_COLUMNS.name, 'must be text');
  const name = typeof nameValue === 'string' && nameValue.trim() !== '' ? nameValue.trim() : null;

  if (hasBody && hasMessage) return unreadable(LEGACY_COLUMNS.body, `and ${LEGACY_COLUMNS.message} both hold text; keep one`);
  if (!hasBody && !hasMessage) return unreadable(LEGACY_COLUMNS.body, `is empty (also looked for ${LEGACY_COLUMNS.message})`);
  const bodyColumn = hasBody ? LEGACY_COLUMNS.body : LEGACY_COLUMNS.message;
  const body = fields[bodyColumn];
  if (typeof body !== 'string') return unreadable(bodyColumn, 'must be text');

  const directionValue = fields[LEGACY_COLUMNS.direction];
  let direction: LegacyRow['direction'] = 'inbound';
  if (isFilled(directionValue)) {
    const word = typeof directionValue === 'string' ? directionValue.trim().toLowerCase() : undefined;
    if (word !== 'inbound' && word !== 'outbound') return unreadable(LEGACY_COLUMNS.direction, 'must be "inbound" or "outbound"');
    direction = word;
  }

  const authorValue = fields[LEGACY_COLUMNS.author];
  let author: MessageAuthor | undefined;
  if (isFilled(authorValue)) {
    const word = typeof authorValue === 'string' ? authorValue.trim().toLowerCase() : undefined;
    if (word !== 'contact' && word !== 'ai' && word !== 'staff') return unreadable(LEGACY_COLUMNS.author, 'must be "contact", "ai" or "staff"');
    if ((word === 'contact') !== (direction === 'inbound')) return unreadable(LEGACY_COLUMNS.author, `contradicts ${LEGACY_COLUMNS.direction}`);
    author = word;
  }

  const createdValue = fields[LEGACY_COLUMNS.created];
  let createdAt: Date;
  if (isFilled(createdValue)) {
    const date = readDate(createdValue);
    if (!(date instanceof Date)) return unreadable(LEGACY_COLUMNS.created, date.reason);
    createdAt = date;
  } else {
    const date = record.createdTime === undefined ? undefined : readDate(record.createdTime);
    if (!(date instanceof Date)) return unreadable(LEGACY_COLUMNS.created, 'is empty and Airtable gave no createdTime for the row');
    createdAt = date;
  }

  return { kind: 'row', row: { recordId: record.id, phone, name, body, bodyColumn, direction, author, createdAt } };
}

// ---------------------------------------------------------------------------------------

/** Airtable leaves empty cells out of a record; an empty string or list counts as empty too. */
function isFilled(value: unknown): boolean {
  return value !== undefined && value !== null && value !== '' && !(Array.isArray(value) && value.length === 0);
}

// Only characters people use to write a number (as in mongo-export.ts): a sentence or an
// extension means the cell is not just a phone number.
const PHONE_CHARACTERS = /^[+\d\s().\-\u00a0]+$/u;

function readPhone(value: unknown, defaultCountry: CountryCode): string | { reason: string } {
  if (!isFilled(value)) return { reason: 'is empty' };
  // A number field holds digits without the +; read them as text.
  const text = typeof value === 'number' && Number.isSafeInteger(value) && value > 0 ? String(value) : value;
  if (typeof text !== 'string') return { reason: 'must be text' };
  if (!PHONE_CHARACTERS.test(text)) return { reason: 'is not a phone number' };
  try {
    return normaliseE164(text, defaultCountry);
  } catch (error) {
    if (error instanceof NormaliseError) return { reason: 'is not a valid phone number' };
    throw error;
  }
}

// What Airtable's date-time fields give (`2024-01-01T09:30:00.000Z`) and ISO-8601 typed as text;
// a date field gives `2024-01-01`.
const DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})$/;
const DATE_ONLY = /^\d{4}-\d{2}-\d{2}$/;

function readDate(value: unknown): Date | { reason: string } {
  if (typeof value !== 'string') return { reason: 'must be a date' };
  let date: Date;
  if (DATE_TIME.test(value)) date = new Date(value.replace(/(\.\d{3})\d+/, '$1'));
  else if (DATE_ONLY.test(value)) date = new Date(`${value}T00:00:00Z`);
  else return { reason: 'must be an ISO-8601 date and time with a zone, or a date' };
  // JavaScript rolls 2024-02-31 over to March 2 rather than refusing it.
  const [year, month, day] = value.slice(0, 10).split('-').map(Number) as [number, number, number];
  const calendar = new Date(Date.UTC(year, month - 1, day));
  if (Number.isNaN(date.getTime()) || calendar.getUTCMonth() !== month - 1 || calendar.getUTCDate() !== day) return { reason: 'is not a real date' };
  return date;
}
