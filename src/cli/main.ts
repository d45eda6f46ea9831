import { runCli } from './program.js';
import { processIo } from './runtime.js';
import { runInRunningServer } from './server-client.js';

// Everything this process creates (database files, the generated key, a pid file, temporary
// files of a command) is its user's alone, whatever umask the shell or service manager handed
// down. Explicit modes where we create files say the same; this catches what libraries create.
process.umask(0o077);

const argv = process.argv.slice(2);
const io = processIo();
// Beside a server on the embedded database, the server runs the command (admin socket).
const exitCode = (await runInRunningServer(argv, io).catch((error: unknown) => reportUnreachableServer(error, io))) ?? (await runCli(argv, io));
// `serve` resolves only after a clean shutdown; open handles must not keep a finished command alive.
process.exit(exitCode);

function reportUnreachableServer(error: unknown, io: { stderr: NodeJS.WritableStream }): number {
  io.stderr.write(`ciphergate: ${error instanceof Error ? error.message : String(error)}\n`);
  return 1;
}
