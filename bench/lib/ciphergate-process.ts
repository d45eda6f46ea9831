// What the benchmarks that run Ciphergate as an operator does (a child `ciphergate` from the
// sources) share: the CLI entry, `tenants put`, a process's CPU time, the durability check of
// an ingest run, and the small formatting the result tables use.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql } from 'drizzle-orm';
import { JOB } from '../../src/domain/job-kinds.js';
import { openDatabase, queryRows, type Db } from '../../src/store/connection.js';
import type { TwilioAccount } from './twilio-inbound.js';

export const ROOT = join(fileURLToPath(import.meta.url), '..', '..', '..');
export const CLI_ENTRY = join(ROOT, 'src', 'cli', 'main.ts');
/** By path: the children run in a scratch directory, where `--import tsx` would not resolve. */
export const TSX_LOADER = join(ROOT, 'node_modules', 'tsx', 'dist', 'esm', 'index.mjs');
/** USER_HZ: 100 on every Linux this runs on (`getconf CLK_TCK`). */
const CLOCK_TICKS_PER_SECOND = 100;

/** `ciphergate tenants put` with Twilio settings and an openai block (so each message enqueues an ai-reply job). */
export async function putTenant(env: Record<string, string>, cwd: string, slug: string, account: TwilioAccount): Promise<void> {
  const tenant = {
    name: 'Bench Clinic',
    twilio: { accountSid: account.accountSid, authToken: account.authToken, fromNumber: account.fromNumber },
    openai: { apiKey: `sk-bench-${randomBytes(16).toString('hex')}`, model: 'gpt-4o-mini' },
  };
  const child = spawn(process.execPath, ['--import', TSX_LOADER, CLI_ENTRY, 'tenants', 'put', slug], { cwd, env: { ...process.env, ...env }, stdio: ['pipe', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdin!.end(JSON.stringify(tenant));
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`ciphergate tenants put exited with ${code}: ${stderr}`);
}

/**
 * Every MessageSid that got a 2xx is stored, once (the dedupe key is unique per tenant); rows
 * beyond those can only be deliveries in flight when a run ended, committed but never answered;
 * and each stored message has its pending ai-reply job. `db` is a PostgreSQL connection, or
 * absent to open the PGlite data dir `dataDir` (after its server stopped).
 */
export async function checkDurability(db: Db | undefined, dataDir: string, acknowledged: string[], unanswered: number): Promise<{ ok: boolean; line: string }> {
  const pglite = db === undefined ? await openDatabase({ dataDir }) : undefined;
  const source = db ?? pglite!.db;
  try {
    const stored = await queryRows<{ dedupe_key: string }>(source, sql`select dedupe_key from messages where direction = 'inbound'`);
    const [jobs] = await queryRows<{ count: number | string }>(source, sql`select count(*) as count from jobs where kind = ${JOB.aiReply} and state = 'pending'`);
    const storedKeys = new Set(stored.map((row) => row.dedupe_key));
    const missing = acknowledged.filter((sid) => !storedKeys.has(`twilio:${sid}`)).length;
    const extra = storedKeys.size - (acknowledged.length - missing);
    const pendingJobs = Number(jobs?.count ?? 0);
    const ok = missing === 0 && extra >= 0 && extra <= unanswered && pendingJobs === stored.length;
    return {
      ok,
      line:
        `${fmt(acknowledged.length)} deliveries got a 2xx, ${fmt(stored.length)} messages stored, ${missing} acknowledged but missing, ` +
        `${extra} stored beyond the acknowledged (of ${unanswered} in flight when a run ended), ${fmt(pendingJobs)} pending ai-reply jobs: ${ok ? 'ok' : 'FAILED'}`,
    };
  } finally {
    await pglite?.close();
  }
}

/** User + system CPU time of a process so far (Linux /proc; clock ticks of 10 ms). */
export function processCpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which may contain spaces: state is field 3, utime 14, stime 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * (1000 / CLOCK_TICKS_PER_SECOND);
  } catch {
    return Number.NaN;
  }
}

export function fmt(value: number): string {
  return Math.round(value).toLocaleString('en-US');
}

/** The 1, 5 and 15 minute load averages. */
export function loadLine(): string {
  return loadavg()
    .map((value) => value.toFixed(1))
    .join(' / ');
}
