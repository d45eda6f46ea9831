import type { Config } from '../config/load.js';
import type { Logger } from '../log/logger.js';
import { MetricsExposition } from '../metrics/exposition.js';
import { startMetricsListener, type MetricsListener } from '../metrics/listener.js';
import { processMetrics } from '../metrics/process-metrics.js';
import type { JobWorker } from '../relay/job-worker.js';
import { Relay } from '../relay/relay.js';
import { isDatabaseUnavailable } from '../store/connection-errors.js';
import type { SealingRuntime } from './open-runtime.js';

/**
 * The job side of a process: the relay over this deployment's data and keys, its workers with
 * their background refreshes, and the separate `/metrics` address. `serve` starts it beside the
 * HTTP server; `ciphergate worker` runs it alone (runWorker).
 */

/**
 * How long running jobs may take to finish at a stop. After it their leases are released, so
 * another instance takes them over at once instead of when the lease (60 s) runs out. Short,
 * because orchestrators send SIGKILL after their own grace period (Kubernetes: 30 s).
 */
export const JOB_GRACE_MS = 5_000;

/** The relay of a process: the pipeline webhooks feed and workers drain. */
export function openRelay(runtime: SealingRuntime): Relay {
  const { config, logger, database, sealing } = runtime;
  return new Relay({
    config: { publicUrl: config.publicUrl, providers: config.providers },
    db: database.db,
    fields: sealing.fields,
    keyring: sealing.keyring,
    logger,
  });
}

/**
 * The separate `/metrics` address, when configured. A port that cannot be bound is the operator's
 * to fix: its MetricsListenError says so in one line, which the CLI prints as it is.
 */
export async function openMetricsListener(config: Pick<Config, 'metricsAddress'>, exposition: MetricsExposition, logger: Logger): Promise<MetricsListener | undefined> {
  if (!config.metricsAddress) return undefined;
  return startMetricsListener(config.metricsAddress, exposition, logger);
}

/** Twice a day, so one failed refresh still leaves days before an Airtable webhook expires. */
const AIRTABLE_REFRESH_MS = 12 * 60 * 60_000;

export function startWorker(relay: Relay): JobWorker {
  const worker = relay.createWorker();
  worker.start();
  const refresh = () => void relay.refreshAirtableWebhooks().catch(() => undefined);
  const first = setTimeout(refresh, 60_000);
  const timer = setInterval(refresh, AIRTABLE_REFRESH_MS);
  first.unref();
  timer.unref();
  const stop = worker.stop.bind(worker);
  worker.stop = async (stopOptions) => {
    clearTimeout(first);
    clearInterval(timer);
    return stop(stopOptions);
  };
  return worker;
}

/**
 * Job workers without the HTTP server, to scale the two apart (pair with `serve --no-workers`).
 * Stops on SIGINT/SIGTERM once the jobs in flight finish or, after JOB_GRACE_MS, with their
 * leases released; closes the runtime either way.
 */
export async function runWorker(runtime: SealingRuntime): Promise<void> {
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
}
