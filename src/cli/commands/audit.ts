import type { Command } from 'commander';
import { AuditLog } from '../../audit/audit-log.js';
import { counted } from '../counted.js';
import { CliError } from '../errors.js';
import { openRuntime, type CliIo } from '../runtime.js';

export function registerAudit(program: Command, io: CliIo): void {
  const audit = program.command('audit').description('the hash-chained audit trail');
  audit
    .command('verify')
    .description('check the audit chain; exit 0 when intact, 1 naming the first broken entry')
    .option(
      '--expect-entry <hash>',
      'also require the entry with this hash (a head printed by an earlier verify) to still be in the chain; catches entries cut off the end',
    )
    .action(async (options: { expectEntry?: string }) => {
      if (options.expectEntry !== undefined && !/^[0-9a-f]{64}$/.test(options.expectEntry)) {
        throw new CliError('--expect-entry: expected 64 lower-case hex characters', 2);
      }
      const runtime = await openRuntime(io, { logTo: 'stderr', defaultLogLevel: 'warn' });
      try {
        const trail = new AuditLog(runtime.database.db);
        const result = await trail.verifyChain();
        if (!result.intact) {
          throw new CliError(
            `audit chain broken at entry seq ${result.brokenAt.seq} (id ${result.brokenAt.id}): ${result.brokenAt.reason}; ${counted(result.entries, 'entry', 'entries')} before it ${result.entries === 1 ? 'is' : 'are'} intact`,
          );
        }
        if (options.expectEntry !== undefined && !(await trail.chainContains(options.expectEntry))) {
          throw new CliError(
            `audit chain is internally intact (${counted(result.entries, 'entry', 'entries')}) but no longer contains entry ${options.expectEntry}: entries were cut off the end`,
          );
        }
        io.stdout.write(`audit chain intact: ${counted(result.entries, 'entry', 'entries')}, head ${result.headHash}\n`);
      } finally {
        await runtime.close();
      }
    });
}
