import type { Command } from 'commander';
import { loadConfig } from '../../config/load.js';
import { copyStore, nextStepsAfterCopy, StoreCopyError, type TableProgress } from '../../runtime/store-copy.js';
import { CliError, EXIT } from '../errors.js';
import type { CliIo } from '../runtime.js';
import { parseBatchSize } from './key-maintenance.js';

/** Progress lines at most this often per table (plus each table's last), so a big table does not flood stderr. */
const PROGRESS_INTERVAL_MS = 1000;

export function registerStore(program: Command, io: CliIo): void {
  const store = program.command('store').description('the store itself (needs the server stopped)');
  store
    .command('copy')
    .description('copy the embedded store into an empty PostgreSQL database, ciphertext as is; resumable; verifies counts and the audit chain')
    .requiredOption('--to <url>', 'the target PostgreSQL database (postgres://…); must be empty, or hold an unfinished copy of this store')
    .option('--batch-size <rows>', 'rows per page, each committed with its progress', parseBatchSize)
    .action(async (options: { to: string; batchSize?: number }) => {
      const config = loadConfig(io.env, io.cwd);
      const printed = new Map<string, number>();
      const report = (progress: TableProgress) => {
        const now = Date.now();
        const finished = progress.copied >= progress.total;
        if (!finished && now - (printed.get(progress.table) ?? 0) < PROGRESS_INTERVAL_MS) return;
        printed.set(progress.table, now);
        io.stderr.write(`store copy: ${progress.table} ${progress.copied}/${progress.total}\n`);
      };
      try {
        const result = await copyStore({ config, targetUrl: options.to, ...(options.batchSize ? { batchSize: options.batchSize } : {}), onProgress: report });
        const rows = result.tables.reduce((sum, table) => sum + table.copied, 0);
        io.stdout.write(
          `${result.resumed ? 'resumed and finished' : 'finished'} the copy to ${result.target}: ${result.tables.length} tables, ${rows} ${rows === 1 ? 'row' : 'rows'}, row counts equal, audit chain intact (${result.auditEntries} ${result.auditEntries === 1 ? 'entry' : 'entries'})\n`,
        );
        io.stdout.write(`next steps:\n${nextStepsAfterCopy(config).map((step, index) => `  ${index + 1}. ${step}\n`).join('')}`);
      } catch (error) {
        if (error instanceof StoreCopyError) throw new CliError(error.message, error.code === 'bad-target-url' ? EXIT.usage : EXIT.failure);
        throw error;
      }
    });
}
