import type { Command } from 'commander';
import { openRuntime, type CliIo } from '../runtime.js';

export function registerMigrate(program: Command, io: CliIo): void {
  program
    .command('migrate')
    .description('apply database migrations and exit (several instances may run it at once)')
    .action(async () => {
      const runtime = await openRuntime(io, { logTo: 'stderr', defaultLogLevel: 'warn' });
      await runtime.close();
      io.stdout.write(`migrations applied (${runtime.database.kind})\n`);
    });
}
