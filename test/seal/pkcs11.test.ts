import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createDecipheriv, randomBytes } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import type { PKCS11 } from 'pkcs11js';
import { KeyProviderError, KeyUnwrapError, type WrapContext } from '../../src/seal/providers/key-provider.js';
import {
  createPkcs11Kek,
  openPkcs11KeyProvider,
  type OpenPkcs11Options,
  type Pkcs11KeyProvider,
} from '../../src/seal/providers/pkcs11.js';
import { createSoftHsmToken, softHsmAvailable, type SoftHsmToken } from '../helpers/softhsm.js';

// pkcs11js initialises a module once per process and SoftHSM2 reads SOFTHSM2_CONF and scans
// its token directory only at that moment, so every token this file uses lives under one
// configuration, made before the first open, and each case closes its providers.
const TOKEN_A = 'cg-test-a';
const TOKEN_B = 'cg-test-b';
const KEY_MAIN = 'kek-main';
const PIN = 'user-pin-7Qx2Lm';
const SO_PIN = 'so-pin-4Lm9Tz';
const WRONG_PIN = 'wrong-pin-9Zr1Kd';
const CONTEXT: WrapContext = { scope: 'tenant-1', version: 1 };
/** PKCS#11 session state of a read-only session while the user is logged in (pkcs11js exports no CKS_*). */
const CKS_RO_USER_FUNCTIONS = 1;

const hsm = softHsmAvailable();
let token: SoftHsmToken | undefined;

before(() => {
  if (!hsm.ok) return;
  token = createSoftHsmToken({ label: TOKEN_A, pin: PIN, soPin: SO_PIN });
  token.addToken({ label: TOKEN_B, pin: PIN, soPin: SO_PIN });
  process.env.SOFTHSM2_CONF = token.configPath;
});

after(() => token?.cleanup());

/** Runs the case when SoftHSM2 is here; otherwise skips with the reason, or fails in CI. */
function hsmTest(name: string, fn: () => Promise<void>): void {
  if (hsm.ok) {
    test(name, fn);
  } else if (process.env.CI === 'true') {
    test(name, () => assert.fail(`SoftHSM2 is required in CI: ${hsm.reason}`));
  } else {
    test(name, { skip: hsm.reason }, fn);
  }
}

function options(overrides: Partial<OpenPkcs11Options> = {}): OpenPkcs11Options {
  assert.ok(token);
  return { modulePath: token.modulePath, tokenLabel: TOKEN_A, pin: PIN, keyLabel: KEY_MAIN, ...overrides };
}

async function withProvider<T>(
  overrides: Partial<OpenPkcs11Options>,
  fn: (provider: Pkcs11KeyProvider) => Promise<T>,
): Promise<T> {
  const provider = await openPkcs11KeyProvider(options(overrides));
  try {
    return await fn(provider);
  } finally {
    await provider.close();
  }
}

async function openError(overrides: Partial<OpenPkcs11Options>): Promise<KeyProviderError> {
  try {
    const provider = await openPkcs11KeyProvider(options(overrides));
    await provider.close();
  } catch (error) {
    assert.ok(error instanceof KeyProviderError, `expected KeyProviderError, got ${String(error)}`);
    assert.ok(!error.message.includes('\n'), 'the message is one line');
    return error;
  }
  assert.fail('open succeeded');
}

function assertNoPin(error: Error): void {
  const everything = `${error.message}\n${error.stack ?? ''}\n${JSON.stringify(error)}\n${String(error.cause ?? '')}`;
  for (const pin of [PIN, WRONG_PIN, SO_PIN]) {
    assert.ok(!everything.includes(pin), 'a PIN appears in the error');
  }
}

/**
 * A second, independent pkcs11js handle on the same module, for looking at the token the way
 * another program would. It finalises the module only if it was the one to initialise it.
 */
function withRawModule<T>(fn: (lib: PKCS11) => T): T {
  assert.ok(token);
  const lib = new pkcs11js.PKCS11();
  lib.load(token.modulePath);
  let initialised = false;
  try {
    lib.C_Initialize();
    initialised = true;
  } catch (error) {
    if (!(error instanceof Error) || !error.message.startsWith('CKR_CRYPTOKI_ALREADY_INITIALIZED')) throw error;
  }
  try {
    return fn(lib);
  } finally {
    if (initialised) lib.C_Finalize();
    lib.close();
  }
}

function slotOf(lib: PKCS11, tokenLabel: string): Buffer {
  const slot = lib.C_GetSlotList(true).find((candidate) => lib.C_GetTokenInfo(candidate).label.trim() === tokenLabel);
  assert.ok(slot, `token ${tokenLabel} present`);
  return slot;
}

/** A logged-in R/W session; logs in only if nobody in the process has, and undoes only that. */
function withRawSession<T>(tokenLabel: string, fn: (lib: PKCS11, session: Buffer) => T): T {
  return withRawModule((lib) => {
    const session = lib.C_OpenSession(slotOf(lib, tokenLabel), pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    let loggedIn = false;
    try {
      try {
        lib.C_Login(session, pkcs11js.CKU_USER, PIN);
        loggedIn = true;
      } catch (error) {
        if (!(error instanceof Error) || !error.message.startsWith('CKR_USER_ALREADY_LOGGED_IN')) throw error;
      }
      return fn(lib, session);
    } finally {
      if (loggedIn) lib.C_Logout(session);
      lib.C_CloseSession(session);
    }
  });
}

function findKeyHandle(lib: PKCS11, session: Buffer, keyLabel: string): Buffer {
  lib.C_FindObjectsInit(session, [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
    { type: pkcs11js.CKA_LABEL, value: keyLabel },
  ]);
  try {
    const handles = lib.C_FindObjects(session, 4);
    assert.equal(handles.length, 1, `exactly one key labelled ${keyLabel}`);
    return handles[0]!;
  } finally {
    lib.C_FindObjectsFinal(session);
  }
}

function makeAesKey(tokenLabel: string, keyLabel: string, attributes: { sensitive: boolean; extractable: boolean }): void {
  withRawSession(tokenLabel, (lib, session) => {
    lib.C_GenerateKey(session, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
      { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
      { type: pkcs11js.CKA_LABEL, value: keyLabel },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_SENSITIVE, value: attributes.sensitive },
      { type: pkcs11js.CKA_EXTRACTABLE, value: attributes.extractable },
      { type: pkcs11js.CKA_ENCRYPT, value: true },
      { type: pkcs11js.CKA_DECRYPT, value: true },
    ]);
  });
}

// The first case creates the KEK that the rest use; node:test runs top-level tests in order.
hsmTest('createPkcs11Kek generates the KEK in the token and is idempotent', async () => {
  const first = await createPkcs11Kek(options());
  assert.deepEqual(first, { kekId: `pkcs11:${KEY_MAIN}`, tokenLabel: TOKEN_A, keyLabel: KEY_MAIN, created: true });
  const second = await createPkcs11Kek(options());
  assert.equal(second.created, false);
});

hsmTest('wraps and unwraps random 32-byte DEKs', async () => {
  await withProvider({}, async (provider) => {
    assert.equal(provider.kind, 'pkcs11');
    assert.equal(provider.kekId, `pkcs11:${KEY_MAIN}`);
    for (let index = 0; index < 20; index += 1) {
      const dek = randomBytes(32);
      const context = { scope: index % 2 === 0 ? `tenant-${index}` : 'system', version: index };
      const wrapped = await provider.wrapKey(dek, context);
      assert.equal(wrapped.length, 61);
      assert.equal(wrapped[0], 0x01);
      assert.ok(!wrapped.includes(dek), 'the DEK does not appear in the wrapped value');
      assert.deepEqual(await provider.unwrapKey(wrapped, context), dek);
    }
    const dek = randomBytes(32);
    const once = await provider.wrapKey(dek, CONTEXT);
    const twice = await provider.wrapKey(dek, CONTEXT);
    assert.notDeepEqual(once, twice, 'a fresh IV per wrap');
  });
});

hsmTest('the wrapped DEK is AES-256-GCM with the documented layout and AAD', async () => {
  // Only a key imported with a known value lets the layout be checked from outside the token;
  // it is still sensitive and non-extractable, so the provider accepts it.
  const kekValue = randomBytes(32);
  withRawSession(TOKEN_A, (lib, session) => {
    lib.C_CreateObject(session, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
      { type: pkcs11js.CKA_VALUE, value: kekValue },
      { type: pkcs11js.CKA_LABEL, value: 'kek-known' },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: false },
      { type: pkcs11js.CKA_ENCRYPT, value: true },
      { type: pkcs11js.CKA_DECRYPT, value: true },
    ]);
  });
  await withProvider({ keyLabel: 'kek-known' }, async (provider) => {
    assert.equal((await provider.describeKey()).alwaysSensitive, false, 'an imported key is told apart');
    const dek = randomBytes(32);
    const scope = 'tenant-ü';
    const wrapped = await provider.wrapKey(dek, { scope, version: 258 });
    const scopeBytes = Buffer.from(scope, 'utf8');
    const aad = Buffer.concat([
      Buffer.from('ciphergate/kek-wrap/v1', 'ascii'),
      Buffer.from([0, 0, 0, scopeBytes.length]),
      scopeBytes,
      Buffer.from([0, 0, 1, 2]),
    ]);
    assert.equal(wrapped[0], 0x01);
    const decipher = createDecipheriv('aes-256-gcm', kekValue, wrapped.subarray(1, 13));
    decipher.setAAD(aad);
    decipher.setAuthTag(wrapped.subarray(45, 61));
    assert.deepEqual(Buffer.concat([decipher.update(wrapped.subarray(13, 45)), decipher.final()]), dek);
  });
});

hsmTest('the KEK is sensitive and not extractable', async () => {
  await withProvider({}, async (provider) => {
    const description = await provider.describeKey();
    assert.equal(description.extractable, false);
    assert.equal(description.sensitive, true);
    assert.equal(description.neverExtractable, true);
    assert.equal(description.alwaysSensitive, true);
    assert.equal(description.token, true);
    assert.equal(description.private, true);
    assert.equal(description.keyBits, 256);

    // Asked directly, as any other program holding the PIN would.
    withRawSession(TOKEN_A, (lib, session) => {
      const key = findKeyHandle(lib, session, KEY_MAIN);
      assert.throws(() => lib.C_GetAttributeValue(session, key, [{ type: pkcs11js.CKA_VALUE }]), /CKR_ATTRIBUTE_SENSITIVE/);
      const [extractable, sensitive] = lib.C_GetAttributeValue(session, key, [
        { type: pkcs11js.CKA_EXTRACTABLE },
        { type: pkcs11js.CKA_SENSITIVE },
      ]);
      assert.equal(extractable?.value[0], 0);
      assert.equal(sensitive?.value[0], 1);
      assert.throws(
        () => lib.C_SetAttributeValue(session, key, [{ type: pkcs11js.CKA_EXTRACTABLE, value: true }]),
        /CKR_ATTRIBUTE_READ_ONLY|CKR_ATTRIBUTE_VALUE_INVALID/,
      );
    });
  });
});

hsmTest('a tampered wrapped DEK is refused, never opened to garbage', async () => {
  await withProvider({}, async (provider) => {
    const wrapped = await provider.wrapKey(randomBytes(32), CONTEXT);
    // Every byte: format (0), IV (1–12), ciphertext (13–44), tag (45–60).
    for (let offset = 0; offset < wrapped.length; offset += 1) {
      for (const bit of [0x01, 0x80]) {
        const tampered = Buffer.from(wrapped);
        tampered[offset]! ^= bit;
        await assert.rejects(provider.unwrapKey(tampered, CONTEXT), KeyUnwrapError, `byte ${offset} bit ${bit}`);
      }
    }
    await assert.rejects(provider.unwrapKey(wrapped.subarray(0, 60), CONTEXT), KeyUnwrapError);
    await assert.rejects(provider.unwrapKey(Buffer.concat([wrapped, Buffer.of(0)]), CONTEXT), KeyUnwrapError);
    await assert.rejects(provider.unwrapKey(Buffer.alloc(0), CONTEXT), KeyUnwrapError);
    await assert.rejects(provider.unwrapKey(Buffer.alloc(61), CONTEXT), KeyUnwrapError);
    // The untouched value still opens: the failures above left the session usable.
    assert.equal((await provider.unwrapKey(wrapped, CONTEXT)).length, 32);
  });
});

hsmTest('a wrapped DEK does not open in another context', async () => {
  await withProvider({}, async (provider) => {
    const dek = randomBytes(32);
    const wrapped = await provider.wrapKey(dek, { scope: 'tenant-1', version: 7 });
    for (const other of [
      { scope: 'tenant-2', version: 7 },
      { scope: 'tenant-1', version: 8 },
      { scope: 'tenant-1', version: 0 },
      { scope: 'system', version: 7 },
      { scope: 'tenant-1 ', version: 7 },
      { scope: 'Tenant-1', version: 7 },
    ]) {
      await assert.rejects(provider.unwrapKey(wrapped, other), KeyUnwrapError, JSON.stringify(other));
    }
    assert.deepEqual(await provider.unwrapKey(wrapped, { scope: 'tenant-1', version: 7 }), dek);
  });
});

hsmTest('a different KEK cannot unwrap', async () => {
  const wrapped = await withProvider({}, (provider) => provider.wrapKey(randomBytes(32), CONTEXT));
  // Another key label on the same token.
  await withProvider({ keyLabel: 'kek-other', createKeyIfMissing: true }, async (other) => {
    assert.equal(other.createdKey, true);
    assert.equal(other.kekId, 'pkcs11:kek-other');
    await assert.rejects(other.unwrapKey(wrapped, CONTEXT), KeyUnwrapError);
  });
  // The same key label on another token is another key.
  await withProvider({ tokenLabel: TOKEN_B, createKeyIfMissing: true }, async (other) => {
    assert.equal(other.kekId, `pkcs11:${KEY_MAIN}`);
    await assert.rejects(other.unwrapKey(wrapped, CONTEXT), KeyUnwrapError);
  });
});

hsmTest('a wrong PIN is a KeyProviderError that names CIPHERGATE_PKCS11_PIN and not the PIN', async () => {
  const error = await openError({ pin: WRONG_PIN });
  assert.match(error.message, /^CIPHERGATE_PKCS11_PIN: the token refused the PIN/);
  assertNoPin(error);
  // The refusal logged nobody in: the right PIN still works afterwards.
  await withProvider({}, (provider) => provider.check());
});

hsmTest('a wrong PIN is refused even while this process is logged in to the token', async () => {
  await withProvider({}, async (provider) => {
    // The token would answer CKR_USER_ALREADY_LOGGED_IN without checking this PIN.
    const error = await openError({ pin: WRONG_PIN, keyLabel: 'kek-other' });
    assert.match(error.message, /^CIPHERGATE_PKCS11_PIN: /);
    assertNoPin(error);
    await provider.check();
  });
});

hsmTest('an unknown token label is a clear KeyProviderError', async () => {
  const error = await openError({ tokenLabel: 'no-such-token' });
  assert.match(error.message, /^CIPHERGATE_PKCS11_TOKEN_LABEL: no token labelled "no-such-token"/);
  assert.match(error.message, /"cg-test-a"/, 'lists the tokens that are there');
  assertNoPin(error);
});

hsmTest('an unknown key label is a clear KeyProviderError', async () => {
  const error = await openError({ keyLabel: 'no-such-key' });
  assert.match(error.message, /^CIPHERGATE_PKCS11_KEY_LABEL: no AES key labelled "no-such-key" on token "cg-test-a"/);
  assert.match(error.message, /keys init-hsm/);
  assertNoPin(error);
});

hsmTest('a module that cannot be loaded is a clear KeyProviderError', async () => {
  const missing = await openError({ modulePath: '/nonexistent/libnope.so' });
  assert.match(missing.message, /^CIPHERGATE_PKCS11_MODULE: cannot load the PKCS#11 module "\/nonexistent\/libnope\.so"/);
  const notPkcs11 = await openError({ modulePath: process.execPath });
  assert.match(notPkcs11.message, /^CIPHERGATE_PKCS11_MODULE: /);
  assert.ok(notPkcs11.message.includes(process.execPath));
});

hsmTest('empty settings are refused before the module is touched', async () => {
  assert.match((await openError({ modulePath: '' })).message, /^CIPHERGATE_PKCS11_MODULE: empty/);
  assert.match((await openError({ tokenLabel: ' ' })).message, /^CIPHERGATE_PKCS11_TOKEN_LABEL: empty/);
  assert.match((await openError({ keyLabel: '' })).message, /^CIPHERGATE_PKCS11_KEY_LABEL: empty/);
  assert.match((await openError({ pin: '' })).message, /^CIPHERGATE_PKCS11_PIN: empty/);
});

hsmTest('an extractable or non-sensitive key is refused as KEK', async () => {
  makeAesKey(TOKEN_A, 'kek-extractable', { sensitive: true, extractable: true });
  makeAesKey(TOKEN_A, 'kek-readable', { sensitive: false, extractable: false });
  const extractable = await openError({ keyLabel: 'kek-extractable' });
  assert.match(extractable.message, /^CIPHERGATE_PKCS11_KEY_LABEL: key "kek-extractable" .* is extractable; the KEK must be non-extractable/);
  const readable = await openError({ keyLabel: 'kek-readable' });
  assert.match(readable.message, /^CIPHERGATE_PKCS11_KEY_LABEL: key "kek-readable" .* is not sensitive/);
  // createKeyIfMissing never replaces or accepts such a key either.
  await assert.rejects(createPkcs11Kek(options({ keyLabel: 'kek-extractable' })), /is extractable/);
});

hsmTest('close() then reopen still unwraps earlier wrapped DEKs', async () => {
  const dek = randomBytes(32);
  const provider = await openPkcs11KeyProvider(options());
  const wrapped = await provider.wrapKey(dek, CONTEXT);
  await Promise.all([provider.close(), provider.close()]);
  await provider.close();
  await assert.rejects(provider.unwrapKey(wrapped, CONTEXT), KeyProviderError);
  await assert.rejects(provider.check(), KeyProviderError);
  // Every provider is closed, so the module was finalised: this reopen reads the token from disk.
  await withProvider({}, async (reopened) => {
    assert.deepEqual(await reopened.unwrapKey(wrapped, CONTEXT), dek);
  });
});

hsmTest('check() passes on a working KEK', async () => {
  await withProvider({}, (provider) => provider.check());
});

hsmTest('a session the HSM dropped is re-established', async () => {
  await withProvider({}, async (provider) => {
    const dek = randomBytes(32);
    const wrapped = await provider.wrapKey(dek, CONTEXT);
    // Closes every session of this process on the token and logs it out, as an HSM restart would.
    withRawModule((lib) => lib.C_CloseAllSessions(slotOf(lib, TOKEN_A)));
    assert.deepEqual(await provider.unwrapKey(wrapped, CONTEXT), dek);
    await provider.check();
  });
});

hsmTest('two providers on one token: closing one leaves the other logged in', async () => {
  const first = await openPkcs11KeyProvider(options());
  const second = await openPkcs11KeyProvider(options({ keyLabel: 'kek-other' }));
  try {
    await first.close();
    // Asked before `second` touches the token, so its reconnect logic cannot mask a logout.
    const state = withRawModule((lib) => {
      const session = lib.C_OpenSession(slotOf(lib, TOKEN_A), pkcs11js.CKF_SERIAL_SESSION);
      try {
        return lib.C_GetSessionInfo(session).state;
      } finally {
        lib.C_CloseSession(session);
      }
    });
    assert.equal(state, CKS_RO_USER_FUNCTIONS, 'still logged in');
    await second.check();
  } finally {
    await first.close();
    await second.close();
  }
});

hsmTest('concurrent callers do not interleave operations on the session', async () => {
  await withProvider({}, async (provider) => {
    const deks = Array.from({ length: 64 }, () => randomBytes(32));
    const wrapped = await Promise.all(deks.map((dek, version) => provider.wrapKey(dek, { scope: 'tenant-c', version })));
    const opened = await Promise.all(wrapped.map((value, version) => provider.unwrapKey(value, { scope: 'tenant-c', version })));
    assert.deepEqual(opened, deks);
  });
});

hsmTest('malformed arguments are programming errors, not unwrap failures', async () => {
  await withProvider({}, async (provider) => {
    await assert.rejects(provider.wrapKey(randomBytes(16), CONTEXT), TypeError);
    await assert.rejects(provider.wrapKey(randomBytes(32), { scope: '', version: 1 }), TypeError);
    await assert.rejects(provider.wrapKey(randomBytes(32), { scope: 's', version: -1 }), TypeError);
    await assert.rejects(provider.wrapKey(randomBytes(32), { scope: 's', version: 1.5 }), TypeError);
  });
});
