/**
 * The admin socket: how `ciphergate <command>` runs inside a server that holds the embedded
 * database. PGlite is one process and one session, so a second process cannot open the data
 * directory; instead the CLI hands its command line to the server over a Unix socket in the
 * data directory, the server runs the same command on its own open runtime, and the output
 * comes back. Access is the socket file's: mode 0600 inside the 0700 data directory, so only
 * the user who can read the database files (and the local key beside them) can use it.
 *
 * Wire format: HTTP/1.1 over the socket.
 * - `POST /v1/commands` with `{ argv, cwd, stdinIsTTY }` answers 200 with newline-delimited JSON
 *   frames: first `{ id }`, then any of `{ stdout }`, `{ stderr }`, `{ stdin: "wanted" }`, and
 *   last `{ exit }`.
 * - Stdin is sent only when the command reads it (`{ stdin: "wanted" }`): `POST
 *   /v1/commands/{id}/stdin` with the CLI's stdin as the body. A command that reads no stdin
 *   never waits for the CLI's stdin to end.
 */
import { join } from 'node:path';

/** The socket's file name inside the data directory. */
export const ADMIN_SOCKET_NAME = 'admin.sock';

export function adminSocketPath(dataDir: string): string {
  return join(dataDir, ADMIN_SOCKET_NAME);
}

export interface CommandRequest {
  argv: string[];
  /** The CLI's working directory, for commands that resolve paths. */
  cwd: string;
  /** Whether the CLI's stdin is a terminal (commands refuse to read secrets from one). */
  stdinIsTTY: boolean;
}

export type CommandFrame = { id: string } | { stdout: string } | { stderr: string } | { stdin: 'wanted' } | { exit: number };

/**
 * The commands a running server runs for the CLI (deny by default). Not `serve` or `worker`
 * (a second server inside the first), not `store` (a copy needs a still database).
 */
export const HOSTED_COMMANDS: ReadonlySet<string> = new Set([
  'users',
  'tenants',
  'api-keys',
  'keys',
  'encrypt-existing',
  'jobs',
  'import',
  'audit',
  'status',
  'migrate',
]);

/** Whether the command named by `argv` runs inside a running server (help and version stay local). */
export function isHostedCommand(argv: readonly string[]): boolean {
  const [command] = argv;
  if (command === undefined || !HOSTED_COMMANDS.has(command)) return false;
  return !argv.some((arg) => arg === '--help' || arg === '-h');
}

/** Upper bound of a command request: a command line, never data (data goes through stdin). */
export const MAX_COMMAND_REQUEST_BYTES = 64 * 1024;
