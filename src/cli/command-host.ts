import { startAdminSocket, type AdminSocket, type HostedStreams } from '../runtime/admin-socket/server.js';
import type { CliIo, SealingRuntime } from './runtime.js';

/**
 * The serving side of the admin socket: runs operator commands that a CLI hands over, with the
 * same command code as a CLI run (runCli) but on this server's open database and keys.
 *
 * Commands run one at a time: `runCli` and the key-maintenance commands read and set
 * `process.exitCode`, which is one per process, so it is cleared before each command and the
 * server's own value restored after it.
 */
/** How the CLI runs one command line (program.ts's runCli), passed in so this file does not import the program that registers serve. */
export type CommandRunner = (argv: string[], io: CliIo) => Promise<number>;

export async function startCommandHost(runCli: CommandRunner, runtime: SealingRuntime, listening: { url: string }): Promise<AdminSocket | undefined> {
  let queue: Promise<unknown> = Promise.resolve();
  const runOne = async (argv: string[], streams: HostedStreams): Promise<number> => {
    const serverExitCode = process.exitCode;
    process.exitCode = undefined;
    try {
      return await runCli(argv, { env: process.env, ...streams, hosted: { runtime, listeningUrl: listening.url } });
    } finally {
      process.exitCode = serverExitCode;
    }
  };
  try {
    return await startAdminSocket({
      dataDir: runtime.config.dataDir,
      logger: runtime.logger,
      run(argv, streams) {
        const result = queue.then(() => runOne(argv, streams));
        queue = result.catch(() => undefined);
        return result;
      },
    });
  } catch (error) {
    // Serving matters more than the convenience: without the socket, commands name the
    // process that holds the database, as they did before it existed.
    runtime.logger.warn({ err: error }, 'no admin socket: operator commands need the server stopped');
    return undefined;
  }
}
