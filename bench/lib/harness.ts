import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { arch, cpus, release } from 'node:os';
import autocannon from 'autocannon';
import pg from 'pg';
import { openDatabase, type Database } from '../../src/store/connection.js';
import { migrate } from '../../src/store/migrate.js';

/** Where and when a figure was measured; printed with every result so docs/benchmarks.md can quote it. */
export function machineLine(): string {
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  return `${new Date().toISOString().slice(0, 10)}, ${cpus().length}× ${cpu}, ${arch()} Linux ${release()}, Node ${process.version}`;
}

export interface Server {
  child: ChildProcess;
  url: string;
  /** From spawn to the first 200 of the probe path. */
  startupMs: number;
  stop(): Promise<void>;
}

/** A port that was free a moment ago; the child binds it right away. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * Starts a server in its own process (so the load generator and the measured server do not
 * share an event loop) on `port`, and waits until `probePath` answers 200.
 */
export async function startServer(command: string[], env: Record<string, string>, cwd: string, port: number, probePath = '/healthz', startupTimeoutMs = 30_000): Promise<Server> {
  const started = Date.now();
  const child = spawn(process.execPath, command, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let errors = '';
  child.stderr!.on('data', (chunk: Buffer) => (errors += chunk.toString()));
  // Keep the pipe flowing, as a log shipper would; a full pipe would block pino's writes.
  child.stdout!.resume();
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + startupTimeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}: ${errors}`);
    if (Date.now() > deadline) {
      // Not left running behind a failed benchmark.
      child.kill('SIGKILL');
      throw new Error(`server did not start within ${startupTimeoutMs} ms: ${errors}`);
    }
    const ok = await fetch(url + probePath).then((response) => response.ok, () => false);
    if (ok) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const startupMs = Date.now() - started;
  return {
    child,
    url,
    startupMs,
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await once(child, 'exit');
    },
  };
}

export interface LoadResult {
  requestsPerSecond: number;
  p99Ms: number;
  errors: number;
  non2xx: number;
}

export async function load(options: { url: string; connections: number; durationSeconds: number; method?: string; body?: string; headers?: Record<string, string> }): Promise<LoadResult> {
  const result = await autocannon({
    url: options.url,
    connections: options.connections,
    duration: options.durationSeconds,
    method: (options.method ?? 'GET') as 'GET',
    ...(options.body !== undefined ? { body: options.body } : {}),
    ...(options.headers ? { headers: options.headers } : {}),
  });
  return { requestsPerSecond: result.requests.average, p99Ms: result.latency.p99, errors: result.errors, non2xx: result.non2xx };
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

export const ADMIN_DATABASE_URL = process.env.CIPHERGATE_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/** A fresh, migrated PostgreSQL database for one benchmark run; `drop()` removes it. */
export async function createBenchDatabase(maxConnections: number): Promise<{ url: string; database: Database; drop(): Promise<void> }> {
  const name = `cg_bench_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
  await admin.connect();
  await admin.query(`create database "${name}"`);
  const url = new URL(ADMIN_DATABASE_URL);
  url.pathname = `/${name}`;
  const database = await openDatabase({ url: url.toString(), maxConnections });
  await migrate(database);
  return {
    url: url.toString(),
    database,
    async drop() {
      await database.close();
      await admin.query(`drop database if exists "${name}" with (force)`);
      await admin.end();
    },
  };
}

export interface Comparison {
  /** Median ops/s of the baseline and the candidate over the rounds. */
  baseline: number;
  candidate: number;
  /** Median of per-round ratios: each ratio pairs two runs adjacent in time, so load from
   * other processes that drifts between rounds cancels out. */
  ratio: number;
}

/**
 * Measures baseline and candidate in alternating order each round (A B, B A, …), after one
 * warm-up run of each. `measure*` return ops/s for one run; sync or async.
 */
export async function compareAlternating(
  measureBaseline: () => number | Promise<number>,
  measureCandidate: () => number | Promise<number>,
  rounds: number,
): Promise<Comparison> {
  await measureBaseline();
  await measureCandidate();
  const baselineRuns: number[] = [];
  const candidateRuns: number[] = [];
  const ratios: number[] = [];
  for (let round = 0; round < rounds; round++) {
    let baselineOps: number;
    let candidateOps: number;
    if (round % 2 === 0) {
      baselineOps = await measureBaseline();
      candidateOps = await measureCandidate();
    } else {
      candidateOps = await measureCandidate();
      baselineOps = await measureBaseline();
    }
    baselineRuns.push(baselineOps);
    candidateRuns.push(candidateOps);
    ratios.push(candidateOps / baselineOps);
  }
  return { baseline: median(baselineRuns), candidate: median(candidateRuns), ratio: median(ratios) };
}
