import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino';

export type { Logger } from 'pino';

/**
 * Field names whose values never reach a log line, at any depth. Matched case-insensitively
 * against the end of the key with separators removed, so `api_key`, `apiKey` and `API-KEY` are
 * all caught, and so are compounds such as `refreshToken`, `recoveryCode` or `webhookSecret`,
 * while ids of such things (`tokenId`, `apiKeyId`) stay visible for correlation.
 */
const SENSITIVE_KEY = /(password|passwd|passphrase|token|secret|apikey|authorization|cookie|signature|contentmac|pin|masterkey|privatekey|credentials?|otp|code)$/;
/** Codes that are protocol facts, not secrets. */
const NOT_SENSITIVE = new Set(['statuscode', 'errorcode', 'countrycode', 'reasoncode']);

/** Headers named exactly; redacted by pino's own fast path before our deep walk. */
const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-twilio-signature"]',
  'req.headers["podium-signature"]',
  'req.headers["x-airtable-content-mac"]',
  'req.headers["x-csrf-token"]',
  'res.headers["set-cookie"]',
];

export const REDACTED = '[redacted]';

export function createLogger(options: { level: string; destination?: DestinationStream; base?: Record<string, unknown> }): Logger {
  const loggerOptions: LoggerOptions = {
    level: options.level,
    base: options.base ?? { service: 'ciphergate' },
    redact: { paths: REDACTED_PATHS, censor: REDACTED },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { log: (object) => redactDeep(object) as Record<string, unknown> },
    serializers: {
      err: serializeError,
      req: (request: { method?: string; url?: string; id?: string; ip?: string }) => ({
        id: request.id,
        method: request.method,
        url: request.url === undefined ? undefined : redactUrl(request.url),
        remoteAddress: request.ip,
      }),
      res: (reply: { statusCode?: number }) => ({ statusCode: reply.statusCode }),
    },
  };
  return options.destination ? pino(loggerOptions, options.destination) : pino(loggerOptions);
}

/**
 * Error fields that say what failed without repeating what was sent: a PostgreSQL error's SQLSTATE,
 * constraint and table, a system call's errno. Everything else is left out, deny by default:
 * Drizzle's DrizzleQueryError and PGlite's errors carry the statement and its `params` (which
 * held a new API key's hash), and PostgreSQL's `detail` quotes the values of a failed row.
 */
const ERROR_FIELDS_LOGGED = ['code', 'errno', 'syscall', 'severity', 'constraint', 'table', 'column', 'schema', 'dataType', 'routine', 'statusCode', 'status'] as const;
/** Deep enough for Drizzle → driver → socket; a longer chain is cut rather than walked. */
const MAX_CAUSE_DEPTH = 4;

export interface SerializedError {
  type: string;
  message: string;
  stack?: string;
  cause?: SerializedError;
  errors?: SerializedError[];
  [field: string]: unknown;
}

/**
 * pino's `err` serializer. Like pino's own (type, message, stack, cause) but with the fields of
 * ERROR_FIELDS_LOGGED only, and with the message of a failed query reduced to what failed: a
 * query's text and parameters, and the values PostgreSQL quotes in its messages, never reach a log.
 */
export function serializeError(error: unknown, depth = 0): SerializedError {
  if (error === null || typeof error !== 'object') return { type: typeof error, message: String(error) };
  const source = error as Record<string, unknown> & { name?: unknown; message?: unknown; stack?: unknown; cause?: unknown; errors?: unknown };
  const type = (error.constructor?.name && error.constructor.name !== 'Object' ? error.constructor.name : undefined) ?? (typeof source.name === 'string' ? source.name : 'Error');
  const message = loggableMessage(source, type);
  const serialized: SerializedError = { type, message };
  if (typeof source.stack === 'string') serialized.stack = `${type}: ${message}\n${stackFrames(source.stack)}`;
  for (const field of ERROR_FIELDS_LOGGED) {
    const value = source[field];
    if (typeof value === 'string' || typeof value === 'number') serialized[field] = value;
  }
  if (depth < MAX_CAUSE_DEPTH) {
    if (source.cause !== undefined) serialized.cause = serializeError(source.cause, depth + 1);
    if (Array.isArray(source.errors)) serialized.errors = source.errors.slice(0, 10).map((inner) => serializeError(inner, depth + 1));
  }
  return serialized;
}

function loggableMessage(source: Record<string, unknown>, type: string): string {
  const message = typeof source.message === 'string' ? source.message : '';
  // A database server's own message quotes the value it refused (`value "…" is out of range`).
  if (typeof source.severity === 'string' && typeof source.code === 'string') return message.replace(/"(?:[^"\\]|\\.)*"/g, '"…"');
  // "Failed query: <statement>\nparams: <values>": the statement and the values stay out.
  if (type === 'DrizzleQueryError' || ('query' in source && 'params' in source)) return 'failed query (statement and parameters not logged; see cause)';
  return message;
}

/** The "    at …" lines only: the head of a stack repeats the message, which may not be loggable. */
function stackFrames(stack: string): string {
  return stack
    .split('\n')
    .filter((line) => /^\s+at /.test(line))
    .join('\n');
}

/** Replaces the value of every sensitive-named field, however deep, without mutating the input. */
export function redactDeep(value: unknown, depth = 0): unknown {
  if (depth > 8 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((item) => redactDeep(item, depth + 1));
  // Only plain objects are walked: requests, replies and errors have serializers of their own,
  // and walking them would follow sockets and cycles.
  // Dictionaries made by parsers (querystrings) sit on a null-prototype object of their own.
  const prototype = Object.getPrototypeOf(value) as object | null;
  const isDictionary = prototype === null || prototype === Object.prototype || Object.getPrototypeOf(prototype) === null;
  if (!isDictionary) return value;
  const out: Record<string, unknown> = {};
  for (const [key, inner] of Object.entries(value)) {
    out[key] = isSensitiveKey(key) ? REDACTED : redactDeep(inner, depth + 1);
  }
  return out;
}

export function isSensitiveKey(key: string): boolean {
  const normalised = key.replace(/[-_\s]/g, '').toLowerCase();
  return SENSITIVE_KEY.test(normalised) && !NOT_SENSITIVE.has(normalised);
}

/** Query strings carry tokens too (setup links, signed URLs): keep the names, drop sensitive values. */
/** Query parameters whose values are ids, slugs or paging, never personal data or secrets. */
const LOGGED_QUERY_PARAMETERS = new Set(['tenant', 'limit', 'before', 'm', 'dead', 'page', 'offset', 'action', 'outcome', 'since', 'until', 'actor', 'bodySHA256']);

export function redactUrl(url: string): string {
  const queryStart = url.indexOf('?');
  if (queryStart === -1) return url;
  const params = new URLSearchParams(url.slice(queryStart + 1));
  const kept: string[] = [];
  for (const [name, value] of params) {
    // Deny by default: a query may carry a phone number (`?phone=`), or a whole SMS when a
    // provider is set to call with GET. Only values known to be ids or paging show.
    const shown = LOGGED_QUERY_PARAMETERS.has(name) && !isSensitiveKey(name);
    kept.push(`${encodeURIComponent(name)}=${shown ? encodeURIComponent(value) : REDACTED}`);
  }
  return `${url.slice(0, queryStart)}?${kept.join('&')}`;
}
