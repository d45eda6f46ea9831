import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { loadConfig, SettingError } from '../../src/config/load.js';
import { settings } from '../../src/config/settings.js';

const KEY = Buffer.alloc(32, 7).toString('base64');

function failure(env: Record<string, string>): SettingError {
  try {
    loadConfig(env, '/srv/app');
  } catch (error) {
    assert.ok(error instanceof SettingError, `expected a SettingError, got ${String(error)}`);
    assert.equal(error.message.includes('\n'), false, 'the message is one line');
    return error;
  }
  assert.fail(`expected ${JSON.stringify(env)} to be refused`);
}

describe('config defaults', () => {
  test('an empty environment gives the documented defaults', () => {
    const config = loadConfig({}, '/srv/app');
    assert.equal(config.host, '127.0.0.1');
    assert.equal(config.port, 8080);
    assert.equal(config.publicUrl, 'http://127.0.0.1:8080');
    assert.equal(config.publicUrlDerived, true);
    assert.equal(config.dataDir, '/srv/app/.ciphergate');
    assert.equal(config.database.url, undefined);
    assert.equal(config.database.connectTimeoutSeconds, 30);
    assert.deepEqual(config.keys, { provider: 'local' });
    assert.equal(config.providers.twilioApiUrl, 'https://api.twilio.com');
    assert.equal(config.providers.openaiBaseUrl, 'https://api.openai.com/v1');
    assert.equal(config.providers.airtableApiUrl, 'https://api.airtable.com');
    assert.equal(config.providers.podiumApiUrl, 'https://api.podium.com');
    assert.deepEqual(config.trustProxy, []);
    assert.equal(config.logLevel, 'info');
    assert.equal(config.signup, 'closed');
    assert.equal(config.signupPendingHours, 24);
    assert.equal(config.maxSessionsPerUser, undefined);
    assert.equal(config.metricsAddress, undefined);
    assert.equal(config.bodyLimitBytes, 1024 * 1024);
  });

  test('every variable is read and parsed', () => {
    const config = loadConfig(
      {
        CIPHERGATE_HOST: '0.0.0.0',
        CIPHERGATE_PORT: '9000',
        CIPHERGATE_PUBLIC_URL: 'https://gate.example.com/',
        CIPHERGATE_DATA_DIR: 'data',
        CIPHERGATE_DATABASE_URL: 'postgres://u:p@db:5432/cg',
        CIPHERGATE_DATABASE_CONNECT_TIMEOUT_SECONDS: '5',
        CIPHERGATE_REDIS_URL: 'redis://cache:6379',
        CIPHERGATE_MASTER_KEY: KEY,
        CIPHERGATE_TWILIO_API_URL: 'http://127.0.0.1:4010/',
        CIPHERGATE_TRUST_PROXY: '10.0.0.0/8, 192.168.1.1,::1/128',
        CIPHERGATE_LOG_LEVEL: 'debug',
        CIPHERGATE_SIGNUP: 'open',
        CIPHERGATE_SMTP_URL: 'smtp://mail:25',
        CIPHERGATE_SIGNUP_PENDING_HOURS: '48',
        CIPHERGATE_MAX_SESSIONS_PER_USER: '1',
        CIPHERGATE_METRICS_ADDRESS: '127.0.0.1:9464',
        CIPHERGATE_BODY_LIMIT_BYTES: '2048',
      },
      '/srv/app',
    );
    assert.equal(config.host, '0.0.0.0');
    assert.equal(config.port, 9000);
    assert.equal(config.publicUrl, 'https://gate.example.com', 'a trailing slash is dropped so paths join cleanly');
    assert.equal(config.publicUrlDerived, false);
    assert.equal(config.dataDir, '/srv/app/data');
    assert.equal(config.database.url, 'postgres://u:p@db:5432/cg');
    assert.equal(config.database.connectTimeoutSeconds, 5);
    assert.equal(config.redisUrl, 'redis://cache:6379');
    assert.deepEqual(config.keys, { provider: 'local', masterKey: KEY });
    assert.equal(config.providers.twilioApiUrl, 'http://127.0.0.1:4010');
    assert.deepEqual(config.trustProxy, ['10.0.0.0/8', '192.168.1.1', '::1/128']);
    assert.equal(config.logLevel, 'debug');
    assert.equal(config.signup, 'open');
    assert.equal(config.smtpUrl, 'smtp://mail:25');
    assert.equal(config.signupPendingHours, 48);
    assert.equal(config.maxSessionsPerUser, 1);
    assert.deepEqual(config.metricsAddress, { host: '127.0.0.1', port: 9464 });
    assert.equal(config.bodyLimitBytes, 2048);
  });

  test('an empty variable counts as unset', () => {
    assert.equal(loadConfig({ CIPHERGATE_PORT: '' }, '/').port, 8080);
  });

  test('pkcs11 takes its four variables', () => {
    const config = loadConfig({
      CIPHERGATE_KEY_PROVIDER: 'pkcs11',
      CIPHERGATE_PKCS11_MODULE: '/usr/lib/softhsm/libsofthsm2.so',
      CIPHERGATE_PKCS11_TOKEN_LABEL: 'cg',
      CIPHERGATE_PKCS11_PIN: '1234',
      CIPHERGATE_PKCS11_KEY_LABEL: 'kek',
    });
    assert.deepEqual(config.keys, { provider: 'pkcs11', module: '/usr/lib/softhsm/libsofthsm2.so', tokenLabel: 'cg', pin: '1234', keyLabel: 'kek' });
  });
});

describe('malformed settings stop start-up with one line naming the variable', () => {
  const cases: Array<[Record<string, string>, string]> = [
    [{ CIPHERGATE_PORT: 'abc' }, 'CIPHERGATE_PORT: expected an integer 0-65535, got "abc"'],
    [{ CIPHERGATE_PORT: '70000' }, 'CIPHERGATE_PORT: expected an integer 0-65535, got "70000"'],
    [{ CIPHERGATE_PORT: '80.5' }, 'CIPHERGATE_PORT: expected an integer 0-65535, got "80.5"'],
    [{ CIPHERGATE_PUBLIC_URL: 'gate.example.com' }, 'CIPHERGATE_PUBLIC_URL: expected a URL starting with http:// or https://, got "gate.example.com"'],
    [{ CIPHERGATE_PUBLIC_URL: 'ftp://x' }, 'CIPHERGATE_PUBLIC_URL: expected a URL starting with http:// or https://, got "ftp://x"'],
    [{ CIPHERGATE_KEY_PROVIDER: 'vault' }, 'CIPHERGATE_KEY_PROVIDER: expected one of local, pkcs11, got "vault"'],
    [{ CIPHERGATE_LOG_LEVEL: 'loud' }, 'CIPHERGATE_LOG_LEVEL: expected one of fatal, error, warn, info, debug, trace, silent, got "loud"'],
    [{ CIPHERGATE_SIGNUP: 'yes' }, 'CIPHERGATE_SIGNUP: expected one of closed, open, got "yes"'],
    [{ CIPHERGATE_TRUST_PROXY: '10.0.0.0/33' }, 'CIPHERGATE_TRUST_PROXY: expected a comma-separated list of IP addresses or CIDRs, got "10.0.0.0/33"'],
    [{ CIPHERGATE_TRUST_PROXY: 'proxy.local' }, 'CIPHERGATE_TRUST_PROXY: expected a comma-separated list of IP addresses or CIDRs, got "proxy.local"'],
    [{ CIPHERGATE_MAX_SESSIONS_PER_USER: '0' }, 'CIPHERGATE_MAX_SESSIONS_PER_USER: expected an integer 1-1000000, got "0"'],
    [{ CIPHERGATE_SIGNUP_PENDING_HOURS: '0' }, 'CIPHERGATE_SIGNUP_PENDING_HOURS: expected an integer 1-720, got "0"'],
    [{ CIPHERGATE_SIGNUP_PENDING_HOURS: '1.5' }, 'CIPHERGATE_SIGNUP_PENDING_HOURS: expected an integer 1-720, got "1.5"'],
    [{ CIPHERGATE_METRICS_ADDRESS: '9464' }, 'CIPHERGATE_METRICS_ADDRESS: expected HOST:PORT, e.g. 127.0.0.1:9464, got "9464"'],
    [{ CIPHERGATE_BODY_LIMIT_BYTES: '10' }, 'CIPHERGATE_BODY_LIMIT_BYTES: expected an integer 1024-67108864, got "10"'],
    [{ CIPHERGATE_DATABASE_CONNECT_TIMEOUT_SECONDS: '-1' }, 'CIPHERGATE_DATABASE_CONNECT_TIMEOUT_SECONDS: expected an integer 0-3600, got "-1"'],
    [{ CIPHERGATE_TWILIO_API_URL: 'not a url' }, 'CIPHERGATE_TWILIO_API_URL: expected a URL starting with http:// or https://, got "not a url"'],
    [{ CIPHERGATE_SIGNUP: 'open' }, 'CIPHERGATE_SMTP_URL: expected an SMTP URL when CIPHERGATE_SIGNUP=open (verification emails must go somewhere), got nothing'],
    [{ CIPHERGATE_KEY_PROVIDER: 'pkcs11' }, 'CIPHERGATE_PKCS11_MODULE: expected a value when CIPHERGATE_KEY_PROVIDER=pkcs11, got nothing'],
  ];
  for (const [env, message] of cases) {
    test(`${Object.entries(env).map(([k, v]) => `${k}=${v}`).join(' ')}`, () => {
      assert.equal(failure(env).message, message);
    });
  }

  test('secrets are never echoed back in the error', () => {
    const secretUrl = 'mysql://admin:hunter2-very-secret@db/cg';
    const error = failure({ CIPHERGATE_DATABASE_URL: secretUrl });
    assert.match(error.message, /^CIPHERGATE_DATABASE_URL: expected a URL starting with postgres:\/\/ or postgresql:\/\//);
    assert.equal(error.message.includes('hunter2'), false);
    const keyError = failure({ CIPHERGATE_MASTER_KEY: 'c2hvcnQtc2VjcmV0LWtleQ==' });
    assert.equal(keyError.message.includes('c2hvcnQtc2VjcmV0LWtleQ'), false);
    assert.match(keyError.message, /^CIPHERGATE_MASTER_KEY: expected base64 of exactly 32 bytes/);
  });

  test('a master key of the wrong length is refused', () => {
    failure({ CIPHERGATE_MASTER_KEY: Buffer.alloc(16).toString('base64') });
    failure({ CIPHERGATE_MASTER_KEY: Buffer.alloc(33).toString('base64') });
    failure({ CIPHERGATE_MASTER_KEY: 'not base64 at all!' });
  });
});

describe('_FILE variants of secrets', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cg-config-'));

  test('a secret is read from the file named by <VAR>_FILE, trailing newline trimmed', () => {
    const keyFile = join(dir, 'master.key');
    writeFileSync(keyFile, `${KEY}\n`);
    const urlFile = join(dir, 'db-url');
    writeFileSync(urlFile, 'postgres://u:secret@db/cg\n');
    const config = loadConfig({ CIPHERGATE_MASTER_KEY_FILE: keyFile, CIPHERGATE_DATABASE_URL_FILE: urlFile }, dir);
    assert.deepEqual(config.keys, { provider: 'local', masterKey: KEY, masterKeyFile: keyFile });
    assert.equal(config.database.url, 'postgres://u:secret@db/cg');
  });

  test('the PKCS#11 PIN can come from a file', () => {
    const pinFile = join(dir, 'pin');
    writeFileSync(pinFile, '98765\n');
    const config = loadConfig({
      CIPHERGATE_KEY_PROVIDER: 'pkcs11',
      CIPHERGATE_PKCS11_MODULE: '/m.so',
      CIPHERGATE_PKCS11_TOKEN_LABEL: 't',
      CIPHERGATE_PKCS11_PIN_FILE: pinFile,
      CIPHERGATE_PKCS11_KEY_LABEL: 'k',
    });
    assert.equal(config.keys.provider === 'pkcs11' && config.keys.pin, '98765');
  });

  test('a missing or unreadable file names the _FILE variable', () => {
    assert.match(failure({ CIPHERGATE_MASTER_KEY_FILE: join(dir, 'nope') }).message, /^CIPHERGATE_MASTER_KEY_FILE: expected a readable file, got ".*nope \(ENOENT\)"$/);
    const unreadable = join(dir, 'locked');
    writeFileSync(unreadable, KEY);
    chmodSync(unreadable, 0o000);
    // root reads any file, so only check the message shape when the read really fails.
    if (process.getuid?.() !== 0) assert.match(failure({ CIPHERGATE_MASTER_KEY_FILE: unreadable }).message, /EACCES/);
  });

  test('setting both the variable and its _FILE is refused', () => {
    const keyFile = join(dir, 'both.key');
    writeFileSync(keyFile, KEY);
    assert.equal(
      failure({ CIPHERGATE_MASTER_KEY: KEY, CIPHERGATE_MASTER_KEY_FILE: keyFile }).message,
      'CIPHERGATE_MASTER_KEY: expected either CIPHERGATE_MASTER_KEY or CIPHERGATE_MASTER_KEY_FILE, not both, got nothing',
    );
  });

  test('a bad secret from a file is refused without showing it', () => {
    const keyFile = join(dir, 'short.key');
    writeFileSync(keyFile, 'dG9vLXNob3J0');
    const error = failure({ CIPHERGATE_MASTER_KEY_FILE: keyFile });
    assert.equal(error.message.includes('dG9vLXNob3J0'), false);
  });

  test('non-secret settings have no _FILE variant', () => {
    const portFile = join(dir, 'port');
    writeFileSync(portFile, '9999');
    assert.equal(loadConfig({ CIPHERGATE_PORT_FILE: portFile }).port, 8080);
  });
});

test('every contract variable is declared in the settings table', () => {
  const declared = new Set(Object.values(settings).map((setting) => setting.env));
  for (const name of [
    'CIPHERGATE_HOST', 'CIPHERGATE_PORT', 'CIPHERGATE_PUBLIC_URL', 'CIPHERGATE_DATA_DIR', 'CIPHERGATE_DATABASE_URL',
    'CIPHERGATE_REDIS_URL', 'CIPHERGATE_KEY_PROVIDER', 'CIPHERGATE_MASTER_KEY', 'CIPHERGATE_PKCS11_MODULE',
    'CIPHERGATE_PKCS11_TOKEN_LABEL', 'CIPHERGATE_PKCS11_PIN', 'CIPHERGATE_PKCS11_KEY_LABEL', 'CIPHERGATE_TWILIO_API_URL',
    'CIPHERGATE_OPENAI_BASE_URL', 'CIPHERGATE_AIRTABLE_API_URL', 'CIPHERGATE_PODIUM_API_URL', 'CIPHERGATE_TRUST_PROXY',
    'CIPHERGATE_LOG_LEVEL', 'CIPHERGATE_SIGNUP', 'CIPHERGATE_SMTP_URL', 'CIPHERGATE_MAX_SESSIONS_PER_USER',
    'CIPHERGATE_METRICS_ADDRESS',
  ]) {
    assert.ok(declared.has(name), `${name} is missing from src/config/settings.ts`);
  }
});
