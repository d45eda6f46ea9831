import type { Command } from 'commander';
import { encryptExisting } from '../../keys/encrypt-existing.js';
import { formatKeyStatus, keyStatus } from '../../keys/key-status.js';
import { createProgressReporter } from '../../keys/progress.js';
import { keyScopes, type KeyScope } from '../../keys/key-scopes.js';
import { reencrypt } from '../../keys/reencrypt.js';
import { counted } from '../counted.js';
import { CliError } from '../errors.js';
import { unknownTenant } from '../identity-runtime.js';
import { openRuntime, openSealingRuntime, type CliIo, type Runtime, type SealingRuntime } from '../runtime.js';

/** keys status, keys reencrypt and encrypt-existing: the long-running jobs of src/keys. */
export function registerKeyMaintenance(keys: Command, program: Command, io: CliIo): void {
  keys
    .command('status')
    .description('data-key versions per scope, the KEK wrapping each, values per version and re-encryption progress')
    .option('--json', 'the status as JSON')
    .action(async (options: { json?: boolean }) => {
      // Counting needs no keys: the key version is in each envelope's header.
      const runtime = await openRuntime(io, { logTo: 'stderr', defaultLogLevel: 'warn' });
      try {
        const status = await keyStatus(runtime.database.db);
        io.stdout.write(options.json ? `${JSON.stringify(status, null, 2)}\n` : formatKeyStatus(status).replace(/\n?$/, '\n'));
      } finally {
        await runtime.close();
      }
    });

  keys
    .command('reencrypt')
    .description('move values still sealed under older data-key versions to the current one; resumable')
    .option('--tenant <slug>', 'only this tenant')
    .option('--batch-size <n>', 'rows per transaction', parseBatchSize, 1000)
    .option('--concurrency <n>', 'key ranges worked at once, each on its own connection', parseConcurrency, 2)
    .action(async (options: { tenant?: string; batchSize: number; concurrency: number }) => {
      const runtime = await openSealingRuntime(io, { logTo: 'stderr', defaultLogLevel: 'warn' });
      try {
        const scopes = options.tenant === undefined ? undefined : (await scopesFor(runtime, options.tenant)).map((entry) => entry.scope);
        await reencryptScopes(runtime, io, scopes, options.batchSize, options.concurrency);
      } finally {
        await runtime.close();
      }
    });

  program
    .command('encrypt-existing')
    .description('seal every declared column that still holds plain text; resumable, idempotent, with progress')
    .option('--batch-size <n>', 'rows per transaction', parseBatchSize, 1000)
    .option('--concurrency <n>', 'key ranges worked at once, each on its own connection', parseConcurrency, 2)
    .action(async (options: { batchSize: number; concurrency: number }) => {
      const runtime = await openSealingRuntime(io, { logTo: 'stderr', defaultLogLevel: 'warn' });
      const stop = stopOnSignal();
      try {
        const reporter = createProgressReporter({ label: 'encrypt-existing', stream: io.stderr as never });
        const result = await encryptExisting({
          db: runtime.database.db,
          fields: runtime.sealing.fields,
          batchSize: options.batchSize,
          concurrency: options.concurrency,
          onProgress: (progress) => reporter.update(progress),
          signal: stop.signal,
        });
        reporter.finish();
        io.stdout.write(`sealed ${counted(result.sealed, 'value')} (${result.alreadySealed} ${result.alreadySealed === 1 ? 'was' : 'were'} sealed already)${result.complete ? '' : '; stopped early, run again to continue'}\n`);
        if (!result.complete) process.exitCode = 1;
      } finally {
        stop.dispose();
        await runtime.close();
      }
    });
}

/** Re-encrypts the given scopes (all when undefined) with progress on stderr and a summary on stdout. */
export async function reencryptScopes(runtime: SealingRuntime, io: CliIo, scopes: string[] | undefined, batchSize = 1000, concurrency = 2): Promise<void> {
  const reporter = createProgressReporter({ label: 'reencrypt', stream: io.stderr as never });
  const stop = stopOnSignal();
  let moved = 0;
  let unreadable = 0;
  let complete = true;
  try {
    for (const scope of scopes ?? [undefined]) {
      const result = await reencrypt({
        db: runtime.database.db,
        fields: runtime.sealing.fields,
        batchSize,
        concurrency,
        ...(scope !== undefined ? { scope } : {}),
        onProgress: (progress) => reporter.update(progress),
        signal: stop.signal,
      });
      moved += result.reencrypted;
      unreadable += result.unreadable;
      complete &&= result.complete;
      if (!complete) break;
    }
  } finally {
    stop.dispose();
  }
  reporter.finish();
  io.stdout.write(`re-encrypted ${counted(moved, 'value')}${unreadable ? `; ${unreadable} could not be opened (see keys status)` : ''}${complete ? '' : '; stopped early, run `keys reencrypt` to continue'}\n`);
  if (!complete || unreadable > 0) process.exitCode = 1;
}

/** `system` plus every tenant, or the one tenant named; each with the label the operator knows it by. */
export async function scopesFor(runtime: Runtime, tenantSlug: string | undefined): Promise<KeyScope[]> {
  return (await keyScopes(runtime.database.db, tenantSlug)) ?? unknownTenant(tenantSlug!);
}

/** Ctrl-C finishes the batch in flight (it commits or rolls back whole) and stops cleanly. */
function stopOnSignal(): { signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  const onSignal = () => controller.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return {
    signal: controller.signal,
    dispose() {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}

function parseConcurrency(value: string): number {
  const count = Number(value);
  if (!Number.isInteger(count) || count < 1 || count > 8) throw new CliError(`--concurrency: expected an integer 1-8, got ${JSON.stringify(value)}`, 2);
  return count;
}

export function parseBatchSize(value: string): number {
  const size = Number(value);
  if (!Number.isInteger(size) || size < 1 || size > 100_000) throw new CliError(`--batch-size: expected an integer 1-100000, got ${JSON.stringify(value)}`, 2);
  return size;
}

