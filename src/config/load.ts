import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { SettingError, settings, type Setting } from './settings.js';

export { SettingError } from './settings.js';

/** Validated configuration. Read once at start-up and passed down; nothing else reads process.env. */
export interface Config {
  host: string;
  port: number;
  publicUrl: string;
  /** True when `publicUrl` was not given and was derived from host and port. */
  publicUrlDerived: boolean;
  dataDir: string;
  database: { url?: string; connectTimeoutSeconds: number };
  redisUrl?: string;
  redisKeyPrefix: string;
  keys:
    | { provider: 'local'; masterKey?: string; masterKeyFile?: string }
    | { provider: 'pkcs11'; module: string; tokenLabel: string; pin: string; keyLabel: string };
  providers: { twilioApiUrl: string; openaiBaseUrl: string; airtableApiUrl: string; podiumApiUrl: string };
  /** The tenant whose Twilio account sends identity SMS codes; unset means no SMS factor. */
  smsSenderTenant?: string;
  trustProxy: string[];
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  signup: 'closed' | 'open';
  /** How long a self-registration may wait for its email verification. */
  signupPendingHours: number;
  smtpUrl?: string;
  maxSessionsPerUser?: number;
  metricsAddress?: { host: string; port: number };
  bodyLimitBytes: number;
  sessions: { idleMinutes: number; absoluteHours: number };
  apiRateLimitPerMinute: number;
  webhookRateLimitPerMinute: number;
}

type Env = Record<string, string | undefined>;

/**
 * Builds the Config from an environment. Throws SettingError (whose message is the one line
 * start-up prints) on the first variable that is missing or malformed.
 */
export function loadConfig(env: Env = process.env, cwd = process.cwd()): Config {
  const read = <T>(definition: Setting<T>): T | undefined => {
    const raw = rawValue(env, definition);
    return raw === undefined ? undefined : definition.parse(raw);
  };

  const host = read(settings.host) ?? '127.0.0.1';
  const port = read(settings.port) ?? 8080;
  const explicitPublicUrl = read(settings.publicUrl);
  const keyProvider = read(settings.keyProvider) ?? 'local';
  const signup = read(settings.signup) ?? 'closed';
  const smtpUrl = read(settings.smtpUrl);
  if (signup === 'open' && smtpUrl === undefined) {
    throw new SettingError(settings.smtpUrl.env, 'an SMTP URL when CIPHERGATE_SIGNUP=open (verification emails must go somewhere)', undefined);
  }

  return {
    host,
    port,
    publicUrl: explicitPublicUrl ?? `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    publicUrlDerived: explicitPublicUrl === undefined,
    dataDir: resolve(cwd, read(settings.dataDir) ?? './.ciphergate'),
    database: {
      url: read(settings.databaseUrl),
      connectTimeoutSeconds: read(settings.databaseConnectTimeoutSeconds) ?? 30,
    },
    redisUrl: read(settings.redisUrl),
    redisKeyPrefix: read(settings.redisKeyPrefix) ?? 'cg',
    keys: keyProvider === 'pkcs11' ? pkcs11Keys(env, read) : localKeys(env, read, cwd),
    providers: {
      twilioApiUrl: read(settings.twilioApiUrl) ?? 'https://api.twilio.com',
      openaiBaseUrl: read(settings.openaiBaseUrl) ?? 'https://api.openai.com/v1',
      airtableApiUrl: read(settings.airtableApiUrl) ?? 'https://api.airtable.com',
      podiumApiUrl: read(settings.podiumApiUrl) ?? 'https://api.podium.com',
    },
    smsSenderTenant: read(settings.smsSenderTenant),
    trustProxy: read(settings.trustProxy) ?? [],
    logLevel: read(settings.logLevel) ?? 'info',
    signup,
    signupPendingHours: read(settings.signupPendingHours) ?? 24,
    smtpUrl,
    maxSessionsPerUser: read(settings.maxSessionsPerUser),
    metricsAddress: read(settings.metricsAddress),
    bodyLimitBytes: read(settings.bodyLimitBytes) ?? 1024 * 1024,
    sessions: {
      idleMinutes: read(settings.sessionIdleMinutes) ?? 30,
      absoluteHours: read(settings.sessionAbsoluteHours) ?? 12,
    },
    apiRateLimitPerMinute: read(settings.apiRateLimitPerMinute) ?? 100,
    webhookRateLimitPerMinute: read(settings.webhookRateLimitPerMinute) ?? 6000,
  };
}

function localKeys(env: Env, read: <T>(definition: Setting<T>) => T | undefined, cwd: string): Config['keys'] {
  // The master key stays a string here; src/seal turns it into key material, so the Buffer
  // lives only where it is used. The _FILE variant is resolved by rawValue already, but the
  // path is kept too so that error messages can name the file.
  const masterKey = read(settings.masterKey);
  const masterKeyFile = env[`${settings.masterKey.env}_FILE`];
  return {
    provider: 'local',
    ...(masterKey !== undefined ? { masterKey } : {}),
    ...(masterKeyFile ? { masterKeyFile: resolve(cwd, masterKeyFile) } : {}),
  };
}

function pkcs11Keys(env: Env, read: <T>(definition: Setting<T>) => T | undefined): Config['keys'] {
  const required = <T>(definition: Setting<T>): T => {
    const value = read(definition);
    if (value === undefined) {
      throw new SettingError(definition.env, 'a value when CIPHERGATE_KEY_PROVIDER=pkcs11', undefined);
    }
    return value;
  };
  return {
    provider: 'pkcs11',
    module: required(settings.pkcs11Module),
    tokenLabel: required(settings.pkcs11TokenLabel),
    pin: required(settings.pkcs11Pin),
    keyLabel: required(settings.pkcs11KeyLabel),
  };
}

/** The raw string of a setting, from `<env>` or, for secrets, from the file named by `<env>_FILE`. */
function rawValue(env: Env, definition: Setting<unknown>): string | undefined {
  const direct = env[definition.env];
  const fileVariable = `${definition.env}_FILE`;
  const filePath = definition.secret ? env[fileVariable] : undefined;
  if (direct !== undefined && direct !== '' && filePath) {
    throw new SettingError(definition.env, `either ${definition.env} or ${fileVariable}, not both`, undefined);
  }
  if (filePath) {
    try {
      return readFileSync(filePath, 'utf8').replace(/\r?\n$/, '');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? 'unreadable';
      throw new SettingError(fileVariable, 'a readable file', `${filePath} (${code})`);
    }
  }
  // An empty variable means unset: shells and compose files often export FOO= to clear one.
  return direct === undefined || direct === '' ? undefined : direct;
}
