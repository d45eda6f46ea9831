import type { Command } from 'commander';
import { MetricsExposition } from '../../metrics/exposition.js';
import { processMetrics } from '../../metrics/process-metrics.js';
import { openSealingRuntime, type CliIo } from '../runtime.js';
import { isDatabaseUnavailable } from '../../store/connection-errors.js';
import { JOB_GRACE_MS, openMetricsListener, openRelay, startWorker } from './serve.js';

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
      const relay = openRelay(runtime);
      // A worker-only process has no API port; this address is how it is scraped.
      let metricsListener;
      try {
        metricsListener = await openMetricsListener(runtime.config, new MetricsExposition([relay.metrics.registry, processMetrics()]), runtime.logger);
      } catch (error) {
        await runtime.close();
        throw error;
      }
      const worker = startWorker(relay);
      const refresher = setInterval(() => {
        runtime.sealing.keyring.refresh().catch((error: unknown) => {
          // An outage is logged once by the connection.
          if (!isDatabaseUnavailable(error)) runtime.logger.error({ err: error }, 'could not refresh data keys');
        });
      }, 10_000);
      refresher.unref();
      runtime.logger.info({ workerId: worker.workerId }, 'ciphergate worker running');
      await new Promise<void>((resolve) => {
        const stop = (signal: NodeJS.Signals) => {
          runtime.logger.info({ signal }, 'stopping the worker');
          resolve();
        };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      clearInterval(refresher);
      await metricsListener?.close();
      // Running jobs get a grace period, then their leases go back for another worker.
      await worker.stop({ graceMs: JOB_GRACE_MS });
      await runtime.close();
    });
}
