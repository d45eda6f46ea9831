import { runCli } from './program.js';
import { processIo } from './runtime.js';

// Everything this process creates (database files, the generated key, a pid file, temporary
// files of a command) is its user's alone, whatever umask the shell or service manager handed
// down. Explicit modes where we create files say the same; this catches what libraries create.
process.umask(0o077);

const exitCode = await runCli(process.argv.slice(2), processIo());
// `serve` resolves only after a clean shutdown; open handles must not keep a finished command alive.
process.exit(exitCode);
