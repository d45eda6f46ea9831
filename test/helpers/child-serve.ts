import { once } from 'node:events';
import { createServer } from 'node:net';
import type { ChildProcess } from 'node:child_process';
import { spawnCli } from './cli.js';

/**
 * `ciphergate serve` as a child process, for tests that must treat the server as an operator's
 * process: killed without warning, restarted on the same database and port.
 *
 * `spawnCli` runs node itself (tsx is loaded with `--import`, in the same process), so `pid` is
 * the server's own process: a SIGKILL sent to it kills the server, not a wrapper that would
 * leave the server running. The child is registered with `stopChildren()` from cli.ts, which
 * test files call in `after()`.
 */

export type SpawnedCli = ChildProcess & { output: { stdout: string; stderr: string } };

export interface ChildServe {
  child: SpawnedCli;
  pid: number;
  /** `http://127.0.0.1:PORT` */
  url: string;
  /** Sends SIGKILL to the server process and waits until it is gone. */
  kill(): Promise<void>;
  /** SIGTERM (graceful drain) and waits for the exit code. */
  stop(): Promise<number | null>;
  /** The last `chars` characters of stdout and stderr, for failure messages. */
  tail(chars?: number): string;
}

/** A port nothing listens on right now. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * Starts `ciphergate serve` on 127.0.0.1:`port` with `env` and resolves once `/readyz` answers
 * 200 (database and keys usable), so it also works with CIPHERGATE_LOG_LEVEL=warn, where the
 * "listening" line is not printed.
 */
export async function startChildServe(options: { env: Record<string, string | undefined>; cwd: string; port: number; args?: string[]; timeoutMs?: number }): Promise<ChildServe> {
  const child = spawnCli(['serve', ...(options.args ?? [])], {
    env: { ...options.env, CIPHERGATE_HOST: '127.0.0.1', CIPHERGATE_PORT: String(options.port) },
    cwd: options.cwd,
  }) as SpawnedCli;
  const url = `http://127.0.0.1:${options.port}`;
  const exited = () => child.exitCode !== null || child.signalCode !== null;
  const tail = (chars = 3000) => `stdout: ${child.output.stdout.slice(-chars)}\nstderr: ${child.output.stderr.slice(-chars)}`;
  const deadline = Date.now() + (options.timeoutMs ?? 60_000);
  for (;;) {
    if (exited()) throw new Error(`ciphergate serve exited (${child.exitCode ?? child.signalCode}) before it was ready\n${tail()}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`ciphergate serve was not ready in time\n${tail()}`);
    }
    try {
      const response = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2_000) });
      await response.arrayBuffer();
      if (response.status === 200) break;
    } catch {
      // Not listening yet.
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    child,
    pid: child.pid!,
    url,
    tail,
    async kill() {
      if (exited()) return;
      const gone = once(child, 'exit');
      process.kill(child.pid!, 'SIGKILL');
      await gone;
    },
    async stop() {
      if (exited()) return child.exitCode;
      const gone = once(child, 'exit');
      child.kill('SIGTERM');
      const [code] = (await gone) as [number | null];
      return code;
    },
  };
}
