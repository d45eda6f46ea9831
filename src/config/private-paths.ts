import { chmodSync, lstatSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The data dir (`CIPHERGATE_DATA_DIR`) and the key file generated in it hold the database and
 * the KEK: they must be the process user's alone. Store and seal both check and set that here,
 * so the rule and its one-line refusal are written once.
 */

export const PRIVATE_DIR_MODE = 0o700;
export const PRIVATE_FILE_MODE = 0o600;
/** Any bit of group or others: they could list, read, change or replace what is inside. */
const SHARED_BITS = 0o077;

/** The one-line start-up refusal: which path, its mode, and the command that fixes it. */
export class SharedPathError extends Error {
  override readonly name = 'SharedPathError';
}

/**
 * Throws SharedPathError when `path` exists and group or others have any permission on it.
 * An absent path passes: the caller creates it private. `what` names the path for the operator
 * ("data directory", "master key file").
 */
export function refuseSharedPath(path: string, what: string): void {
  let mode: number;
  let isDirectory: boolean;
  try {
    const stats = statSync(path);
    mode = stats.mode;
    isDirectory = stats.isDirectory();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  if ((mode & SHARED_BITS) === 0) return;
  const wanted = isDirectory ? '700' : '600';
  throw new SharedPathError(
    `${what} ${path} is open to group or others (mode ${(mode & 0o777).toString(8).padStart(4, '0')}); restrict it with \`chmod ${wanted} ${shellQuoted(path)}\``,
  );
}

/**
 * Takes group and others' permissions off every file (0600) and folder (0700) under `root`,
 * `root` included. For files a library writes with modes of its own whatever the umask (PGlite's
 * emscripten file system creates 0666 files); symbolic links are left alone, never followed.
 */
export function restrictTree(root: string): void {
  const stats = lstatSync(root);
  if (stats.isSymbolicLink()) return;
  if (stats.isDirectory()) {
    if ((stats.mode & 0o777) !== PRIVATE_DIR_MODE) chmodSync(root, PRIVATE_DIR_MODE);
    for (const entry of readdirSync(root)) restrictTree(join(root, entry));
    return;
  }
  if (stats.isFile() && (stats.mode & SHARED_BITS) !== 0) chmodSync(root, stats.mode & 0o700);
}

/** A path as the operator can paste it into a shell. */
function shellQuoted(path: string): string {
  return /^[\w@%+=:,./-]+$/.test(path) ? path : `'${path.replaceAll("'", `'\\''`)}'`;
}
