/**
 * A Date that JavaScript, our ISO text and PostgreSQL's timestamptz all read the same way: a
 * valid Date whose UTC year is 0001–9999. Outside that, a Date's ISO text gets a six-digit or
 * signed year that PostgreSQL refuses, and an invalid Date serialises as "NaN-NaN-…".
 */
export function isStorableInstant(instant: Date): boolean {
  if (Number.isNaN(instant.getTime())) return false;
  const year = instant.getUTCFullYear();
  return year >= 1 && year <= 9999;
}
