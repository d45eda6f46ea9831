import { AuditLog } from '../audit/audit-log.js';
import { buildApp, type App } from '../http/app.js';
import { Accounts } from '../identity/accounts/accounts.js';
import { openIdentity, type Identity } from '../identity/identity.js';
import { MachineAuth } from '../identity/machines/machine-auth.js';
import { SIGNING_KEY_RELOAD_INTERVAL_MS } from '../identity/tokens/signing-keys.js';
import { CIPHERGATE_VERSION } from '../config/version.js';
import type { Logger } from '../log/logger.js';
import type { MetricsListener } from '../metrics/listener.js';
import { openMailer } from '../providers/smtp/mailer.js';
import type { JobWorker } from '../relay/job-worker.js';
import type { Relay } from '../relay/relay.js';
import { isDatabaseUnavailable } from '../store/connection-errors.js';
import { openRedis, type RedisConnection } from '../store/redis.js';
import type { SealingRuntime } from './open-runtime.js';
import { identitySmsSender } from './tenant-sms-sender.js';
import { JOB_GRACE_MS, openMetricsListener, openRelay, startWorker } from './worker.js';

/**
 * `ciphergate serve` composed: identity (with Redis, mail and the SMS sender of this
 * deployment), the relay, the HTTP app over both, the workers unless --no-workers, the
 * background refreshes and sweeps, and the drain on SIGINT/SIGTERM.
 */

/** Longer than any sane request; a drain that takes more is stuck, and exiting beats hanging. */
const DRAIN_TIMEOUT_MS = 30_000;

/** How often a server picks up data-key versions that another process (a CLI rotation) added. */
const KEYRING_REFRESH_MS = SIGNING_KEY_RELOAD_INTERVAL_MS;

export interface RunningServer {
  app: App;
  identity: Identity;
  relay: Relay;
  /** Absent with --no-workers. */
  worker: JobWorker | undefined;
  /** The unauthenticated `/metrics` listener, when CIPHERGATE_METRICS_ADDRESS is set. */
  metricsListener: MetricsListener | undefined;
  /** Stops timers and background work, writes the aggregated audit entries, closes Redis and mail; called before the database closes. */
  stopBackground(): Promise<void>;
}

/** How often a server removes self-registrations nobody verified in time. */
export const SIGNUP_SWEEP_INTERVAL_MS = 60 * 60_000;

/**
 * Removes expired self-registrations (Accounts.removeExpiredSignups) a minute after start and
 * then hourly, in every `serve` process, whatever CIPHERGATE_SIGNUP says now: signups left from
 * while it was open must go too. Several instances sweeping at once is harmless (a DELETE of
 * rows already gone removes nothing).
 */
function startSignupSweep(identity: Identity, logger: Logger): { stop(): void } {
  const accounts = new Accounts(identity);
  const sweep = () =>
    void accounts.removeExpiredSignups().catch((error: unknown) => {
      if (!isDatabaseUnavailable(error)) logger.error({ err: error }, 'could not remove expired signups');
    });
  const first = setTimeout(sweep, 60_000);
  const timer = setInterval(sweep, SIGNUP_SWEEP_INTERVAL_MS);
  first.unref();
  timer.unref();
  return {
    stop() {
      clearTimeout(first);
      clearInterval(timer);
    },
  };
}

/**
 * Runs operator commands for a CLI beside this server (the admin socket, on the embedded store).
 * Passed in by the CLI: what a command does is the CLI's, and runtime/ never imports cli/.
 */
export type CommandHostStarter = (runtime: SealingRuntime, listening: { url: string }) => Promise<{ close(): Promise<void> } | undefined>;

export async function startServer(runtime: SealingRuntime, options: { workers?: boolean; hostCommands?: CommandHostStarter } = {}): Promise<RunningServer> {
  const { config, logger, database, sealing } = runtime;
  if (database.kind === 'pglite') logger.info({ dataDir: config.dataDir }, 'using the embedded database');
  const redis: RedisConnection | undefined = config.redisUrl ? openRedis(config.redisUrl, logger) : undefined;
  const mailer = openMailer(config, logger);
  const smsSender = identitySmsSender(config, database.db, sealing.fields, logger);
  // Asked now rather than at the first sign-in: a CIPHERGATE_SMS_SENDER_TENANT naming no tenant
  // with Twilio (a typo, a tenant not put yet) is logged at start, naming the setting.
  if (config.smsSenderTenant !== undefined) await smsSender.configured();
  const identity = await openIdentity({
    config,
    db: database.db,
    fields: sealing.fields,
    logger,
    redisKeyPrefix: config.redisKeyPrefix,
    smsSender,
    ...(redis ? { redis } : {}),
    ...(mailer ? { mailer } : {}),
  });
  const relay = openRelay(runtime);
  // With the sealed fields: a person reading the trail over HTTP sees the users' emails.
  const audit = new AuditLog(database.db, sealing.fields);
  const app = await buildApp({
    config,
    logger,
    identity,
    relay,
    audit,
    ...(redis ? { redis } : {}),
    readinessChecks: [
      { name: 'database', check: () => database.ping() },
      { name: 'keys', check: () => sealing.provider.check() },
      { name: 'queue', check: async () => ({ ...(await relay.queue.depth()) }) },
    ],
    metricsRegistries: [relay.metrics.registry],
  });
  let metricsListener: MetricsListener | undefined;
  try {
    // Keys that outlived their creator's privileges before keys followed their creator's role.
    const staleKeys = await new MachineAuth(identity).revokeKeysBeyondTheirCreators();
    if (staleKeys > 0) logger.warn({ count: staleKeys }, 'revoked API keys whose creators no longer hold their scopes');
    metricsListener = await openMetricsListener(config, app.metrics, logger);
  } catch (error) {
    // Before any worker runs or the main port opens: nothing to drain, only to release.
    await app.close();
    await identity.close();
    await mailer?.close();
    await redis?.close();
    throw error;
  }
  const worker = options.workers === false ? undefined : startWorker(relay);
  // Data keys and signing keys another process added (a CLI rotation, another instance).
  const refresher = setInterval(() => {
    // A database outage is logged once by the connection, not every interval.
    sealing.keyring.refresh().catch((error: unknown) => {
      if (!isDatabaseUnavailable(error)) logger.error({ err: error }, 'could not refresh data keys');
    });
    identity.parts.signingKeys.reload().catch((error: unknown) => {
      if (!isDatabaseUnavailable(error)) logger.error({ err: error }, 'could not reload signing keys');
    });
  }, KEYRING_REFRESH_MS);
  refresher.unref();
  const signupSweep = startSignupSweep(identity, logger);
  await app.listen({ host: config.host, port: config.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  await audit.record({
    actor: { type: 'system' },
    action: 'system.start',
    outcome: 'success',
    details: { database: database.kind, pid: process.pid },
  });
  // What an operator checks first: which release, which store (never its URL: it holds the
  // password), which key provider, whether Redis is shared, and where providers must call.
  logger.info(
    { version: CIPHERGATE_VERSION, store: database.kind, keyProvider: config.keys.provider, redis: config.redisUrl !== undefined, host: config.host, port, publicUrl: config.publicUrl },
    'ciphergate listening',
  );
  // The embedded database is this process's alone: operator commands reach it through the admin socket.
  const commandHost = database.kind === 'pglite' && !config.dataDir.startsWith('memory://') ? await options.hostCommands?.(runtime, { url: `http://${config.host}:${port}` }) : undefined;
  return {
    app,
    identity,
    relay,
    worker,
    metricsListener,
    async stopBackground() {
      await commandHost?.close();
      clearInterval(refresher);
      signupSweep.stop();
      await metricsListener?.close();
      // Jobs in flight finish; a worker already stopped with a grace period returns at once.
      await worker?.stop();
      // After the HTTP drain, so the refusals of the last requests are in the entries written here.
      await relay.rejectionAudit.stop();
      await identity.close();
      await mailer?.close();
      await redis?.close();
    },
  };
}

export function waitForShutdownSignal(runtime: SealingRuntime, server: RunningServer): Promise<void> {
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
        // HTTP and jobs drain together: in-flight requests finish while running jobs get their
        // grace period; neither waits for the other.
        await Promise.all([server.app.close(), server.worker?.stop({ graceMs: JOB_GRACE_MS })]);
        await server.stopBackground();
        await new AuditLog(runtime.database.db).record({
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
