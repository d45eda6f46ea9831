import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI_ENTRY = join(REPO_ROOT, 'src', 'cli', 'main.ts');
const TSX_LOADER = join(REPO_ROOT, 'node_modules', 'tsx', 'dist', 'esm', 'index.mjs');

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** The environment a child gets: only what the test says, plus PATH/HOME, never the developer's CIPHERGATE_*. */
export function cleanEnv(extra: Record<string, string | undefined>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const key of ['PATH', 'HOME', 'SOFTHSM2_CONF', 'TMPDIR']) {
    const value = process.env[key];
    if (value !== undefined) env[key] = value;
  }
  for (const [key, value] of Object.entries(extra)) if (value !== undefined) env[key] = value;
  return env;
}

const liveChildren = new Set<ChildProcess>();

/**
 * Kills every child still running. Test files that spawn call it in `after()`, so a failed
 * assertion between start and stop cannot leave a server behind that keeps the run alive.
 */
export async function stopChildren(): Promise<void> {
  await Promise.all(
    [...liveChildren].map(async (child) => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await once(child, 'exit');
    }),
  );
  liveChildren.clear();
}

/** Starts `ciphergate ARGS` from the sources (so tests never run a stale build). */
export function spawnCli(args: string[], options: { env: Record<string, string | undefined>; cwd: string; stdin?: string }): ChildProcess & {
  output: { stdout: string; stderr: string };
} {
  const child = spawn(process.execPath, ['--import', TSX_LOADER, CLI_ENTRY, ...args], {
    cwd: options.cwd,
    env: cleanEnv(options.env),
    stdio: ['pipe', 'pipe', 'pipe'],
  }) as ChildProcess & { output: { stdout: string; stderr: string } };
  liveChildren.add(child);
  child.once('exit', () => liveChildren.delete(child));
  child.output = { stdout: '', stderr: '' };
  child.stdout!.on('data', (chunk: Buffer) => (child.output.stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (child.output.stderr += chunk.toString()));
  if (options.stdin !== undefined) child.stdin!.end(options.stdin);
  else child.stdin!.end();
  return child;
}

export async function runCliProcess(
  args: string[],
  options: { env: Record<string, string | undefined>; cwd: string; stdin?: string; timeoutMs?: number },
): Promise<CliResult> {
  const child = spawnCli(args, options);
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
  const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
  clearTimeout(timer);
  return { code, signal, stdout: child.output.stdout, stderr: child.output.stderr };
}

/** Waits until `predicate(output)` holds or the process exits / time runs out. */
export async function waitForOutput(
  child: ChildProcess & { output: { stdout: string; stderr: string } },
  predicate: (output: { stdout: string; stderr: string }) => boolean,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate(child.output)) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`process exited (${child.exitCode ?? child.signalCode}) before the expected output; stderr: ${child.output.stderr}`);
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for output; stdout: ${child.output.stdout.slice(-2000)} stderr: ${child.output.stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Parses the JSON log lines a child wrote to stdout. */
export function logLines(stdout: string): Array<Record<string, unknown>> {
  return stdout
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** A refusal is one line on stderr: the reason, never a stack trace or a usage dump. */
export function assertOneLine(stderr: string): void {
  assert.equal(stderr.trimEnd().split('\n').length, 1, `expected one line on stderr, got: ${stderr}`);
}
