import type { Command } from 'commander';
import { startServer, waitForShutdownSignal } from '../../runtime/server.js';
import { openSealingRuntime, type CliIo } from '../runtime.js';

export function registerServe(program: Command, io: CliIo): void {
  program
    .command('serve')
    .description('HTTP server and job workers; migrates the database on start')
    .option('--no-workers', 'serve HTTP only (run `ciphergate worker` elsewhere)')
    .action(async (options: { workers: boolean }) => {
      const runtime = await openSealingRuntime(io, { logTo: 'stdout' });
      const server = await startServer(runtime, { workers: options.workers });
      await waitForShutdownSignal(runtime, server);
    });
}
