import type { RuntimeSurroundings } from '../runtime/open-runtime.js';

// Opening config, logger, database and keys is the composition root's (src/runtime); commands
// import it from here so that every command file names one module for its surroundings.
export { openRuntime, openSealingRuntime, type Runtime, type SealingRuntime } from '../runtime/open-runtime.js';

/** What a command needs from its surroundings; tests give their own streams and environment. */
export type CliIo = RuntimeSurroundings;

export function processIo(): CliIo {
  return { env: process.env, cwd: process.cwd(), stdout: process.stdout, stderr: process.stderr, stdin: process.stdin };
}
