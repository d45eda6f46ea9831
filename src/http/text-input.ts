import type { FastifyInstance } from 'fastify';
import { HttpProblem } from './problem.js';

/**
 * PostgreSQL text cannot hold U+0000: a NUL byte in any string that reaches a query fails it with
 * SQLSTATE 22021, which was a 500 (and a log line with the query's parameters). JSON and query
 * strings carry NUL happily and JSON Schema has no word against it, so every string of every part
 * a route declares a schema for (body, querystring, params) is checked here, after the schema
 * (its 400 names the rule that failed first) and before the handler. Parts without a schema are
 * the webhooks' raw bodies: those are verified against the provider's signature first.
 */
export function installTextInputGuard(app: FastifyInstance): void {
  app.addHook('preHandler', async (request) => {
    const schema = request.routeOptions.schema;
    if (!schema) return;
    const parts: Array<[where: string, declared: unknown, value: unknown]> = [
      ['body', schema.body, request.body],
      ['querystring', schema.querystring, request.query],
      ['params', schema.params, request.params],
    ];
    for (const [where, declared, value] of parts) {
      if (declared === undefined) continue;
      const field = fieldWithNul(value);
      if (field !== undefined) throw nulRefused(where, field);
    }
  });
}

const NUL = '\u0000';
/** Request bodies are bounded by the body limit; this bounds the walk of a pathological nesting. */
const MAX_DEPTH = 32;

/** The dotted path of the first string (or object key) holding a NUL, `(root)` for the value itself. */
function fieldWithNul(value: unknown, path: string[] = [], depth = 0): string | undefined {
  if (typeof value === 'string') return value.includes(NUL) ? path.join('.') || '(root)' : undefined;
  if (value === null || typeof value !== 'object' || depth > MAX_DEPTH) return undefined;
  for (const [key, inner] of Object.entries(value)) {
    const at = [...path, key];
    if (key.includes(NUL)) return at.join('.').replaceAll(NUL, '\\u0000');
    const found = fieldWithNul(inner, at, depth + 1);
    if (found !== undefined) return found;
  }
  return undefined;
}

function nulRefused(where: string, field: string): HttpProblem {
  const message = 'must not contain a NUL character (U+0000)';
  return new HttpProblem(400, 'validation-failed', 'Invalid request', `${where} ${field}: ${message}`, { errors: [{ in: where, field, message }] });
}
