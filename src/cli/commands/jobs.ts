import type { Command } from 'commander';
import { isUuid } from '../../domain/ids.js';
import { listQueue, retryDeadJob, type JobSummary } from '../../relay/queue-admin.js';
import { CliError } from '../errors.js';
import { openRuntime, type CliIo } from '../runtime.js';

/**
 * `ciphergate jobs`: the queue and its dead letters. Jobs hold ids only, so listing them needs
 * no keys; a retried dead job runs in whichever worker claims it next.
 */
export function registerJobs(program: Command, io: CliIo): void {
  const jobsCommand = program.command('jobs').description('the job queue: pending and running jobs, and dead letters');

  jobsCommand
    .command('list')
    .description('pending and running jobs (or, with --dead, the dead letters), oldest due first')
    .option('--dead', 'the jobs that used up their attempts or failed for good')
    .option('--limit <n>', 'at most this many', (value: string) => parseLimit(value), 100)
    .option('--json', 'one JSON document instead of a table')
    .action(async (options: { dead?: boolean; limit: number; json?: boolean }) => {
      const runtime = await openRuntime(io, { logTo: 'stderr', defaultLogLevel: 'warn' });
      try {
        const { jobs, depth } = await listQueue(runtime.database.db, { dead: options.dead === true, limit: options.limit });
        if (options.json) {
          io.stdout.write(`${JSON.stringify({ jobs: jobs.map(jobView), depth }, null, 2)}\n`);
          return;
        }
        io.stdout.write(formatTable(jobs));
        io.stderr.write(`ciphergate: note: ${depth.pending} pending, ${depth.running} running, ${depth.dead} dead\n`);
      } finally {
        await runtime.close();
      }
    });

  jobsCommand
    .command('retry <id>')
    .description('puts a dead job back in the queue with a fresh set of attempts')
    .action(async (id: string) => {
      if (!isUuid(id)) throw new CliError(`jobs retry: ${JSON.stringify(id)} is not a job id (a UUID from \`jobs list --dead\`)`, 2);
      const runtime = await openRuntime(io, { logTo: 'stderr', defaultLogLevel: 'warn' });
      try {
        if (!(await retryDeadJob(runtime.database.db, id))) throw new CliError(`jobs retry: no dead job ${id} (see \`ciphergate jobs list --dead\`)`);
        io.stdout.write(`${id}\n`);
      } finally {
        await runtime.close();
      }
    });
}

function parseLimit(value: string): number {
  const limit = Number(value);
  if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) throw new CliError('--limit: expected a whole number from 1 to 10000', 2);
  return limit;
}

function jobView(job: JobSummary) {
  return { ...job, runAt: job.runAt.toISOString(), createdAt: job.createdAt.toISOString() };
}

function formatTable(jobs: JobSummary[]): string {
  const header = ['ID', 'KIND', 'STATE', 'ATTEMPTS', 'RUN AT', 'LAST ERROR'];
  const rows = jobs.map((job) => [job.id, job.kind, job.state, `${job.attempts}/${job.maxAttempts}`, job.runAt.toISOString(), job.lastError ?? '']);
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)));
  return [header, ...rows].map((row) => row.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd()).join('\n') + '\n';
}
