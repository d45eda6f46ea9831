import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { KeyProviderError, KeyUnwrapError } from '../../src/seal/providers/key-provider.js';
import { LocalKeyProvider, type LocalKeyProviderOptions } from '../../src/seal/providers/local.js';

const tempRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'ciphergate-local-kek-'));
after(() => fs.rmSync(tempRoot, { recursive: true, force: true }));

function freshDir(): string {
  return fs.mkdtempSync(path.join(tempRoot, 'data-'));
}

function provider(overrides: Partial<LocalKeyProviderOptions> = {}): LocalKeyProvider {
  return new LocalKeyProvider({ dataDir: freshDir(), allowGenerate: false, warn: () => {}, ...overrides });
}

const masterKey = Buffer.from(randomBytes(32).toString('base64'));
const context = { scope: 'tenant-1', version: 3 };

describe('local key provider: wrapping', () => {
  test('wrap/unwrap round trip', async () => {
    const kek = provider({ masterKey });
    const dek = randomBytes(32);
    const wrapped = await kek.wrapKey(dek, context);
    assert.equal(wrapped[0], 0x01);
    assert.ok(!wrapped.includes(dek));
    assert.ok((await kek.unwrapKey(wrapped, context)).equals(dek));
    await kek.check();
  });

  test('a different KEK fails with KeyUnwrapError', async () => {
    const wrapped = await provider({ masterKey }).wrapKey(randomBytes(32), context);
    const other = provider({ masterKey: randomBytes(32).toString('base64') });
    await assert.rejects(other.unwrapKey(wrapped, context), KeyUnwrapError);
  });

  test('another scope or version fails with KeyUnwrapError', async () => {
    const kek = provider({ masterKey });
    const wrapped = await kek.wrapKey(randomBytes(32), context);
    await assert.rejects(kek.unwrapKey(wrapped, { ...context, scope: 'tenant-2' }), KeyUnwrapError);
    await assert.rejects(kek.unwrapKey(wrapped, { ...context, version: 4 }), KeyUnwrapError);
  });

  test('a tampered or cut wrapped key fails with KeyUnwrapError', async () => {
    const kek = provider({ masterKey });
    const wrapped = await kek.wrapKey(randomBytes(32), context);
    for (let offset = 0; offset < wrapped.length; offset++) {
      const tampered = Buffer.from(wrapped);
      tampered[offset]! ^= 0x01;
      await assert.rejects(kek.unwrapKey(tampered, context), KeyUnwrapError);
    }
    await assert.rejects(kek.unwrapKey(wrapped.subarray(0, 60), context), KeyUnwrapError);
  });

  test('kekId is a fingerprint of the key, not the key', () => {
    const raw = Buffer.from(masterKey.toString(), 'base64');
    const expected = createHash('sha256').update('ciphergate/kek-id').update(raw).digest('hex').slice(0, 16);
    assert.equal(provider({ masterKey }).kekId, `local:${expected}`);
    assert.equal(provider({ masterKey: ` ${masterKey.toString()}\n` }).kekId, `local:${expected}`);
  });

  test('a closed provider refuses to work', async () => {
    const kek = provider({ masterKey });
    await kek.close();
    await assert.rejects(kek.wrapKey(randomBytes(32), context), KeyProviderError);
  });
});

describe('local key provider: loading the master key', () => {
  const malformed = {
    'not base64': 'this is not base64!!',
    '16 bytes': randomBytes(16).toString('base64'),
    '33 bytes': randomBytes(33).toString('base64'),
    'base64 with junk inside': `${randomBytes(32).toString('base64').slice(0, 20)}*${randomBytes(32).toString('base64').slice(20)}`,
  };

  for (const [what, value] of Object.entries(malformed)) {
    test(`${what} in CIPHERGATE_MASTER_KEY → one-line KeyProviderError naming it`, () => {
      assert.throws(
        () => provider({ masterKey: Buffer.from(value) }),
        (error: unknown) =>
          error instanceof KeyProviderError &&
          error.message.includes('CIPHERGATE_MASTER_KEY') &&
          !error.message.includes('CIPHERGATE_MASTER_KEY_FILE') &&
          !error.message.includes('\n') &&
          !error.message.includes(value),
      );
    });

    test(`${what} in CIPHERGATE_MASTER_KEY_FILE → KeyProviderError naming it`, () => {
      const file = path.join(freshDir(), 'kek');
      fs.writeFileSync(file, value);
      assert.throws(
        () => provider({ masterKeyFile: file }),
        (error: unknown) => error instanceof KeyProviderError && error.message.includes('CIPHERGATE_MASTER_KEY_FILE'),
      );
    });
  }

  test('a key file is read and trimmed', () => {
    const file = path.join(freshDir(), 'kek');
    fs.writeFileSync(file, `${masterKey.toString()}\n`);
    assert.equal(provider({ masterKeyFile: file }).kekId, provider({ masterKey }).kekId);
  });

  test('URL-safe base64 and missing padding are accepted', () => {
    const raw = Buffer.from(masterKey.toString(), 'base64');
    assert.equal(provider({ masterKey: raw.toString('base64url') }).kekId, provider({ masterKey }).kekId);
  });

  test('a missing key file names the variable', () => {
    assert.throws(() => provider({ masterKeyFile: path.join(tempRoot, 'missing') }), /CIPHERGATE_MASTER_KEY_FILE/);
  });

  test('both variables set is refused', () => {
    assert.throws(() => provider({ masterKey, masterKeyFile: '/dev/null' }), KeyProviderError);
  });

  test('no key and no permission to generate is refused', () => {
    assert.throws(() => provider(), /CIPHERGATE_MASTER_KEY or CIPHERGATE_MASTER_KEY_FILE/);
  });

  test('generates master.key with mode 0600, warns, and reuses it', async () => {
    const dataDir = path.join(freshDir(), 'nested');
    const warnings: string[] = [];
    const options = { dataDir, allowGenerate: true, warn: (msg: string) => warnings.push(msg) };
    const first = new LocalKeyProvider(options);
    const keyFile = path.join(dataDir, 'master.key');
    assert.equal(fs.statSync(keyFile).mode & 0o777, 0o600);
    assert.equal(Buffer.from(fs.readFileSync(keyFile, 'utf8').trim(), 'base64').length, 32);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /must be backed up separately/);
    assert.deepEqual(fs.readdirSync(dataDir), ['master.key']);

    const second = new LocalKeyProvider(options);
    assert.equal(second.kekId, first.kekId);
    assert.equal(warnings.length, 1);
    const wrapped = await first.wrapKey(randomBytes(32), context);
    await second.unwrapKey(wrapped, context);
  });

  test('a generated key that others can read is refused, naming the chmod', () => {
    const dataDir = freshDir();
    new LocalKeyProvider({ dataDir, allowGenerate: true, warn: () => {} });
    fs.chmodSync(path.join(dataDir, 'master.key'), 0o644);
    assert.throws(() => new LocalKeyProvider({ dataDir, allowGenerate: true, warn: () => {} }), (error: Error) => {
      assert.ok(error instanceof KeyProviderError);
      assert.match(error.message, /master key file .*master\.key is open to group or others \(mode 0644\); restrict it with `chmod 600 /);
      return true;
    });
  });

  test('a data dir that others can open gets no generated key', () => {
    const dataDir = freshDir();
    fs.chmodSync(dataDir, 0o755);
    assert.throws(() => new LocalKeyProvider({ dataDir, allowGenerate: true, warn: () => {} }), /data directory .* restrict it with `chmod 700 /);
    assert.deepEqual(fs.readdirSync(dataDir), []);
  });

  test('an explicit key wins over generating, and generates nothing', () => {
    const dataDir = freshDir();
    new LocalKeyProvider({ masterKey, dataDir, allowGenerate: true, warn: () => assert.fail('no warning expected') });
    assert.deepEqual(fs.readdirSync(dataDir), []);
  });

  test('concurrent first starts agree on one generated key', async () => {
    const dataDir = path.join(freshDir(), 'shared');
    const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
    const script = `
      const { LocalKeyProvider } = await import('./src/seal/providers/local.ts');
      const provider = new LocalKeyProvider({ dataDir: ${JSON.stringify(dataDir)}, allowGenerate: true, warn: () => {} });
      console.log(provider.kekId);`;
    const starts = Array.from({ length: 4 }, () =>
      promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: repoRoot }),
    );
    const kekIds = (await Promise.all(starts)).map(({ stdout }) => stdout.trim());
    assert.equal(new Set(kekIds).size, 1, kekIds.join(', '));
    assert.match(kekIds[0]!, /^local:[0-9a-f]{16}$/);
    assert.deepEqual(fs.readdirSync(dataDir), ['master.key']);
  });
});
