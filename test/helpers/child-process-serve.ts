import { once } from 'node:events';
import { createServer } from 'node:net';
import { spawnCli, waitForOutput } from './cli.js';

/**
 * `ciphergate serve` as a child process, the way an operator runs it: its own environment, its
 * own port, its logs captured whole (stdout is the pino stream, stderr anything else), and a
 * graceful stop by SIGTERM so the embedded database is flushed and closed before the test looks
 * at its files.
 */
export interface ServeProcess {
  /** `http://127.0.0.1:PORT`: where the test reaches it (providers would use the public URL). */
  readonly baseUrl: string;
  /** Everything the process wrote so far, stdout then stderr. */
  logs(): string;
  /** SIGTERM, then waits for the exit; SIGKILL after `timeoutMs`. Resolves with how it ended. */
  stop(timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; logs: string }>;
}

/** A port nobody listens on right now (the child binds it a moment later). */
export async function freeLocalPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export async function startServeProcess(options: {
  env: Record<string, string | undefined>;
  cwd: string;
  /** Extra arguments after `serve`, e.g. `['--no-workers']`. */
  args?: string[];
  startTimeoutMs?: number;
}): Promise<ServeProcess> {
  const port = await freeLocalPort();
  const child = spawnCli(['serve', ...(options.args ?? [])], { env: { ...options.env, CIPHERGATE_HOST: '127.0.0.1', CIPHERGATE_PORT: String(port) }, cwd: options.cwd });
  // 'close', not 'exit': it comes after stdout and stderr have ended, so the logs are whole.
  const closed = once(child, 'close') as Promise<[number | null, NodeJS.Signals | null]>;
  await waitForOutput(child, (output) => output.stdout.includes('ciphergate listening'), options.startTimeoutMs ?? 120_000);
  const logs = () => child.output.stdout + child.output.stderr;
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    logs,
    async stop(timeoutMs = 60_000) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      const [code, signal] = await closed;
      clearTimeout(timer);
      return { code, signal, logs: logs() };
    },
  };
}
