import { once } from 'node:events';
import type { ChildProcess } from 'node:child_process';
import { spawnCli } from './cli.js';
import { freePort } from './ports.js';

/**
 * `ciphergate serve` as a child process, the way an operator runs it: its own environment and
 * port, its output captured whole (stdout is the pino stream, stderr anything else), stopped
 * gracefully by SIGTERM or killed without warning, restarted on the same database and port.
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
  /** `http://127.0.0.1:PORT`: where the test reaches it (providers would use the public URL). */
  url: string;
  /** Sends SIGKILL to the server process and waits until it is gone. */
  kill(): Promise<void>;
  /**
   * SIGTERM (graceful drain), SIGKILL after `timeoutMs`; resolves with the exit code once the
   * process has ended and its output is complete (`child.signalCode` says whether a signal ended it).
   */
  stop(timeoutMs?: number): Promise<number | null>;
  /** Everything the process wrote so far, stdout then stderr. */
  logs(): string;
  /** The last `chars` characters of stdout and stderr, for failure messages. */
  tail(chars?: number): string;
}

/**
 * Starts `ciphergate serve` on 127.0.0.1:`port` (a free one when not given) with `env` and
 * resolves once `/readyz` answers 200 (database and keys usable), so it also works with
 * CIPHERGATE_LOG_LEVEL=warn, where the "listening" line is not printed.
 */
export async function startChildServe(options: { env: Record<string, string | undefined>; cwd: string; port?: number; args?: string[]; timeoutMs?: number }): Promise<ChildServe> {
  const port = options.port ?? (await freePort());
  const child = spawnCli(['serve', ...(options.args ?? [])], {
    env: { ...options.env, CIPHERGATE_HOST: '127.0.0.1', CIPHERGATE_PORT: String(port) },
    cwd: options.cwd,
  }) as SpawnedCli;
  // 'close', not 'exit': it comes after stdout and stderr have ended, so the output is whole.
  const closed = once(child, 'close') as Promise<[number | null, NodeJS.Signals | null]>;
  closed.catch(() => undefined);
  const url = `http://127.0.0.1:${port}`;
  const exited = () => child.exitCode !== null || child.signalCode !== null;
  const tail = (chars = 3000) => `stdout: ${child.output.stdout.slice(-chars)}\nstderr: ${child.output.stderr.slice(-chars)}`;
  const deadline = Date.now() + (options.timeoutMs ?? 120_000);
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
    logs: () => child.output.stdout + child.output.stderr,
    async kill() {
      if (!exited()) process.kill(child.pid!, 'SIGKILL');
      await closed;
    },
    async stop(timeoutMs = 60_000) {
      if (!exited()) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      const [code] = await closed;
      clearTimeout(timer);
      return code;
    },
  };
}
