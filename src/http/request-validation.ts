import { AjvCompiler, type ValidatorFactory } from '@fastify/ajv-compiler';
import type { Options as AjvOptions } from 'ajv';

/**
 * How request schemas are compiled: Fastify's own Ajv compiler, twice, with one difference.
 *
 * Fastify's default (`coerceTypes: 'array'`) turns a JSON body's `123`, `true` or `["x"]` into
 * the string `"123"`, `"true"` or `"x"` a schema asked for. A client that sends the wrong type
 * has made a mistake, or is probing how two parsers read one value; either way it should hear
 * 400, so JSON bodies are checked as sent, without coercion.
 *
 * The URL (path parameters, query string) and headers carry nothing but text, so there a
 * declared integer or boolean has to be read from its text (`?limit=50` is 50). That part keeps
 * scalar coercion, but not Ajv's `'array'` mode: a repeated parameter (`?tenant=a&tenant=b`)
 * arrives as an array and is refused instead of being folded into one value.
 */
export function requestValidatorFactory(): ValidatorFactory {
  const fromPool = AjvCompiler();
  return (externalSchemas, options) => {
    // JSON Schema only: the app never selects Ajv's JTD mode.
    const { customOptions = {}, ...rest } = (options ?? {}) as { customOptions?: AjvOptions; mode?: never };
    const asSent = fromPool(externalSchemas, { ...rest, customOptions: { ...customOptions, coerceTypes: false } });
    const fromText = fromPool(externalSchemas, { ...rest, customOptions: { ...customOptions, coerceTypes: true } });
    return (route) => (route.httpPart === 'body' ? asSent(route) : fromText(route));
  };
}
