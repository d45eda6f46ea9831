/**
 * Process-wide bookkeeping of PKCS#11 modules, token logins and sessions, used by the
 * `pkcs11` key provider.
 *
 * PKCS#11 state belongs to the process, not to an object: a module is initialised once (a
 * second C_Initialize answers CKR_CRYPTOKI_ALREADY_INITIALIZED, and one C_Finalize ends every
 * caller's sessions), and a login belongs to the application and the token, not to the
 * session that made it (C_Logout through any session logs all of them out). More than one
 * provider can be open at once — `keys rewrap` holds the old and the new key label, often on
 * the same token — so initialisation and login are reference-counted here and undone only
 * by their last user.
 *
 * All pkcs11js calls used here are the synchronous ones. Each wrap or unwrap is an
 * Init + single-part call pair that runs to completion before any other JavaScript runs, so
 * two async callers can never interleave operations on one session (which PKCS#11 forbids,
 * CKR_OPERATION_ACTIVE). The price is that the event loop waits for the HSM during those
 * calls; with a DEK cache above the provider that is a few calls per tenant and key version.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { realpathSync } from 'node:fs';
import pkcs11js from 'pkcs11js';
import type { PKCS11 } from 'pkcs11js';
import { KeyProviderError } from './key-provider.js';

/** A slot, session or object handle (a CK_ULONG in a Buffer, as pkcs11js hands them out). */
export type Handle = Buffer;

export interface LoadedModule {
  /** The path as configured, for messages. */
  readonly path: string;
  readonly lib: PKCS11;
}

/** A read/write session on one token, logged in as the user. */
export interface UserSession {
  readonly module: LoadedModule;
  readonly slot: Handle;
  readonly tokenLabel: string;
  readonly handle: Handle;
}

/** Opens (or shares) the module at `modulePath`; pair with {@link releaseModule}. */
export function acquireModule(modulePath: string): LoadedModule {
  const key = canonicalModulePath(modulePath);
  const existing = modules.get(key);
  if (existing) {
    existing.users += 1;
    return existing;
  }
  const lib = new pkcs11js.PKCS11();
  try {
    lib.load(modulePath);
  } catch (error) {
    throw new KeyProviderError(
      `CIPHERGATE_PKCS11_MODULE: cannot load the PKCS#11 module ${JSON.stringify(modulePath)} (${oneLine(error)})`,
    );
  }
  let ownsInitialize = true;
  try {
    lib.C_Initialize();
  } catch (error) {
    if (ckr(error) === 'CKR_CRYPTOKI_ALREADY_INITIALIZED') {
      // Other code in this process initialised it; it is theirs to finalise.
      ownsInitialize = false;
    } else {
      closeQuietly(lib);
      throw new KeyProviderError(
        `CIPHERGATE_PKCS11_MODULE: the PKCS#11 module ${JSON.stringify(modulePath)} failed to initialise (${errorSummary(error)}); ` +
          'for SoftHSM2, check that SOFTHSM2_CONF names a readable configuration whose token directory exists',
      );
    }
  }
  const entry: ModuleEntry = { key, path: modulePath, lib, ownsInitialize, users: 1, logins: new Map() };
  modules.set(key, entry);
  return entry;
}

/** Drops one use of the module; the last one finalises it. */
export function releaseModule(module: LoadedModule): void {
  const entry = entryOf(module);
  entry.users -= 1;
  if (entry.users > 0) return;
  modules.delete(entry.key);
  if (entry.ownsInitialize) {
    try {
      entry.lib.C_Finalize();
    } catch {
      // Nothing useful to do: the module is being let go either way.
    }
  }
  closeQuietly(entry.lib);
}

/**
 * SoftHSM2 finds its tokens through SOFTHSM2_CONF, read from the process environment; without it
 * the module reads /etc/softhsm/softhsm2.conf and initialises fine over another (often empty)
 * token directory, so the first error is a missing token, not a missing setting. The commonest
 * cause is a service unit or `sudo` that did not pass the variable on.
 */
function softHsmHint(modulePath: string): string {
  if (!/softhsm/i.test(modulePath)) return '';
  return '; for SoftHSM2, SOFTHSM2_CONF must be set in the environment of this process and name the configuration whose directories.tokendir holds the token (without it SoftHSM2 reads /etc/softhsm/softhsm2.conf)';
}

/** The slot of the one initialised token whose label is `tokenLabel` (labels compared trimmed). */
export function findTokenSlot(module: LoadedModule, tokenLabel: string): Handle {
  const wanted = trimLabel(tokenLabel);
  let slots: Handle[];
  try {
    slots = module.lib.C_GetSlotList(true);
  } catch (error) {
    throw new KeyProviderError(
      `CIPHERGATE_PKCS11_MODULE: the PKCS#11 module ${JSON.stringify(module.path)} cannot list its slots (${errorSummary(error)})`,
    );
  }
  const seen: string[] = [];
  const matches: Handle[] = [];
  for (const slot of slots) {
    let label: string;
    let flags: number;
    try {
      ({ label, flags } = module.lib.C_GetTokenInfo(slot));
    } catch {
      // A slot whose token vanished between listing and asking is simply not a candidate.
      continue;
    }
    // SoftHSM2 always shows one free, uninitialised token with a blank label; it is not a match.
    if ((flags & pkcs11js.CKF_TOKEN_INITIALIZED) === 0) continue;
    const trimmed = trimLabel(label);
    seen.push(JSON.stringify(trimmed));
    if (trimmed === wanted) matches.push(slot);
  }
  const [slot, ...others] = matches;
  if (!slot) {
    throw new KeyProviderError(
      `CIPHERGATE_PKCS11_TOKEN_LABEL: no token labelled ${JSON.stringify(wanted)} in ${JSON.stringify(module.path)} ` +
        `(tokens present: ${seen.length > 0 ? seen.join(', ') : 'none'})${softHsmHint(module.path)}`,
    );
  }
  if (others.length > 0) {
    throw new KeyProviderError(
      `CIPHERGATE_PKCS11_TOKEN_LABEL: ${matches.length} tokens are labelled ${JSON.stringify(wanted)}; give the token that holds the KEK a unique label`,
    );
  }
  return slot;
}

/**
 * Opens a read/write session on the token and logs in as the user.
 *
 * When this process is already logged in to the token (another provider holds a session),
 * the token answers CKR_USER_ALREADY_LOGGED_IN without looking at the PIN; the PIN is then
 * compared with the one that login used, so a wrong PIN is refused whether or not another
 * provider got there first.
 */
export function openUserSession(module: LoadedModule, slot: Handle, tokenLabel: string, pin: string): UserSession {
  const entry = entryOf(module);
  const label = trimLabel(tokenLabel);
  const slotKey = slot.toString('hex');
  const pinTag = tagPin(pin);
  const login = entry.logins.get(slotKey);
  if (login && !timingSafeEqual(login.pinTag, pinTag)) {
    throw new KeyProviderError(
      `CIPHERGATE_PKCS11_PIN: differs from the PIN this process is already logged in to token ${JSON.stringify(label)} with`,
    );
  }
  let handle: Handle;
  try {
    handle = module.lib.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
  } catch (error) {
    throw new KeyProviderError(
      `CIPHERGATE_PKCS11_TOKEN_LABEL: cannot open a read/write session on token ${JSON.stringify(label)} (${errorSummary(error)})`,
    );
  }
  try {
    module.lib.C_Login(handle, pkcs11js.CKU_USER, pin);
  } catch (error) {
    const code = ckr(error);
    if (code !== 'CKR_USER_ALREADY_LOGGED_IN' || !login) {
      closeSessionQuietly(module.lib, handle);
      // The pkcs11js error is never attached as a cause: a log line with the cause's stack
      // would show the native call site, and nothing here should travel near the PIN.
      throw loginError(code, label);
    }
  }
  if (login) login.sessions += 1;
  else entry.logins.set(slotKey, { sessions: 1, pinTag });
  return { module, slot, tokenLabel: label, handle };
}

/** Closes the session; the last session of this process on the token logs out first. Never throws. */
export function closeUserSession(session: UserSession): void {
  const entry = modules.get((session.module as ModuleEntry).key);
  const slotKey = session.slot.toString('hex');
  const login = entry === session.module ? entry.logins.get(slotKey) : undefined;
  if (login) {
    login.sessions -= 1;
    if (login.sessions <= 0) {
      entry?.logins.delete(slotKey);
      try {
        session.module.lib.C_Logout(session.handle);
      } catch {
        // Already logged out (session lost, token removed): the goal is reached.
      }
    }
  }
  closeSessionQuietly(session.module.lib, session.handle);
}

/** The CKR_* name of a pkcs11js error, or undefined when the error did not come from the token. */
export function ckr(error: unknown): string | undefined {
  if (!(error instanceof Error)) return undefined;
  const match = /^(CKR_[A-Z0-9_]+)/.exec(error.message);
  return match?.[1];
}

/** A short, single-line account of a pkcs11js failure for an operator-facing message. */
export function errorSummary(error: unknown): string {
  return ckr(error) ?? oneLine(error);
}

// ---------------------------------------------------------------------------------------------

interface ModuleEntry extends LoadedModule {
  readonly key: string;
  readonly ownsInitialize: boolean;
  users: number;
  /** Per slot (hex of the handle): how many of our sessions rely on the login, and which PIN made it. */
  readonly logins: Map<string, { sessions: number; pinTag: Buffer }>;
}

/**
 * Keyed by the real path: dlopen hands out one library instance per file, so
 * /usr/lib/softhsm/libsofthsm2.so and the file its symlink points at share one PKCS#11 state.
 */
const modules = new Map<string, ModuleEntry>();

/** Lets PINs be compared without keeping them in the registry; lives only as long as the process. */
const pinTagKey = randomBytes(32);

function tagPin(pin: string): Buffer {
  return createHmac('sha256', pinTagKey).update(pin, 'utf8').digest();
}

function entryOf(module: LoadedModule): ModuleEntry {
  const entry = modules.get((module as ModuleEntry).key);
  if (entry !== module) {
    throw new KeyProviderError('the PKCS#11 module was already released');
  }
  return entry;
}

function canonicalModulePath(modulePath: string): string {
  try {
    return realpathSync(modulePath);
  } catch {
    // Not resolvable: load() is about to fail and say why.
    return modulePath;
  }
}

function loginError(code: string | undefined, tokenLabel: string): KeyProviderError {
  const token = JSON.stringify(tokenLabel);
  switch (code) {
    case 'CKR_PIN_INCORRECT':
    case 'CKR_PIN_INVALID':
    case 'CKR_PIN_LEN_RANGE':
      return new KeyProviderError(`CIPHERGATE_PKCS11_PIN: the token refused the PIN (token ${token}, ${code})`);
    case 'CKR_PIN_LOCKED':
      return new KeyProviderError(
        `CIPHERGATE_PKCS11_PIN: the user PIN of token ${token} is locked after too many wrong attempts; the security officer must reset it`,
      );
    case 'CKR_PIN_EXPIRED':
      return new KeyProviderError(`CIPHERGATE_PKCS11_PIN: the user PIN of token ${token} has expired; set a new one`);
    case 'CKR_USER_PIN_NOT_INITIALIZED':
      return new KeyProviderError(
        `CIPHERGATE_PKCS11_PIN: token ${token} has no user PIN yet; the security officer must set one (softhsm2-util --init-token sets both)`,
      );
    case 'CKR_USER_ALREADY_LOGGED_IN':
      return new KeyProviderError(
        `CIPHERGATE_PKCS11_PIN: token ${token} is already logged in by other code in this process, so the PIN cannot be checked`,
      );
    default:
      return new KeyProviderError(`CIPHERGATE_PKCS11_PIN: login to token ${token} failed (${code ?? 'not a PKCS#11 error'})`);
  }
}

function closeSessionQuietly(lib: PKCS11, handle: Handle): void {
  try {
    lib.C_CloseSession(handle);
  } catch {
    // Already closed (C_CloseAllSessions, token removed, module finalised).
  }
}

function closeQuietly(lib: PKCS11): void {
  try {
    lib.close();
  } catch {
    // dlclose failing leaves the library mapped, which is harmless.
  }
}

/** PKCS#11 pads labels with blanks to 32 bytes; some tokens pad with NULs instead. */
function trimLabel(label: string): string {
  return label.replace(/\0+$/, '').trim();
}

function oneLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.replace(/\s*\n\s*/g, ' ').trim();
}
