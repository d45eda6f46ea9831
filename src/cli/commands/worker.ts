import type { Command } from 'commander';
import { runWorker } from '../../runtime/worker.js';
import { openSealingRuntime, type CliIo } from '../runtime.js';

/**
 * `ciphergate worker`: job workers without the HTTP server, to scale the two apart (pair with
 * `serve --no-workers`). Stops on SIGINT/SIGTERM once the jobs in flight finish or, after
 * JOB_GRACE_MS, with their leases released.
 */
export function registerWorker(program: Command, io: CliIo): void {
  program
    .command('worker')
    .description('job workers alone (AI replies, sends, Airtable sync); pair with `serve --no-workers`')
    .action(async () => {
      const runtime = await openSealingRuntime(io, { logTo: 'stdout' });
      await runWorker(runtime);
    });
}
