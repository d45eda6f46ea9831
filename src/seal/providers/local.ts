/**
 * The `local` key provider: a 256-bit KEK from CIPHERGATE_MASTER_KEY, from the file named
 * by CIPHERGATE_MASTER_KEY_FILE, or generated once into the data directory for the
 * embedded default. DEKs are wrapped with AES-256-GCM under it.
 *
 * Wrapped layout (61 bytes):  0x01 layout version ‖ 12-byte nonce ‖ 32-byte DEK ciphertext ‖ 16-byte tag
 * AAD:                        0x01 ‖ len ‖ "ciphergate/wrap/v1" ‖ len ‖ scope ‖ uint32 version
 * so a wrapped DEK moved to another tenant or version fails to unwrap.
 */

import { createCipheriv, createDecipheriv, createHash, createSecretKey, randomBytes, type KeyObject } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, refuseSharedPath, SharedPathError } from '../../config/private-paths.js';
import { encodeLengthPrefixed } from '../binding.js';
import { KeyProviderError, KeyUnwrapError, type KeyProvider, type WrapContext } from './key-provider.js';

export interface LocalKeyProviderOptions {
  /** The value of CIPHERGATE_MASTER_KEY as given: base64 text of 32 bytes. */
  masterKey?: Buffer | string;
  /** CIPHERGATE_MASTER_KEY_FILE: a file holding that base64 text. */
  masterKeyFile?: string;
  /** Where `master.key` is generated when no key is configured. */
  dataDir: string;
  /** Only the embedded default may generate; a production deployment must bring its key. */
  allowGenerate: boolean;
  warn: (msg: string) => void;
}

export const MASTER_KEY_FILE_NAME = 'master.key';

const KEK_BYTES = 32;
const DEK_BYTES = 32;
const WRAP_FORMAT_V1 = 0x01;
const WRAP_LABEL = 'ciphergate/wrap/v1';
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const WRAPPED_BYTES = 1 + NONCE_BYTES + DEK_BYTES + TAG_BYTES;

export class LocalKeyProvider implements KeyProvider {
  readonly kind = 'local' as const;
  readonly kekId: string;
  private kek: KeyObject | undefined;

  constructor(options: LocalKeyProviderOptions) {
    const raw = loadMasterKey(options);
    try {
      this.kekId = kekIdOf(raw);
      this.kek = createSecretKey(raw);
    } finally {
      raw.fill(0);
    }
  }

  async wrapKey(dek: Buffer, context: WrapContext): Promise<Buffer> {
    if (dek.length !== DEK_BYTES) throw new RangeError(`a data key must be ${DEK_BYTES} bytes`);
    const kek = this.usableKek();
    const wrapped = Buffer.allocUnsafe(WRAPPED_BYTES);
    wrapped[0] = WRAP_FORMAT_V1;
    const nonce = randomBytes(NONCE_BYTES);
    nonce.copy(wrapped, 1);
    const cipher = createCipheriv('aes-256-gcm', kek, nonce, { authTagLength: TAG_BYTES });
    cipher.setAAD(wrapAad(context));
    cipher.update(dek).copy(wrapped, 1 + NONCE_BYTES);
    cipher.final();
    cipher.getAuthTag().copy(wrapped, 1 + NONCE_BYTES + DEK_BYTES);
    return wrapped;
  }

  async unwrapKey(wrapped: Buffer, context: WrapContext): Promise<Buffer> {
    const kek = this.usableKek();
    if (wrapped.length !== WRAPPED_BYTES || wrapped[0] !== WRAP_FORMAT_V1) {
      throw new KeyUnwrapError('wrapped key has an unknown layout for the local provider');
    }
    const aad = wrapAad(context);
    const decipher = createDecipheriv('aes-256-gcm', kek, wrapped.subarray(1, 1 + NONCE_BYTES), {
      authTagLength: TAG_BYTES,
    });
    decipher.setAAD(aad);
    decipher.setAuthTag(wrapped.subarray(1 + NONCE_BYTES + DEK_BYTES));
    const dek = decipher.update(wrapped.subarray(1 + NONCE_BYTES, 1 + NONCE_BYTES + DEK_BYTES));
    try {
      decipher.final();
    } catch {
      dek.fill(0);
      throw new KeyUnwrapError(
        `wrapped key for scope "${context.scope}" version ${context.version} does not unwrap under KEK ${this.kekId}`,
      );
    }
    return dek;
  }

  async check(): Promise<void> {
    const probe = randomBytes(DEK_BYTES);
    const context = { scope: 'ciphergate/check', version: 1 };
    const unwrapped = await this.unwrapKey(await this.wrapKey(probe, context), context);
    if (!unwrapped.equals(probe)) throw new KeyProviderError('local KEK failed its self-check');
  }

  async close(): Promise<void> {
    // A KeyObject cannot be zeroed from JS; dropping the reference is the most we can do.
    this.kek = undefined;
  }

  private usableKek(): KeyObject {
    if (this.kek === undefined) throw new KeyProviderError('local key provider is closed');
    return this.kek;
  }
}

function wrapAad(context: WrapContext): Buffer {
  if (typeof context.scope !== 'string' || context.scope.length === 0) {
    throw new RangeError('wrap context scope must be a non-empty string');
  }
  if (!Number.isInteger(context.version) || context.version < 0 || context.version > 0xffffffff) {
    throw new RangeError('wrap context version must be a uint32');
  }
  const version = Buffer.allocUnsafe(4);
  version.writeUInt32BE(context.version);
  return Buffer.concat([Buffer.of(WRAP_FORMAT_V1), encodeLengthPrefixed([WRAP_LABEL, context.scope]), version]);
}

function kekIdOf(kek: Buffer): string {
  const fingerprint = createHash('sha256').update('ciphergate/kek-id').update(kek).digest('hex');
  return `local:${fingerprint.slice(0, 16)}`;
}

function loadMasterKey(options: LocalKeyProviderOptions): Buffer {
  if (options.masterKey !== undefined && options.masterKeyFile !== undefined) {
    throw new KeyProviderError(
      'both CIPHERGATE_MASTER_KEY and CIPHERGATE_MASTER_KEY_FILE are set; set only one so it is clear which key is in use',
    );
  }
  if (options.masterKey !== undefined) {
    return decodeMasterKey(toText(options.masterKey), 'CIPHERGATE_MASTER_KEY');
  }
  if (options.masterKeyFile !== undefined) {
    return decodeMasterKey(readKeyFile(options.masterKeyFile), `CIPHERGATE_MASTER_KEY_FILE (${options.masterKeyFile})`);
  }
  if (!options.allowGenerate) {
    throw new KeyProviderError('no master key: set CIPHERGATE_MASTER_KEY or CIPHERGATE_MASTER_KEY_FILE');
  }
  return generatedMasterKey(options);
}

// Standard or URL-safe alphabet, padding optional. Buffer.from(_, 'base64') alone would
// silently skip invalid characters and accept a mangled key, hence the pattern and the
// round-trip check (which also rejects impossible lengths and stray trailing bits).
const BASE64 = /^(?:[A-Za-z0-9+/]+|[A-Za-z0-9_-]+)={0,2}$/;

function decodeMasterKey(text: string, source: string): Buffer {
  const trimmed = text.trim();
  const hint = 'expected base64 of 32 random bytes, e.g. from `openssl rand -base64 32`';
  const encoding = /[-_]/.test(trimmed) ? 'base64url' : 'base64';
  const key = BASE64.test(trimmed) ? Buffer.from(trimmed, encoding) : Buffer.alloc(0);
  if (key.length === 0 || unpadded(key.toString(encoding)) !== unpadded(trimmed)) {
    key.fill(0);
    throw new KeyProviderError(`${source} is not valid base64; ${hint}`);
  }
  if (key.length !== KEK_BYTES) {
    key.fill(0);
    throw new KeyProviderError(`${source} decodes to ${key.length} bytes, not ${KEK_BYTES}; ${hint}`);
  }
  return key;
}

function unpadded(base64: string): string {
  return base64.replace(/=+$/, '');
}

function readKeyFile(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new KeyProviderError(`CIPHERGATE_MASTER_KEY_FILE (${file}) cannot be read: ${errorCode(error)}`);
  }
}

/**
 * The embedded default's key: reuse `<dataDir>/master.key`, or create it. The new key is
 * written to a private temporary file (flag 'wx', mode 0600) and then hard-linked into
 * place, which fails with EEXIST if another start won the race; so a reader never sees a
 * half-written key, and a crash mid-write leaves no empty master.key that would block
 * every later start. Filesystems without hard links get master.key opened with 'wx'
 * directly, which still lets exactly one start create it.
 */
function generatedMasterKey(options: LocalKeyProviderOptions): Buffer {
  const keyFile = path.join(options.dataDir, MASTER_KEY_FILE_NAME);
  refuseShared(options.dataDir, 'data directory');
  const existing = readExistingKey(keyFile);
  if (existing !== undefined) return existing;

  const key = randomBytes(KEK_BYTES);
  try {
    fs.mkdirSync(options.dataDir, { recursive: true, mode: PRIVATE_DIR_MODE });
    publishExclusive(keyFile, `${key.toString('base64')}\n`);
    syncDirectory(options.dataDir);
  } catch (error) {
    key.fill(0);
    if (errorCode(error) === 'EEXIST') {
      const winner = readExistingKey(keyFile);
      if (winner !== undefined) return winner;
    }
    throw new KeyProviderError(`cannot create ${keyFile}: ${errorCode(error)}`);
  }
  options.warn(
    `generated a new master key at ${keyFile}; it must be backed up separately from the database, because sealed data cannot be recovered without it`,
  );
  return key;
}

/** Creates `file` with `contents` unless it exists (then throws EEXIST). */
function publishExclusive(file: string, contents: string): void {
  const tempFile = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    writeExclusive(tempFile, contents);
    fs.linkSync(tempFile, file);
  } catch (error) {
    if (!NO_HARD_LINKS.has(errorCode(error))) throw error;
    writeExclusive(file, contents);
  } finally {
    fs.rmSync(tempFile, { force: true });
  }
}

const NO_HARD_LINKS = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS', 'EXDEV']);

function readExistingKey(keyFile: string): Buffer | undefined {
  let text: string;
  try {
    text = fs.readFileSync(keyFile, 'utf8');
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return undefined;
    throw new KeyProviderError(`cannot read ${keyFile}: ${errorCode(error)}`);
  }
  // Refused, not merely warned about: whoever else could read it can open every sealed value.
  refuseShared(keyFile, 'master key file');
  return decodeMasterKey(text, `${keyFile} (the generated key; set CIPHERGATE_MASTER_KEY or CIPHERGATE_MASTER_KEY_FILE to replace it)`);
}

/** The data dir and its generated key are this process user's alone, or start-up stops here. */
function refuseShared(target: string, what: string): void {
  try {
    refuseSharedPath(target, what);
  } catch (error) {
    if (error instanceof SharedPathError) throw new KeyProviderError(error.message);
    throw error;
  }
}

function writeExclusive(file: string, contents: string): void {
  const fd = fs.openSync(file, 'wx', PRIVATE_FILE_MODE);
  try {
    fs.fchmodSync(fd, PRIVATE_FILE_MODE); // the open mode is filtered by umask; make the result explicit
    fs.writeFileSync(fd, contents);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

// Without this a power loss right after the first start could drop the new directory
// entry while sealed rows already exist in the database.
function syncDirectory(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    // Not every platform can fsync a directory; the key file itself is already synced.
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

function toText(value: Buffer | string): string {
  return typeof value === 'string' ? value : value.toString('utf8');
}

function errorCode(error: unknown): string {
  return (error as NodeJS.ErrnoException | undefined)?.code ?? 'unknown error';
}
