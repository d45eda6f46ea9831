import { isIP } from 'node:net';
import { Type, type TSchema } from '@sinclair/typebox';
import { TENANT_SLUG_PATTERN } from '../domain/ids.js';

/**
 * The one declaration of every `CIPHERGATE_*` variable. Loading, validation, the error
 * messages and docs/configuration.md are all derived from this table, so a variable exists
 * in exactly one place.
 */
export interface Setting<T> {
  env: string;
  description: string;
  /** The shape of the parsed value, for generated docs and the typed Config. */
  schema: TSchema;
  /** Shown in docs; `undefined` means "unset". */
  defaultText?: string;
  /** Accept `<env>_FILE` naming a file that holds the value (trailing newline trimmed). */
  secret?: boolean;
  /** Turns the raw string into the value, or throws SettingError with what was expected. */
  parse(raw: string): T;
}

export class SettingError extends Error {
  override readonly name = 'SettingError';
  constructor(
    readonly env: string,
    readonly expected: string,
    readonly got: string | undefined,
    readonly hideValue = false,
  ) {
    const shown = got === undefined ? 'nothing' : hideValue ? 'a value that does not fit (hidden: secret)' : JSON.stringify(got);
    super(`${env}: expected ${expected}, got ${shown}`);
  }
}

function setting<T>(definition: Setting<T>): Setting<T> {
  return definition;
}

function integerIn(min: number, max: number) {
  return (env: string) => (raw: string): number => {
    const trimmed = raw.trim();
    const value = Number(trimmed);
    if (!/^-?\d+$/.test(trimmed) || !Number.isSafeInteger(value) || value < min || value > max) {
      throw new SettingError(env, `an integer ${min}-${max}`, raw);
    }
    return value;
  };
}

function oneOf<const V extends string>(values: readonly V[]) {
  return (env: string) => (raw: string): V => {
    const trimmed = raw.trim() as V;
    if (!values.includes(trimmed)) throw new SettingError(env, `one of ${values.join(', ')}`, raw);
    return trimmed;
  };
}

function urlWith(protocols: readonly string[], options: { secret?: boolean; stripTrailingSlash?: boolean } = {}) {
  return (env: string) => (raw: string): string => {
    const expected = `a URL starting with ${protocols.map((p) => `${p}//`).join(' or ')}`;
    let parsed: URL;
    try {
      parsed = new URL(raw.trim());
    } catch {
      throw new SettingError(env, expected, raw, options.secret);
    }
    if (!protocols.includes(parsed.protocol)) throw new SettingError(env, expected, raw, options.secret);
    const text = raw.trim();
    return options.stripTrailingSlash ? text.replace(/\/+$/, '') : text;
  };
}

/** `10.0.0.0/8, 192.168.1.1, ::1/128` → validated CIDR strings, as @fastify/proxy-addr accepts. */
function cidrList(env: string) {
  return (raw: string): string[] => {
    const items = raw.split(',').map((item) => item.trim()).filter((item) => item.length > 0);
    for (const item of items) {
      const [address, prefix, ...rest] = item.split('/');
      const family = isIP(address ?? '');
      const maxPrefix = family === 6 ? 128 : 32;
      const prefixOk = prefix === undefined || (/^\d+$/.test(prefix) && Number(prefix) <= maxPrefix);
      if (family === 0 || !prefixOk || rest.length > 0) {
        throw new SettingError(env, 'a comma-separated list of IP addresses or CIDRs', item);
      }
    }
    return items;
  };
}

function hostPort(env: string) {
  return (raw: string): { host: string; port: number } => {
    const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(raw.trim());
    const port = match ? Number(match[3]) : NaN;
    if (!match || port < 1 || port > 65535) throw new SettingError(env, 'HOST:PORT, e.g. 127.0.0.1:9464', raw);
    return { host: (match[1] ?? match[2]) as string, port };
  };
}

function text(env: string, expected = 'a non-empty string') {
  return (raw: string): string => {
    if (raw.trim().length === 0) throw new SettingError(env, expected, raw);
    return raw.trim();
  };
}

const PINO_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export const settings = {
  host: setting({
    env: 'CIPHERGATE_HOST',
    description: 'Address to listen on.',
    schema: Type.String(),
    defaultText: '127.0.0.1',
    parse: text('CIPHERGATE_HOST', 'a host name or IP address'),
  }),
  port: setting({
    env: 'CIPHERGATE_PORT',
    description: 'Port to listen on (0 picks a free port).',
    schema: Type.Integer({ minimum: 0, maximum: 65535 }),
    defaultText: '8080',
    parse: integerIn(0, 65535)('CIPHERGATE_PORT'),
  }),
  publicUrl: setting({
    env: 'CIPHERGATE_PUBLIC_URL',
    description: 'The base URL providers call; webhook signatures are checked against it, never against the Host header.',
    schema: Type.String({ format: 'uri' }),
    defaultText: 'http://HOST:PORT',
    parse: urlWith(['http:', 'https:'], { stripTrailingSlash: true })('CIPHERGATE_PUBLIC_URL'),
  }),
  dataDir: setting({
    env: 'CIPHERGATE_DATA_DIR',
    description: 'Folder of the embedded database and the generated local key file. It must be private (0700, and master.key 0600): start-up refuses a data dir or key file that group or others have any permission on.',
    schema: Type.String(),
    defaultText: './.ciphergate',
    parse: text('CIPHERGATE_DATA_DIR', 'a folder path'),
  }),
  databaseUrl: setting({
    env: 'CIPHERGATE_DATABASE_URL',
    description: 'A PostgreSQL URL; when set, the embedded PGlite database is not used.',
    schema: Type.String(),
    secret: true,
    parse: urlWith(['postgres:', 'postgresql:'], { secret: true })('CIPHERGATE_DATABASE_URL'),
  }),
  databaseConnectTimeoutSeconds: setting({
    env: 'CIPHERGATE_DATABASE_CONNECT_TIMEOUT_SECONDS',
    description: 'How long start-up retries an unreachable PostgreSQL (with backoff) before it gives up.',
    schema: Type.Integer({ minimum: 0, maximum: 3600 }),
    defaultText: '30',
    parse: integerIn(0, 3600)('CIPHERGATE_DATABASE_CONNECT_TIMEOUT_SECONDS'),
  }),
  redisUrl: setting({
    env: 'CIPHERGATE_REDIS_URL',
    description: 'Redis for rate limits and revocations shared across instances.',
    schema: Type.String(),
    secret: true,
    parse: urlWith(['redis:', 'rediss:'], { secret: true })('CIPHERGATE_REDIS_URL'),
  }),
  redisKeyPrefix: setting({
    env: 'CIPHERGATE_REDIS_KEY_PREFIX',
    description: 'Prefix of every Redis key and channel, so several deployments can share one Redis.',
    schema: Type.String({ pattern: '^[A-Za-z0-9_:-]{1,64}$' }),
    defaultText: 'cg',
    parse: (raw: string) => {
      if (!/^[A-Za-z0-9_:-]{1,64}$/.test(raw.trim())) throw new SettingError('CIPHERGATE_REDIS_KEY_PREFIX', '1-64 letters, digits, _, : or -', raw);
      return raw.trim();
    },
  }),
  keyProvider: setting({
    env: 'CIPHERGATE_KEY_PROVIDER',
    description: 'Where the root key-encryption key lives: `local` (a key from the environment or a file) or `pkcs11` (an HSM).',
    schema: Type.Union([Type.Literal('local'), Type.Literal('pkcs11')]),
    defaultText: 'local',
    parse: oneOf(['local', 'pkcs11'] as const)('CIPHERGATE_KEY_PROVIDER'),
  }),
  masterKey: setting({
    env: 'CIPHERGATE_MASTER_KEY',
    description: 'The local KEK: base64 of 32 random bytes. Also accepted as CIPHERGATE_MASTER_KEY_FILE.',
    schema: Type.String(),
    defaultText: 'a generated file in the data dir',
    secret: true,
    parse: (raw: string) => {
      const trimmed = raw.trim();
      const decoded = Buffer.from(trimmed, 'base64');
      if (!/^[A-Za-z0-9+/]+={0,2}$/.test(trimmed) || decoded.length !== 32) {
        throw new SettingError('CIPHERGATE_MASTER_KEY', 'base64 of exactly 32 bytes', raw, true);
      }
      return trimmed;
    },
  }),
  pkcs11Module: setting({
    env: 'CIPHERGATE_PKCS11_MODULE',
    description: 'Path of the PKCS#11 module (e.g. /usr/lib/softhsm/libsofthsm2.so).',
    schema: Type.String(),
    parse: text('CIPHERGATE_PKCS11_MODULE', 'a file path'),
  }),
  pkcs11TokenLabel: setting({
    env: 'CIPHERGATE_PKCS11_TOKEN_LABEL',
    description: 'Label of the token that holds the KEK.',
    schema: Type.String(),
    parse: text('CIPHERGATE_PKCS11_TOKEN_LABEL'),
  }),
  pkcs11Pin: setting({
    env: 'CIPHERGATE_PKCS11_PIN',
    description: 'User PIN of the token. Also accepted as CIPHERGATE_PKCS11_PIN_FILE.',
    schema: Type.String(),
    secret: true,
    parse: text('CIPHERGATE_PKCS11_PIN'),
  }),
  pkcs11KeyLabel: setting({
    env: 'CIPHERGATE_PKCS11_KEY_LABEL',
    description: 'Label of the AES KEK inside the token.',
    schema: Type.String(),
    parse: text('CIPHERGATE_PKCS11_KEY_LABEL'),
  }),
  twilioApiUrl: setting({
    env: 'CIPHERGATE_TWILIO_API_URL',
    description: 'Twilio REST base URL.',
    schema: Type.String({ format: 'uri' }),
    defaultText: 'https://api.twilio.com',
    parse: urlWith(['http:', 'https:'], { stripTrailingSlash: true })('CIPHERGATE_TWILIO_API_URL'),
  }),
  smsSenderTenant: setting({
    env: 'CIPHERGATE_SMS_SENDER_TENANT',
    description:
      'Slug of the tenant whose Twilio account and `fromNumber` send sign-in codes by SMS (staff belong to no tenant, so one account sends for everyone). Unset: SMS is not offered as a second factor.',
    schema: Type.String({ pattern: TENANT_SLUG_PATTERN.source }),
    parse: (raw: string) => {
      const slug = raw.trim();
      if (!TENANT_SLUG_PATTERN.test(slug)) throw new SettingError('CIPHERGATE_SMS_SENDER_TENANT', 'a tenant slug (lower-case letters, digits and -)', raw);
      return slug;
    },
  }),
  openaiBaseUrl: setting({
    env: 'CIPHERGATE_OPENAI_BASE_URL',
    description: 'OpenAI-compatible API base URL.',
    schema: Type.String({ format: 'uri' }),
    defaultText: 'https://api.openai.com/v1',
    parse: urlWith(['http:', 'https:'], { stripTrailingSlash: true })('CIPHERGATE_OPENAI_BASE_URL'),
  }),
  airtableApiUrl: setting({
    env: 'CIPHERGATE_AIRTABLE_API_URL',
    description: 'Airtable REST base URL, without `/v0`.',
    schema: Type.String({ format: 'uri' }),
    defaultText: 'https://api.airtable.com',
    parse: urlWith(['http:', 'https:'], { stripTrailingSlash: true })('CIPHERGATE_AIRTABLE_API_URL'),
  }),
  podiumApiUrl: setting({
    env: 'CIPHERGATE_PODIUM_API_URL',
    description: 'Podium REST base URL.',
    schema: Type.String({ format: 'uri' }),
    defaultText: 'https://api.podium.com',
    parse: urlWith(['http:', 'https:'], { stripTrailingSlash: true })('CIPHERGATE_PODIUM_API_URL'),
  }),
  trustProxy: setting({
    env: 'CIPHERGATE_TRUST_PROXY',
    description: 'Comma-separated IPs/CIDRs of proxies whose X-Forwarded-* headers are believed.',
    schema: Type.Array(Type.String()),
    defaultText: 'none',
    parse: cidrList('CIPHERGATE_TRUST_PROXY'),
  }),
  logLevel: setting({
    env: 'CIPHERGATE_LOG_LEVEL',
    description: 'pino log level.',
    schema: Type.Union(PINO_LEVELS.map((level) => Type.Literal(level))),
    defaultText: 'info',
    parse: oneOf(PINO_LEVELS)('CIPHERGATE_LOG_LEVEL'),
  }),
  signup: setting({
    env: 'CIPHERGATE_SIGNUP',
    description: '`closed` (only admins create users) or `open` (self-registration with email verification).',
    schema: Type.Union([Type.Literal('closed'), Type.Literal('open')]),
    defaultText: 'closed',
    parse: oneOf(['closed', 'open'] as const)('CIPHERGATE_SIGNUP'),
  }),
  signupPendingHours: setting({
    env: 'CIPHERGATE_SIGNUP_PENDING_HOURS',
    description:
      'How long a self-registration waits for its address to be verified. After that its verification link is dead and the pending account is removed (at the next signup or admin invite for the address, and by an hourly sweep in `serve`).',
    schema: Type.Integer({ minimum: 1 }),
    defaultText: '24',
    parse: integerIn(1, 30 * 24)('CIPHERGATE_SIGNUP_PENDING_HOURS'),
  }),
  smtpUrl: setting({
    env: 'CIPHERGATE_SMTP_URL',
    description: 'Where verification and setup emails go (`smtp://` or `smtps://`).',
    schema: Type.String(),
    secret: true,
    parse: urlWith(['smtp:', 'smtps:'], { secret: true })('CIPHERGATE_SMTP_URL'),
  }),
  maxSessionsPerUser: setting({
    env: 'CIPHERGATE_MAX_SESSIONS_PER_USER',
    description: 'Concurrent sessions allowed per user; a new sign-in ends the oldest beyond it.',
    schema: Type.Integer({ minimum: 1 }),
    defaultText: 'unlimited',
    parse: integerIn(1, 1_000_000)('CIPHERGATE_MAX_SESSIONS_PER_USER'),
  }),
  metricsAddress: setting({
    env: 'CIPHERGATE_METRICS_ADDRESS',
    description: 'A separate HOST:PORT for `/metrics`; unset serves it on the main port to `metrics:read` tokens.',
    schema: Type.Object({ host: Type.String(), port: Type.Integer() }),
    parse: hostPort('CIPHERGATE_METRICS_ADDRESS'),
  }),
  bodyLimitBytes: setting({
    env: 'CIPHERGATE_BODY_LIMIT_BYTES',
    description: 'Largest request body accepted; larger ones get 413.',
    schema: Type.Integer({ minimum: 1024 }),
    defaultText: '1048576',
    parse: integerIn(1024, 64 * 1024 * 1024)('CIPHERGATE_BODY_LIMIT_BYTES'),
  }),
  sessionIdleMinutes: setting({
    env: 'CIPHERGATE_SESSION_IDLE_MINUTES',
    description: 'A session unused for this long ends (its refresh token stops working, its access tokens are refused).',
    schema: Type.Integer({ minimum: 1 }),
    defaultText: '30',
    parse: integerIn(1, 7 * 24 * 60)('CIPHERGATE_SESSION_IDLE_MINUTES'),
  }),
  sessionAbsoluteHours: setting({
    env: 'CIPHERGATE_SESSION_ABSOLUTE_HOURS',
    description: 'A session ends this long after sign-in however active it is.',
    schema: Type.Integer({ minimum: 1 }),
    defaultText: '12',
    parse: integerIn(1, 90 * 24)('CIPHERGATE_SESSION_ABSOLUTE_HOURS'),
  }),
  apiRateLimitPerMinute: setting({
    env: 'CIPHERGATE_API_RATE_LIMIT_PER_MINUTE',
    description:
      'Requests per minute allowed per verified principal (a user, or an API key with its OAuth tokens) on `/api/v1` and `/oauth`, and per address for requests without a credential that verifies; beyond it 429 with Retry-After.',
    schema: Type.Integer({ minimum: 1 }),
    defaultText: '100',
    parse: integerIn(1, 1_000_000)('CIPHERGATE_API_RATE_LIMIT_PER_MINUTE'),
  }),
  webhookRateLimitPerMinute: setting({
    env: 'CIPHERGATE_WEBHOOK_RATE_LIMIT_PER_MINUTE',
    description:
      'Requests per minute allowed per source address on `/webhooks/`, counted before the tenant is looked up or the signature checked; beyond it 429 with Retry-After. Generous on purpose: Twilio does not retry a refused inbound SMS, and a bulk send can bring hundreds of status callbacks a second (docs/failure-behaviour.md).',
    schema: Type.Integer({ minimum: 1 }),
    defaultText: '6000',
    parse: integerIn(1, 1_000_000)('CIPHERGATE_WEBHOOK_RATE_LIMIT_PER_MINUTE'),
  }),
} as const;

export type SettingName = keyof typeof settings;
