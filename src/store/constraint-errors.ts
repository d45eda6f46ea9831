/**
 * The unique constraint a failed statement violated (SQLSTATE 23505, unique_violation), by the
 * name the server reports in the error's `constraint` field; undefined for any other error.
 * node-postgres and PGlite both surface the server's fields, and Drizzle wraps the driver's
 * error in `cause`, so the chain is followed. Never read from the message: its wording is the
 * server's and may change or be localised.
 */
export function violatedUniqueConstraint(error: unknown): string | undefined {
  for (let current = error, depth = 0; current !== undefined && current !== null && depth < 5; depth++) {
    const { code, constraint } = current as { code?: unknown; constraint?: unknown };
    if (code === UNIQUE_VIOLATION && typeof constraint === 'string') return constraint;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

const UNIQUE_VIOLATION = '23505';
