import { runCli } from './program.js';
import { processIo } from './runtime.js';

const exitCode = await runCli(process.argv.slice(2), processIo());
// `serve` resolves only after a clean shutdown; open handles must not keep a finished command alive.
process.exit(exitCode);
