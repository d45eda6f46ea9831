import { pino, type DestinationStream } from 'pino';
import { loadConfig, type Config } from '../config/load.js';
import { createLogger, type Logger } from '../log/logger.js';
import { humanOrJson } from '../log/pretty.js';
import { openDatabase, type Database } from '../store/connection.js';
import { migrate } from '../store/migrate.js';
import { openSealing, type Sealing } from './sealing.js';

/**
 * Opening a process: config, logger, migrated database and, for what seals or opens data, the
 * sealing stack. The composition root's first step, shared by `serve`, `worker` and every
 * one-shot command (the CLI only chooses which and where the log goes).
 */

/** The surroundings a runtime is opened in: the process's environment and streams, or a test's. */
export interface RuntimeSurroundings {
  env: Record<string, string | undefined>;
  cwd: string;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  stdin: NodeJS.ReadableStream;
  /** Set when a running server runs this command for a CLI (admin socket): its runtime is used, never closed. */
  hosted?: { runtime: SealingRuntime; listeningUrl: string };
}

export interface Runtime {
  config: Config;
  logger: Logger;
  database: Database;
  close(): Promise<void>;
}

export interface SealingRuntime extends Runtime {
  sealing: Sealing;
}

export interface RuntimeOptions {
  logTo: 'stdout' | 'stderr';
  defaultLogLevel?: Config['logLevel'];
}

/**
 * Config, logger and a migrated database: what every command that touches data starts from.
 * One-shot commands log to stderr (their stdout is their answer); `serve` logs to stdout.
 */
export async function openRuntime(io: RuntimeSurroundings, options: RuntimeOptions): Promise<Runtime> {
  if (io.hosted) return { ...io.hosted.runtime, close: async () => undefined };
  const config = loadConfig(io.env, io.cwd);
  const level = io.env.CIPHERGATE_LOG_LEVEL ? config.logLevel : (options.defaultLogLevel ?? config.logLevel);
  const logger = createLogger({ level, destination: logDestination(io, options.logTo) });
  const database = await openDatabase({
    url: config.database.url,
    dataDir: config.dataDir,
    connectTimeoutSeconds: config.database.connectTimeoutSeconds,
    logger,
  });
  try {
    await migrate(database);
  } catch (error) {
    await database.close();
    throw error;
  }
  return {
    config,
    logger,
    database,
    async close() {
      await database.close();
    },
  };
}

/**
 * The server's own stdout gets an asynchronous pino destination: writes to a pipe are
 * synchronous on Linux, so one write per request line would stall the event loop; this one
 * batches lines written while a write is in flight, and pino flushes it when the process exits.
 */
function logDestination(io: RuntimeSurroundings, to: 'stdout' | 'stderr'): DestinationStream {
  const stream = (to === 'stdout' ? io.stdout : io.stderr) as unknown as DestinationStream & { isTTY?: boolean; fd?: number };
  // A terminal gets pino-pretty's lines (src/log/pretty.ts); anything else the JSON lines.
  if (to === 'stdout' && io.stdout === process.stdout) return humanOrJson(process.stdout, () => pino.destination({ dest: 1, sync: false }));
  return humanOrJson(stream, () => stream);
}

/** A runtime whose keys are open too: every command that seals or opens data starts here. */
export async function openSealingRuntime(io: RuntimeSurroundings, options: RuntimeOptions): Promise<SealingRuntime> {
  if (io.hosted) return { ...io.hosted.runtime, close: async () => undefined };
  const runtime = await openRuntime(io, options);
  let sealing: Sealing;
  try {
    sealing = await openSealing(runtime.config, runtime.database.db, runtime.logger);
  } catch (error) {
    await runtime.close();
    throw error;
  }
  return {
    ...runtime,
    sealing,
    async close() {
      await sealing.close();
      await runtime.close();
    },
  };
}
