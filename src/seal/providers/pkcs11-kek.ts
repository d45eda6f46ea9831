/**
 * The KEK as an object inside the PKCS#11 token: finding it by label, generating it with the
 * attributes that keep it inside the HSM, and refusing one whose value could leave it.
 * Wrapping and unwrapping with it live in pkcs11.ts.
 */
import { randomBytes } from 'node:crypto';
import { endianness } from 'node:os';
import pkcs11js from 'pkcs11js';
import type { PKCS11, Template } from 'pkcs11js';
import { KeyProviderError } from './key-provider.js';
import { errorSummary, type Handle, type UserSession } from './pkcs11-session.js';

/** AES-256. */
export const KEK_BYTES = 32;

export function findKeks(lib: PKCS11, session: Handle, keyLabel: string): Handle[] {
  const template: Template = [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
    { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
    { type: pkcs11js.CKA_LABEL, value: keyLabel },
  ];
  try {
    lib.C_FindObjectsInit(session, template);
    try {
      const handles: Handle[] = [];
      for (;;) {
        const batch = lib.C_FindObjects(session, 8);
        if (batch.length === 0) return handles;
        handles.push(...batch);
      }
    } finally {
      lib.C_FindObjectsFinal(session);
    }
  } catch (error) {
    throw new KeyProviderError(`CIPHERGATE_PKCS11_KEY_LABEL: searching for key ${JSON.stringify(keyLabel)} failed (${errorSummary(error)})`);
  }
}

/**
 * Generates the KEK inside the token. Token object (survives the session), private (needs
 * the login to be seen), sensitive and non-extractable (its value can never be read or
 * wrapped out), good only for encrypt/decrypt (the GCM wrap), nothing else.
 */
export function generateKek(lib: PKCS11, session: UserSession, keyLabel: string): Handle {
  const template: Template = [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
    { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
    { type: pkcs11js.CKA_VALUE_LEN, value: KEK_BYTES },
    { type: pkcs11js.CKA_LABEL, value: keyLabel },
    { type: pkcs11js.CKA_ID, value: randomBytes(16) },
    { type: pkcs11js.CKA_TOKEN, value: true },
    { type: pkcs11js.CKA_PRIVATE, value: true },
    { type: pkcs11js.CKA_SENSITIVE, value: true },
    { type: pkcs11js.CKA_EXTRACTABLE, value: false },
    { type: pkcs11js.CKA_ENCRYPT, value: true },
    { type: pkcs11js.CKA_DECRYPT, value: true },
    { type: pkcs11js.CKA_WRAP, value: false },
    { type: pkcs11js.CKA_UNWRAP, value: false },
    { type: pkcs11js.CKA_SIGN, value: false },
    { type: pkcs11js.CKA_VERIFY, value: false },
    { type: pkcs11js.CKA_DERIVE, value: false },
  ];
  let key: Handle;
  try {
    key = lib.C_GenerateKey(session.handle, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, template);
  } catch (error) {
    throw new KeyProviderError(
      `CIPHERGATE_PKCS11_KEY_LABEL: token ${JSON.stringify(session.tokenLabel)} refused to generate AES-256 key ${JSON.stringify(keyLabel)} (${errorSummary(error)})`,
    );
  }
  // Two instances starting at once can both find no key and both generate one. Whoever sees
  // a second key withdraws its own before anything is wrapped under it, so the label ends up
  // naming one key; if both withdraw, both fail and the next start creates it afresh.
  if (findKeks(lib, session.handle, keyLabel).length === 1) return key;
  try {
    lib.C_DestroyObject(session.handle, key);
  } catch {
    // Left behind, the extra key makes the label ambiguous, which the next open reports.
  }
  const remaining = findKeks(lib, session.handle, keyLabel);
  if (remaining.length === 1 && remaining[0]) return remaining[0];
  throw new KeyProviderError(
    `CIPHERGATE_PKCS11_KEY_LABEL: another process created key ${JSON.stringify(keyLabel)} on token ${JSON.stringify(session.tokenLabel)} at the same moment; start again`,
  );
}

/** Refuses a KEK whose value could leave the HSM, or that cannot do the job. */
export function requireKekPolicy(lib: PKCS11, session: UserSession, key: Handle, keyLabel: string): void {
  let attributes: ReturnType<typeof readKeyAttributes>;
  try {
    attributes = readKeyAttributes(lib, session.handle, key);
  } catch (error) {
    throw new KeyProviderError(`CIPHERGATE_PKCS11_KEY_LABEL: cannot read the attributes of key ${JSON.stringify(keyLabel)} (${errorSummary(error)})`);
  }
  const name = `key ${JSON.stringify(keyLabel)} on token ${JSON.stringify(session.tokenLabel)}`;
  if (attributes.extractable) {
    throw new KeyProviderError(
      `CIPHERGATE_PKCS11_KEY_LABEL: ${name} is extractable; the KEK must be non-extractable (CKA_EXTRACTABLE false) so it can never leave the HSM — create a new one with \`ciphergate keys init-hsm\``,
    );
  }
  // A key that is not sensitive can have its value read with C_GetAttributeValue, extractable or not.
  if (!attributes.sensitive) {
    throw new KeyProviderError(
      `CIPHERGATE_PKCS11_KEY_LABEL: ${name} is not sensitive; the KEK must be sensitive (CKA_SENSITIVE true) so its value can never be read — create a new one with \`ciphergate keys init-hsm\``,
    );
  }
  if (attributes.keyBits !== KEK_BYTES * 8) {
    throw new KeyProviderError(`CIPHERGATE_PKCS11_KEY_LABEL: ${name} is AES-${attributes.keyBits}; the KEK must be AES-256`);
  }
  if (!attributes.canEncrypt || !attributes.canDecrypt) {
    throw new KeyProviderError(`CIPHERGATE_PKCS11_KEY_LABEL: ${name} is not allowed to encrypt and decrypt (CKA_ENCRYPT, CKA_DECRYPT)`);
  }
}

export function readKeyAttributes(lib: PKCS11, session: Handle, key: Handle) {
  const types = [
    pkcs11js.CKA_ID,
    pkcs11js.CKA_VALUE_LEN,
    pkcs11js.CKA_TOKEN,
    pkcs11js.CKA_PRIVATE,
    pkcs11js.CKA_SENSITIVE,
    pkcs11js.CKA_EXTRACTABLE,
    pkcs11js.CKA_ALWAYS_SENSITIVE,
    pkcs11js.CKA_NEVER_EXTRACTABLE,
    pkcs11js.CKA_ENCRYPT,
    pkcs11js.CKA_DECRYPT,
  ];
  const values = new Map(lib.C_GetAttributeValue(session, key, types.map((type) => ({ type }))).map((a) => [a.type, a.value]));
  const flag = (type: number): boolean => {
    const value = values.get(type);
    return value !== undefined && value.length > 0 && value[0] !== 0;
  };
  return {
    id: values.get(pkcs11js.CKA_ID)?.toString('hex') ?? '',
    keyBits: readUlong(values.get(pkcs11js.CKA_VALUE_LEN)) * 8,
    token: flag(pkcs11js.CKA_TOKEN),
    private: flag(pkcs11js.CKA_PRIVATE),
    sensitive: flag(pkcs11js.CKA_SENSITIVE),
    extractable: flag(pkcs11js.CKA_EXTRACTABLE),
    alwaysSensitive: flag(pkcs11js.CKA_ALWAYS_SENSITIVE),
    neverExtractable: flag(pkcs11js.CKA_NEVER_EXTRACTABLE),
    canEncrypt: flag(pkcs11js.CKA_ENCRYPT),
    canDecrypt: flag(pkcs11js.CKA_DECRYPT),
  };
}

/** CK_ULONG as pkcs11js returns it: the raw native-endian bytes (8 on LP64, 4 on Windows). */
function readUlong(value: Buffer | undefined): number {
  if (!value || value.length === 0) return 0;
  const littleEndian = endianness() === 'LE';
  if (value.length >= 8) return Number(littleEndian ? value.readBigUInt64LE(0) : value.readBigUInt64BE(0));
  if (value.length >= 4) return littleEndian ? value.readUInt32LE(0) : value.readUInt32BE(0);
  return value[0] ?? 0;
}
