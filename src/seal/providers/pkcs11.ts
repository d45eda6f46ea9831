/**
 * The `pkcs11` key provider: the KEK is an AES-256 secret key inside an HSM (any PKCS#11
 * module; tested with SoftHSM2), generated there, sensitive and non-extractable. DEKs are
 * wrapped and unwrapped by the token with CKM_AES_GCM; the KEK's bytes never enter this
 * process.
 *
 * Wrapped DEK layout (61 bytes, see docs/hsm.md):
 *
 *   offset  size  field
 *   0       1     format, 0x01 = AES-256-GCM by the token, AAD as below
 *   1       12    IV
 *   13      32    encrypted DEK
 *   45      16    GCM tag
 *
 * AAD = "ciphergate/kek-wrap/v1" ‖ uint32be(byte length of scope) ‖ scope (UTF-8) ‖ uint32be(version)
 *
 * The scope is length-prefixed so that no two different contexts encode to the same bytes.
 * The "v1" in the AAD ties the authenticated context to format 0x01, so a later format
 * cannot be confused with this one even if its bytes happened to parse.
 *
 * Over 400 lines on purpose: it is one KeyProvider whose wrap, unwrap, reconnect-after-a-lost-
 * session and the wrapped layout above must be read together; the token session
 * (pkcs11-session.ts) and finding or making the KEK (pkcs11-kek.ts) are already their own modules.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import type { AesGCM, Mechanism, PKCS11 } from 'pkcs11js';
import { KeyProviderError, KeyUnwrapError, type KeyProvider, type WrapContext } from './key-provider.js';
import { findKeks, generateKek, readKeyAttributes, requireKekPolicy } from './pkcs11-kek.js';
import {
  acquireModule,
  ckr,
  closeUserSession,
  errorSummary,
  findTokenSlot,
  openUserSession,
  releaseModule,
  type Handle,
  type LoadedModule,
  type UserSession,
} from './pkcs11-session.js';

export interface Pkcs11Options {
  /** CIPHERGATE_PKCS11_MODULE: path of the PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so. */
  modulePath: string;
  /** CIPHERGATE_PKCS11_TOKEN_LABEL */
  tokenLabel: string;
  /** CIPHERGATE_PKCS11_PIN (or _FILE): the token's user PIN. */
  pin: string;
  /** CIPHERGATE_PKCS11_KEY_LABEL: CKA_LABEL of the AES-256 KEK. */
  keyLabel: string;
}

export interface OpenPkcs11Options extends Pkcs11Options {
  /** Generate the KEK inside the token when no key has the label. Default false. */
  createKeyIfMissing?: boolean;
}

/** What the token says about the KEK; for `keys status` and tests. */
export interface Pkcs11KeyDescription {
  tokenLabel: string;
  keyLabel: string;
  /** CKA_ID in hex ('' when the key has none). */
  id: string;
  keyBits: number;
  token: boolean;
  private: boolean;
  sensitive: boolean;
  extractable: boolean;
  /** True when the key has been sensitive since it was made (generated in the token, not imported in the clear). */
  alwaysSensitive: boolean;
  /** True when the key has never been extractable, so no wrapped copy of it can exist. */
  neverExtractable: boolean;
  canEncrypt: boolean;
  canDecrypt: boolean;
}

/** Opens the token, logs in, and finds (or, if asked, generates) the KEK. */
export async function openPkcs11KeyProvider(options: OpenPkcs11Options): Promise<Pkcs11KeyProvider> {
  const target = validateOptions(options);
  const module = acquireModule(target.modulePath);
  try {
    const connection = connect(module, target, options.createKeyIfMissing === true);
    return new Pkcs11KeyProvider(module, target, connection);
  } catch (error) {
    releaseModule(module);
    throw error;
  }
}

/**
 * For `ciphergate keys init-hsm`: makes sure the token holds a usable KEK with this label,
 * generating it inside the token if there is none. Idempotent: an existing key that meets
 * the policy is kept (`created: false`); one that does not is refused.
 */
export async function createPkcs11Kek(
  options: Pkcs11Options,
): Promise<{ kekId: string; tokenLabel: string; keyLabel: string; created: boolean }> {
  const provider = await openPkcs11KeyProvider({ ...options, createKeyIfMissing: true });
  try {
    await provider.check();
    return { kekId: provider.kekId, tokenLabel: provider.tokenLabel, keyLabel: provider.keyLabel, created: provider.createdKey };
  } finally {
    await provider.close();
  }
}

export class Pkcs11KeyProvider implements KeyProvider {
  readonly kind = 'pkcs11' as const;
  readonly kekId: string;
  readonly tokenLabel: string;
  readonly keyLabel: string;
  /** True when this open generated the KEK (createKeyIfMissing and no key had the label). */
  readonly createdKey: boolean;

  readonly #module: LoadedModule;
  /** Kept, PIN included, so that a session the HSM dropped can be re-established without a restart. */
  readonly #target: Target;
  #connection: Connection | undefined;
  #closed = false;

  /** Use {@link openPkcs11KeyProvider}. */
  constructor(module: LoadedModule, target: Target, connection: Connection) {
    this.#module = module;
    this.#target = target;
    this.#connection = connection;
    this.kekId = `pkcs11:${target.keyLabel}`;
    this.tokenLabel = target.tokenLabel;
    this.keyLabel = target.keyLabel;
    this.createdKey = connection.created;
  }

  async wrapKey(dek: Buffer, context: WrapContext): Promise<Buffer> {
    if (!Buffer.isBuffer(dek) || dek.length !== DEK_BYTES) {
      throw new TypeError(`wrapKey expects a ${DEK_BYTES}-byte DEK`);
    }
    const aad = encodeContext(context);
    // The IV comes from node:crypto rather than C_GenerateRandom to save a round trip to the
    // HSM per wrap; 96 random bits are safe here because a KEK wraps few DEKs (one per tenant
    // and version), far below the 2^32 messages per key that random GCM IVs allow.
    const iv = randomBytes(IV_BYTES);
    const sealed = this.#run(
      ({ lib, session, key }) => {
        lib.C_EncryptInit(session, gcm(iv, aad), key);
        return Buffer.from(lib.C_Encrypt(session, dek, Buffer.alloc(dek.length + TAG_BYTES)));
      },
      (error) => new KeyProviderError(`PKCS#11 wrap with KEK ${JSON.stringify(this.keyLabel)} failed (${errorSummary(error)})`),
    );
    if (sealed.length !== DEK_BYTES + TAG_BYTES) {
      throw new KeyProviderError(
        `PKCS#11 wrap with KEK ${JSON.stringify(this.keyLabel)} returned ${sealed.length} bytes, expected ${DEK_BYTES + TAG_BYTES}`,
      );
    }
    return Buffer.concat([Buffer.of(FORMAT_V1), iv, sealed]);
  }

  async unwrapKey(wrapped: Buffer, context: WrapContext): Promise<Buffer> {
    const aad = encodeContext(context);
    if (!Buffer.isBuffer(wrapped) || wrapped.length !== WRAPPED_BYTES) {
      throw new KeyUnwrapError(`wrapped DEK must be ${WRAPPED_BYTES} bytes for the pkcs11 provider`);
    }
    if (wrapped[0] !== FORMAT_V1) {
      throw new KeyUnwrapError(`wrapped DEK has unknown format ${wrapped[0]} for the pkcs11 provider`);
    }
    const iv = wrapped.subarray(1, 1 + IV_BYTES);
    const sealed = wrapped.subarray(1 + IV_BYTES);
    const scratch = Buffer.alloc(sealed.length);
    try {
      const dek = this.#run(
        ({ lib, session, key }) => {
          lib.C_DecryptInit(session, gcm(iv, aad), key);
          return Buffer.from(lib.C_Decrypt(session, sealed, scratch));
        },
        (error) => {
          const code = ckr(error);
          // Tokens report a failed GCM tag check differently (CKR_ENCRYPTED_DATA_INVALID by the
          // standard, CKR_GENERAL_ERROR from SoftHSM2), so everything that is not about the
          // HSM's own state means "this blob does not open here".
          if (code !== undefined && !NOT_THE_BLOB.has(code)) {
            return new KeyUnwrapError(`wrapped DEK does not open under KEK ${JSON.stringify(this.keyLabel)} in this context`);
          }
          return new KeyProviderError(`PKCS#11 unwrap with KEK ${JSON.stringify(this.keyLabel)} failed (${errorSummary(error)})`);
        },
      );
      if (dek.length !== DEK_BYTES) {
        dek.fill(0);
        throw new KeyUnwrapError(`wrapped DEK opened to ${dek.length} bytes, expected ${DEK_BYTES}`);
      }
      return dek;
    } finally {
      scratch.fill(0);
    }
  }

  /** Wraps and unwraps a random value through the token: proves session, login and key all work. */
  async check(): Promise<void> {
    const probe = randomBytes(DEK_BYTES);
    try {
      const wrapped = await this.wrapKey(probe, CHECK_CONTEXT);
      const back = await this.unwrapKey(wrapped, CHECK_CONTEXT);
      if (!timingSafeEqual(back, probe)) {
        throw new KeyProviderError(`PKCS#11 KEK ${JSON.stringify(this.keyLabel)} failed its self-check: the round trip changed the value`);
      }
    } catch (error) {
      if (error instanceof KeyProviderError) throw error;
      throw new KeyProviderError(
        `PKCS#11 KEK ${JSON.stringify(this.keyLabel)} failed its self-check (${error instanceof Error ? error.message : String(error)})`,
      );
    }
  }

  /** Reads the KEK's attributes from the token (never its value). */
  async describeKey(): Promise<Pkcs11KeyDescription> {
    const attributes = this.#run(
      ({ lib, session, key }) => readKeyAttributes(lib, session, key),
      (error) => new KeyProviderError(`cannot read the attributes of KEK ${JSON.stringify(this.keyLabel)} (${errorSummary(error)})`),
    );
    return { tokenLabel: this.tokenLabel, keyLabel: this.keyLabel, ...attributes };
  }

  /** Logs out (if no other provider in the process still needs the login), closes the session, finalises the module. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const connection = this.#connection;
    this.#connection = undefined;
    if (connection) closeUserSession(connection.session);
    releaseModule(this.#module);
  }

  /**
   * Runs one token operation. A session or login the HSM dropped (network HSM restart, token
   * reinserted, C_CloseAllSessions elsewhere in the process) is re-established once and the
   * operation retried; anything else is mapped by `toError`.
   */
  #run<T>(operation: (handles: { lib: PKCS11; session: Handle; key: Handle }) => T, toError: (error: unknown) => Error): T {
    if (this.#closed) {
      throw new KeyProviderError(`the PKCS#11 key provider for KEK ${JSON.stringify(this.keyLabel)} is closed`);
    }
    let connection = this.#connection ?? this.#reconnect();
    try {
      return operation({ lib: this.#module.lib, session: connection.session.handle, key: connection.key });
    } catch (error) {
      const code = ckr(error);
      if (code === undefined || !SESSION_LOST.has(code)) throw toError(error);
    }
    connection = this.#reconnect();
    try {
      return operation({ lib: this.#module.lib, session: connection.session.handle, key: connection.key });
    } catch (error) {
      throw toError(error);
    }
  }

  #reconnect(): Connection {
    const stale = this.#connection;
    this.#connection = undefined;
    if (stale) closeUserSession(stale.session);
    try {
      this.#connection = connect(this.#module, this.#target, false);
    } catch (error) {
      if (error instanceof KeyProviderError) {
        throw new KeyProviderError(`lost the PKCS#11 session and could not re-establish it: ${error.message}`);
      }
      throw error;
    }
    return this.#connection;
  }
}

// ---------------------------------------------------------------------------------------------

const FORMAT_V1 = 0x01;
const DEK_BYTES = 32;
/** 96 bits: the IV length GCM is defined for without an extra GHASH pass, and what every HSM accepts. */
const IV_BYTES = 12;
const TAG_BYTES = 16;
const WRAPPED_BYTES = 1 + IV_BYTES + DEK_BYTES + TAG_BYTES;
const AAD_DOMAIN = Buffer.from('ciphergate/kek-wrap/v1', 'ascii');
const UINT32_MAX = 0xffff_ffff;
/** A scope no tenant id can take (tenant ids carry no slash), so a probe never resembles a real DEK. */
const CHECK_CONTEXT: WrapContext = { scope: 'ciphergate/check', version: 0 };

/** Errors after which the session (or its login, or the key handle) is gone, but the token may still be there. */
const SESSION_LOST = new Set([
  'CKR_SESSION_HANDLE_INVALID',
  'CKR_SESSION_CLOSED',
  'CKR_USER_NOT_LOGGED_IN',
  'CKR_KEY_HANDLE_INVALID',
  'CKR_OBJECT_HANDLE_INVALID',
  'CKR_OPERATION_ACTIVE',
  'CKR_DEVICE_REMOVED',
  'CKR_TOKEN_NOT_PRESENT',
]);

/** Failures that say something about the HSM or our use of it, never about the wrapped bytes. */
const NOT_THE_BLOB = new Set([
  ...SESSION_LOST,
  'CKR_CRYPTOKI_NOT_INITIALIZED',
  'CKR_DEVICE_ERROR',
  'CKR_DEVICE_MEMORY',
  'CKR_HOST_MEMORY',
  'CKR_FUNCTION_CANCELED',
  'CKR_FUNCTION_NOT_SUPPORTED',
  'CKR_MECHANISM_INVALID',
  'CKR_MECHANISM_PARAM_INVALID',
  'CKR_KEY_FUNCTION_NOT_PERMITTED',
  'CKR_KEY_TYPE_INCONSISTENT',
  'CKR_KEY_SIZE_RANGE',
  'CKR_BUFFER_TOO_SMALL',
  'CKR_ARGUMENTS_BAD',
]);

type Target = Pkcs11Options;

interface Connection {
  readonly session: UserSession;
  readonly key: Handle;
  readonly created: boolean;
}

function validateOptions(options: OpenPkcs11Options): Target {
  const modulePath = options.modulePath?.trim() ?? '';
  const tokenLabel = options.tokenLabel?.trim() ?? '';
  const keyLabel = options.keyLabel ?? '';
  if (modulePath === '') throw new KeyProviderError('CIPHERGATE_PKCS11_MODULE: empty; set the path of the PKCS#11 module');
  if (tokenLabel === '') throw new KeyProviderError('CIPHERGATE_PKCS11_TOKEN_LABEL: empty; set the label of the token that holds the KEK');
  // CK_TOKEN_INFO.label is a fixed 32-byte field, so a longer label can never match.
  if (Buffer.byteLength(tokenLabel, 'utf8') > 32) {
    throw new KeyProviderError(`CIPHERGATE_PKCS11_TOKEN_LABEL: ${JSON.stringify(tokenLabel)} is longer than the 32 bytes a token label can hold`);
  }
  if (keyLabel.trim() === '') throw new KeyProviderError('CIPHERGATE_PKCS11_KEY_LABEL: empty; set the label of the KEK inside the token');
  if (typeof options.pin !== 'string' || options.pin === '') {
    throw new KeyProviderError('CIPHERGATE_PKCS11_PIN: empty; set the user PIN of the token');
  }
  return { modulePath, tokenLabel, keyLabel, pin: options.pin };
}

/** Finds the token, logs in, and finds (or generates) the KEK, checking it meets the policy. */
function connect(module: LoadedModule, target: Target, createKeyIfMissing: boolean): Connection {
  const slot = findTokenSlot(module, target.tokenLabel);
  requireGcm(module, slot, target.tokenLabel);
  const session = openUserSession(module, slot, target.tokenLabel, target.pin);
  try {
    const lib = module.lib;
    const found = findKeks(lib, session.handle, target.keyLabel);
    if (found.length > 1) {
      throw new KeyProviderError(
        `CIPHERGATE_PKCS11_KEY_LABEL: ${found.length} AES keys are labelled ${JSON.stringify(target.keyLabel)} on token ${JSON.stringify(session.tokenLabel)}; the label must name exactly one key`,
      );
    }
    let key = found[0];
    let created = false;
    if (!key) {
      if (!createKeyIfMissing) {
        throw new KeyProviderError(
          `CIPHERGATE_PKCS11_KEY_LABEL: no AES key labelled ${JSON.stringify(target.keyLabel)} on token ${JSON.stringify(session.tokenLabel)}; create it with \`ciphergate keys init-hsm\``,
        );
      }
      key = generateKek(lib, session, target.keyLabel);
      created = true;
    }
    requireKekPolicy(lib, session, key, target.keyLabel);
    return { session, key, created };
  } catch (error) {
    closeUserSession(session);
    throw error;
  }
}

function requireGcm(module: LoadedModule, slot: Handle, tokenLabel: string): void {
  let flags = 0;
  try {
    if (module.lib.C_GetMechanismList(slot).includes(pkcs11js.CKM_AES_GCM)) {
      flags = module.lib.C_GetMechanismInfo(slot, pkcs11js.CKM_AES_GCM).flags;
    }
  } catch (error) {
    throw new KeyProviderError(`CIPHERGATE_PKCS11_TOKEN_LABEL: cannot list the mechanisms of token ${JSON.stringify(tokenLabel)} (${errorSummary(error)})`);
  }
  const needed = pkcs11js.CKF_ENCRYPT | pkcs11js.CKF_DECRYPT;
  if ((flags & needed) !== needed) {
    throw new KeyProviderError(
      `CIPHERGATE_PKCS11_MODULE: token ${JSON.stringify(tokenLabel)} does not offer CKM_AES_GCM encryption and decryption, which the pkcs11 key provider needs`,
    );
  }
}

function gcm(iv: Buffer, aad: Buffer): Mechanism {
  // CK_PARAMS_GCM is the PKCS#11 2.40 CK_GCM_PARAMS with ulIvBits, the layout SoftHSM2 2.6 and
  // current HSMs expect; the older 2.30 layout (CK_PARAMS_AES_GCM) lacks that field.
  const parameter: AesGCM = { type: pkcs11js.CK_PARAMS_GCM, iv, ivBits: IV_BYTES * 8, aad, tagBits: TAG_BYTES * 8 };
  return { mechanism: pkcs11js.CKM_AES_GCM, parameter };
}

function encodeContext(context: WrapContext): Buffer {
  const { scope, version } = context ?? ({} as Partial<WrapContext>);
  if (typeof scope !== 'string' || scope === '') {
    throw new TypeError('WrapContext.scope must be a non-empty string');
  }
  if (typeof version !== 'number' || !Number.isInteger(version) || version < 0 || version > UINT32_MAX) {
    throw new TypeError('WrapContext.version must be an integer from 0 to 2^32-1');
  }
  const scopeBytes = Buffer.from(scope, 'utf8');
  const scopeLength = Buffer.alloc(4);
  scopeLength.writeUInt32BE(scopeBytes.length);
  const versionBytes = Buffer.alloc(4);
  versionBytes.writeUInt32BE(version);
  return Buffer.concat([AAD_DOMAIN, scopeLength, scopeBytes, versionBytes]);
}
