import type { Command } from 'commander';
import { appendAuditEvent } from '../../audit/trail.js';
import { buildApp, type App } from '../../http/app.js';
import { openRuntime, type CliIo, type Runtime } from '../runtime.js';

/** Longer than any sane request; a drain that takes more is stuck, and exiting beats hanging. */
const DRAIN_TIMEOUT_MS = 30_000;

export function registerServe(program: Command, io: CliIo): void {
  program
    .command('serve')
    .description('HTTP server and job workers; migrates the database on start')
    .option('--no-workers', 'serve HTTP only (run `ciphergate worker` elsewhere)')
    .action(async () => {
      const runtime = await openRuntime(io, { logTo: 'stdout' });
      const server = await startServer(runtime);
      await waitForShutdownSignal(runtime, server);
    });
}

export async function startServer(runtime: Runtime): Promise<App> {
  const { config, logger, database } = runtime;
  if (database.kind === 'pglite') logger.info({ dataDir: config.dataDir }, 'using the embedded database');
  const app = await buildApp({
    config,
    logger,
    readinessChecks: [{ name: 'database', check: () => database.ping() }],
  });
  await app.listen({ host: config.host, port: config.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  await appendAuditEvent(database.db, {
    actor: { type: 'system' },
    action: 'system.start',
    outcome: 'success',
    details: { database: database.kind, pid: process.pid },
  });
  logger.info({ host: config.host, port, publicUrl: config.publicUrl }, 'ciphergate listening');
  return app;
}

function waitForShutdownSignal(runtime: Runtime, app: App): Promise<void> {
  return new Promise((resolve) => {
    let stopping = false;
    const stop = async (signal: NodeJS.Signals) => {
      if (stopping) {
        // A second Ctrl-C means "now": the operator has decided not to wait for the drain.
        runtime.logger.warn({ signal }, 'second signal, exiting without draining');
        process.exit(1);
      }
      stopping = true;
      runtime.logger.info({ signal }, 'draining in-flight requests');
      const forced = setTimeout(() => {
        runtime.logger.error({ timeoutMs: DRAIN_TIMEOUT_MS }, 'drain timed out, exiting');
        process.exit(1);
      }, DRAIN_TIMEOUT_MS);
      forced.unref();
      try {
        await app.close();
        await appendAuditEvent(runtime.database.db, {
          actor: { type: 'system' },
          action: 'system.stop',
          outcome: 'success',
          details: { signal, pid: process.pid },
        });
        await runtime.close();
        runtime.logger.info('stopped cleanly');
      } catch (error) {
        runtime.logger.error({ err: error }, 'error while stopping');
        process.exitCode = 1;
      }
      clearTimeout(forced);
      resolve();
    };
    process.once('SIGINT', (signal) => void stop(signal));
    process.once('SIGTERM', (signal) => void stop(signal));
  });
}
