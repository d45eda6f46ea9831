/**
 * "1 row", "2 rows", "0 rows": a count with its noun, in the plural unless the count is one.
 * Every count the CLI prints goes through it, so no line says "1 rows".
 */
export function counted(count: number, singular: string, plural = `${singular}s`): string {
  return `${count} ${count === 1 ? singular : plural}`;
}
