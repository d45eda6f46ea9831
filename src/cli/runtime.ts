import { loadConfig, type Config } from '../config/load.js';
import { createLogger, type Logger } from '../log/logger.js';
import { openDatabase, type Database } from '../store/connection.js';
import { migrate } from '../store/migrate.js';

/** What a command needs from its surroundings; tests give their own streams and environment. */
export interface CliIo {
  env: Record<string, string | undefined>;
  cwd: string;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  stdin: NodeJS.ReadableStream;
}

export function processIo(): CliIo {
  return { env: process.env, cwd: process.cwd(), stdout: process.stdout, stderr: process.stderr, stdin: process.stdin };
}

export interface Runtime {
  config: Config;
  logger: Logger;
  database: Database;
  close(): Promise<void>;
}

/**
 * Config, logger and a migrated database: what every command that touches data starts from.
 * One-shot commands log to stderr (their stdout is their answer); `serve` logs to stdout.
 */
export async function openRuntime(io: CliIo, options: { logTo: 'stdout' | 'stderr'; defaultLogLevel?: Config['logLevel'] }): Promise<Runtime> {
  const config = loadConfig(io.env, io.cwd);
  const level = io.env.CIPHERGATE_LOG_LEVEL ? config.logLevel : (options.defaultLogLevel ?? config.logLevel);
  const logger = createLogger({ level, destination: (options.logTo === 'stdout' ? io.stdout : io.stderr) as never });
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
