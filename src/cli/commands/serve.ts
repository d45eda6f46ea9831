import type { Command } from 'commander';
import { startServer, waitForShutdownSignal } from '../../runtime/server.js';
import { startCommandHost, type CommandRunner } from '../command-host.js';
import { openSealingRuntime, type CliIo } from '../runtime.js';

/** `runCli` runs the commands a CLI hands over through the admin socket while this server runs. */
export function registerServe(program: Command, io: CliIo, runCli: CommandRunner): void {
  program
    .command('serve')
    .description('HTTP server and job workers; migrates the database on start')
    .option('--no-workers', 'serve HTTP only (run `ciphergate worker` elsewhere)')
    .action(async (options: { workers: boolean }) => {
      const runtime = await openSealingRuntime(io, { logTo: 'stdout' });
      const server = await startServer(runtime, { workers: options.workers, hostCommands: (runtime, listening) => startCommandHost(runCli, runtime, listening) });
      await waitForShutdownSignal(runtime, server);
    });
}
