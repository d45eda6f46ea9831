import type { Ajv, Format } from 'ajv';
import { isStorableInstant } from '../../domain/instant.js';

/**
 * Request schemas' `date-time` is RFC 3339 (ajv-formats) and also an instant every layer can hold:
 * JavaScript's Date parses it (it refuses the leap second `23:59:60` RFC 3339 allows) and the UTC
 * year is 0001–9999. Outside that, a Date's ISO text gets a six-digit or signed year that
 * PostgreSQL refuses, and an invalid Date serialises as "NaN-NaN-…": both were 500s. A value
 * outside the range is refused by the schema, so its 400 names the field like any other.
 */
export function installStrictFormats(ajv: Ajv): void {
  const rfc3339 = formatTest(ajv.formats['date-time']);
  ajv.addFormat('date-time', { type: 'string', validate: (text: string) => rfc3339(text) && isStorableInstant(new Date(text)) });
}

/** The check of the format ajv-formats registered, whichever of ajv's shapes it has. */
function formatTest(format: Format | undefined): (text: string) => boolean {
  if (format === undefined || format === true) throw new Error('the date-time format must be registered (ajv-formats) before it is made strict');
  if (typeof format === 'string') return (text) => new RegExp(format).test(text);
  if (format instanceof RegExp) return (text) => format.test(text);
  if (typeof format === 'function') return (text) => format(text) === true;
  const { validate } = format;
  if (validate instanceof RegExp) return (text) => validate.test(text);
  if (typeof validate === 'string') return (text) => new RegExp(validate).test(text);
  return (text) => (validate as (value: string) => boolean)(text) === true;
}
