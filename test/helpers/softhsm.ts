/**
 * Throw-away SoftHSM2 tokens for tests.
 *
 * Each call to {@link createSoftHsmToken} makes a temp dir with its own softhsm2.conf and
 * token directory and initialises a token there with softhsm2-util, so tests never touch the
 * machine's /var/lib/softhsm.
 *
 * SoftHSM2 reads SOFTHSM2_CONF from the process environment when the module is initialised
 * (C_Initialize), and scans the token directory only then. Therefore, in the test process:
 *   - set process.env.SOFTHSM2_CONF = configPath BEFORE opening the first provider;
 *   - keep every token a test file needs under ONE configuration (use addToken for more
 *     tokens) and create them all before the first open: a token added later is not seen
 *     until every provider is closed and the module is initialised again;
 *   - child processes get the same effect from `env`.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface SoftHsmTokenOptions {
  label: string;
  pin: string;
  soPin: string;
}

export interface SoftHsmToken {
  modulePath: string;
  configPath: string;
  dir: string;
  /**
   * SOFTHSM2_CONF for this token directory, plus CIPHERGATE_PKCS11_MODULE, _TOKEN_LABEL and
   * _PIN for the first token, ready to merge into a child process's environment.
   */
  env: Record<string, string>;
  /** Initialises one more token in the same token directory (before the module is initialised). */
  addToken(options: SoftHsmTokenOptions): void;
  /** Removes the temp dir. Close every provider first. */
  cleanup(): void;
}

/** Where distributions put the module; SOFTHSM2_MODULE overrides. */
const MODULE_CANDIDATES = [
  '/usr/lib/softhsm/libsofthsm2.so',
  '/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so',
  '/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so',
  '/usr/lib64/pkcs11/libsofthsm2.so',
  '/usr/local/lib/softhsm/libsofthsm2.so',
  '/opt/homebrew/lib/softhsm/libsofthsm2.so',
];

export function softHsmAvailable(): { ok: true; modulePath: string } | { ok: false; reason: string } {
  const override = process.env.SOFTHSM2_MODULE;
  const modulePath = override ? (existsSync(override) ? override : undefined) : MODULE_CANDIDATES.find((path) => existsSync(path));
  if (!modulePath) {
    return {
      ok: false,
      reason: override
        ? `SoftHSM2 module not found at SOFTHSM2_MODULE=${override}`
        : `SoftHSM2 module not found (looked in ${MODULE_CANDIDATES.length} usual places such as ${MODULE_CANDIDATES[0]}); install softhsm2 or set SOFTHSM2_MODULE`,
    };
  }
  const probe = spawnSync('softhsm2-util', ['--version'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) {
    return { ok: false, reason: 'softhsm2-util not found on PATH; install softhsm2' };
  }
  return { ok: true, modulePath };
}

export function createSoftHsmToken(options: SoftHsmTokenOptions): SoftHsmToken {
  const available = softHsmAvailable();
  if (!available.ok) throw new Error(available.reason);
  const dir = mkdtempSync(join(tmpdir(), 'ciphergate-softhsm-'));
  const tokenDir = join(dir, 'tokens');
  mkdirSync(tokenDir, { mode: 0o700 });
  const configPath = join(dir, 'softhsm2.conf');
  writeFileSync(
    configPath,
    [
      `directories.tokendir = ${tokenDir}`,
      'objectstore.backend = file',
      'log.level = ERROR',
      'slots.removable = false',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  const addToken = (token: SoftHsmTokenOptions): void => initToken(configPath, token);
  try {
    addToken(options);
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    modulePath: available.modulePath,
    configPath,
    dir,
    env: {
      SOFTHSM2_CONF: configPath,
      CIPHERGATE_PKCS11_MODULE: available.modulePath,
      CIPHERGATE_PKCS11_TOKEN_LABEL: options.label,
      CIPHERGATE_PKCS11_PIN: options.pin,
    },
    addToken,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

function initToken(configPath: string, token: SoftHsmTokenOptions): void {
  // --free takes the first uninitialised slot; SoftHSM2 always keeps one spare.
  const result = spawnSync(
    'softhsm2-util',
    ['--init-token', '--free', '--label', token.label, '--pin', token.pin, '--so-pin', token.soPin],
    { encoding: 'utf8', env: { ...process.env, SOFTHSM2_CONF: configPath } },
  );
  if (result.error || result.status !== 0) {
    // The argv is left out of the message on purpose: it carries both PINs.
    const detail = (result.error?.message ?? `${result.stderr}${result.stdout}`).trim().replace(/\s*\n\s*/g, ' ');
    throw new Error(`softhsm2-util --init-token for ${JSON.stringify(token.label)} failed: ${detail}`);
  }
}
