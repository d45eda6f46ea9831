import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { parse } from 'yaml';
import { settings } from '../../src/config/settings.js';
import { REPO_ROOT } from '../helpers/cli.js';

/**
 * The Dockerfile and compose.yaml are not built or run in CI (base images cannot be pulled on
 * these machines), so this is what keeps them honest: every CIPHERGATE_* name they use is a
 * setting of src/config/settings.ts (or the `_FILE` form of a secret one), secrets reach the
 * container as files, and the hardening the docs promise (read-only root, tmpfs, non-root
 * user, health checks) is there.
 */
interface ComposeService {
  image?: string;
  build?: unknown;
  user?: string;
  read_only?: boolean;
  tmpfs?: string[];
  environment?: Record<string, string | number | boolean | null> | string[];
  secrets?: Array<string | { source: string }>;
  healthcheck?: { test?: unknown };
}
interface ComposeFile {
  services: Record<string, ComposeService>;
  secrets?: Record<string, { file?: string }>;
}

/** Every name the configuration accepts: each setting, and `<NAME>_FILE` for secret ones. */
function knownNames(): Set<string> {
  const names = new Set<string>();
  for (const setting of Object.values(settings)) {
    names.add(setting.env);
    if ('secret' in setting && setting.secret) names.add(`${setting.env}_FILE`);
  }
  return names;
}

/** CIPHERGATE_* names in `text` that the configuration does not know. */
function unknownNames(text: string, known: Set<string>): string[] {
  const used = new Set(text.match(/\bCIPHERGATE_[A-Z0-9_]+\b/g) ?? []);
  return [...used].filter((name) => !known.has(name)).sort();
}

function environmentOf(service: ComposeService): Record<string, string> {
  const environment = service.environment ?? {};
  if (Array.isArray(environment)) return Object.fromEntries(environment.map((entry) => [entry.split('=')[0]!, entry.split('=').slice(1).join('=')]));
  return Object.fromEntries(Object.entries(environment).map(([name, value]) => [name, String(value ?? '')]));
}

const composeText = readFileSync(join(REPO_ROOT, 'compose.yaml'), 'utf8');
const dockerfileText = readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8');
const compose = parse(composeText) as ComposeFile;

describe('Dockerfile and compose.yaml', () => {
  const known = knownNames();

  test('the checker itself flags a name the configuration does not have', () => {
    assert.deepEqual(unknownNames('CIPHERGATE_PORT=1 CIPHERGATE_DATABSE_URL=x CIPHERGATE_MASTER_KEY_FILE=y CIPHERGATE_PORT_FILE=z', known), ['CIPHERGATE_DATABSE_URL', 'CIPHERGATE_PORT_FILE']);
  });

  test('every CIPHERGATE_* name in compose.yaml (environment keys and anywhere else) is a setting', () => {
    const ciphergate = compose.services.ciphergate;
    assert.ok(ciphergate, 'compose.yaml has no ciphergate service');
    const environment = environmentOf(ciphergate);
    assert.ok(Object.keys(environment).length >= 4, 'the ciphergate service sets no environment');
    assert.deepEqual(unknownNames(Object.keys(environment).join(' '), known), []);
    assert.deepEqual(unknownNames(composeText, known), []);
  });

  test('every CIPHERGATE_* name in the Dockerfile is a setting', () => {
    assert.match(dockerfileText, /CIPHERGATE_DATA_DIR=/);
    assert.deepEqual(unknownNames(dockerfileText, known), []);
  });

  test('secrets reach Ciphergate as files: each *_FILE names a declared secret of the service, and no secret setting is inline', () => {
    const ciphergate = compose.services.ciphergate!;
    const environment = environmentOf(ciphergate);
    const attached = new Set((ciphergate.secrets ?? []).map((secret) => (typeof secret === 'string' ? secret : secret.source)));
    for (const [name, value] of Object.entries(environment).filter(([name]) => name.endsWith('_FILE'))) {
      const secret = /^\/run\/secrets\/([a-z0-9_]+)$/.exec(value)?.[1];
      assert.ok(secret, `${name} should point into /run/secrets, got ${value}`);
      assert.ok(attached.has(secret) && compose.secrets?.[secret]?.file, `${name} names secret ${secret}, which is not attached to the service or not declared`);
    }
    const secretSettings = Object.values(settings).filter((setting) => 'secret' in setting && setting.secret);
    // The Redis URL carries no password here (Redis is on an internal network), so it may stay inline.
    const inline = secretSettings.filter((setting) => environment[setting.env] !== undefined && setting.env !== 'CIPHERGATE_REDIS_URL').map((setting) => setting.env);
    assert.deepEqual(inline, [], 'secret settings must be given as <NAME>_FILE');
    assert.ok(environment.CIPHERGATE_MASTER_KEY_FILE && environment.CIPHERGATE_DATABASE_URL_FILE, 'the KEK and the database URL come from secrets');
  });

  test('every service runs with a read-only root filesystem, a tmpfs /tmp and a health check', () => {
    assert.deepEqual(Object.keys(compose.services).sort(), ['ciphergate', 'postgres', 'redis']);
    assert.equal(compose.services.postgres!.image, 'postgres:15');
    assert.equal(compose.services.redis!.image, 'redis:7');
    for (const [name, service] of Object.entries(compose.services)) {
      assert.equal(service.read_only, true, `${name} is not read_only`);
      assert.ok(service.tmpfs?.includes('/tmp'), `${name} has no tmpfs /tmp`);
      assert.ok(Array.isArray(service.healthcheck?.test), `${name} has no health check`);
    }
    assert.match(compose.services.ciphergate!.user ?? '', /^\d+:\d+$/, 'ciphergate runs as a numeric non-root user');
  });

  test('the Dockerfile: multi-stage, runtime dependencies without dev ones, numeric non-root user, volumes, node health check on /healthz', () => {
    assert.ok((dockerfileText.match(/^FROM /gm) ?? []).length >= 2, 'not multi-stage');
    assert.match(dockerfileText, /npm ci --omit=dev/);
    const users = dockerfileText.match(/^USER (\S+)/gm) ?? [];
    assert.deepEqual(users, ['USER 10001:10001']);
    assert.match(dockerfileText, /^VOLUME \["\/var\/lib\/ciphergate", "\/tmp"\]/m);
    const healthcheck = /^HEALTHCHECK[\s\S]*?CMD (\[.*\])$/m.exec(dockerfileText);
    assert.ok(healthcheck, 'no HEALTHCHECK');
    const command = JSON.parse(healthcheck[1]!) as string[];
    assert.equal(command[0], 'node');
    assert.match(command.join(' '), /\/healthz/);
    assert.doesNotMatch(dockerfileText, /\bcurl\b|\bwget\b/);
  });
});
