import type { FastifyInstance } from 'fastify';
import { visit } from 'jsonc-parser';
import { HttpProblem } from './problem.js';

/**
 * The JSON body parser: Fastify's own (secure-json-parse, which refuses `__proto__` and
 * `constructor.prototype` keys), then a refusal of any object that names one key twice.
 *
 * `JSON.parse` keeps the last of two equal keys, other parsers the first, some both; a body
 * `{"role":"user","role":"admin"}` can mean one thing to a proxy, a log or a signature check
 * and another to us (RFC 8259 §4 leaves it undefined; I-JSON, RFC 7493 §2.3, forbids it).
 * Keys are compared after unescaping, so `"a"` and `"\u0061"` are the same key.
 */
export function installJsonBodyParser(app: FastifyInstance): void {
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = body as string; // parseAs: 'string'
    parseJson(request, text, (error, value) => {
      if (error) return done(error);
      const duplicate = firstDuplicateKey(text);
      if (duplicate) return done(duplicateKeyProblem(duplicate));
      done(null, value);
    });
  });
}

export interface DuplicateKey {
  key: string;
  /** Where the object that names `key` twice sits: property names and array indexes from the top. */
  path: Array<string | number>;
}

/** The first key named twice within one object of an already-valid JSON text, or undefined. */
export function firstDuplicateKey(text: string): DuplicateKey | undefined {
  const open: Array<Set<string>> = [];
  let found: DuplicateKey | undefined;
  visit(text, {
    // Once one is found the rest need not be read: returning false skips an object's insides.
    onObjectBegin: () => {
      open.push(new Set());
      return found === undefined;
    },
    onObjectEnd: () => {
      open.pop();
    },
    onObjectProperty: (key, _offset, _length, _line, _column, pathSupplier) => {
      const keys = open.at(-1);
      if (found !== undefined || keys === undefined) return;
      if (keys.has(key)) found = { key, path: pathSupplier() };
      else keys.add(key);
    },
  });
  return found;
}

/** Long enough for any real key; a longer one is cut so the answer cannot be made to echo a megabyte. */
const MAX_KEY_SHOWN = 64;

/** Named like a validation error (`in`, `field`, `message`), so a client reads both the same way. */
function duplicateKeyProblem({ key, path }: DuplicateKey): HttpProblem {
  const shown = key.length > MAX_KEY_SHOWN ? `${key.slice(0, MAX_KEY_SHOWN)}…` : key;
  const field = [...path, shown].join('.');
  return new HttpProblem(400, 'malformed-body', 'Malformed body', `body ${field}: the key ${JSON.stringify(shown)} appears twice in one object`, {
    errors: [{ in: 'body', field, message: 'duplicate key' }],
  });
}
