/**
 * A whole sign-in from a trusted device, `POST /api/v1/auth/login` with email, password and a
 * valid `deviceToken`, through the real app (buildApp with a real Identity: schema validation,
 * per-IP throttle, account lookup by blind index, argon2id, device recognition, a session row
 * and a refresh token inserted, an EdDSA access token signed, the audit event chained, the
 * JSON request log line), against a bare @node-rs/argon2 `verify` of the same stored hash
 * (OWASP parameters m=19456 KiB, t=2, p=1) in the same run.
 *
 * ratio = login requests/s ÷ raw verifies/s (equivalently: raw verify time ÷ login time), so
 * 0.9× means the sign-in around the hash costs at most a ninth of the hash itself.
 *
 * Each request comes from its own address (10.x.y.z through app.inject): the per-IP budget of
 * the login throttle (30 attempts a minute by default) is meant for one address spraying
 * accounts, and many users signing in at once come from many addresses; the throttle still
 * does all its work on every request.
 *
 *   node --import tsx bench/login-trusted-device.bench.ts     BENCH_BACKENDS=pglite to skip PostgreSQL
 */

import { loadavg } from 'node:os';
import { pathToFileURL } from 'node:url';
import { verify } from '@node-rs/argon2';
import { appendAuditEvent } from '../src/store/audit-trail.js';
import { compareAlternating, machineLine } from './lib/harness.js';
import { benchBackends, createSignedInUser, injectJson, loadLine, openIdentityBench, opsPerSecond, type BenchBackend, type IdentityBench } from './lib/identity.js';

export interface LoginBenchRow {
  backend: BenchBackend;
  operation: string;
  concurrency: number;
  verifyOpsPerSec: number;
  loginOpsPerSec: number;
  ratio: number;
  goal: number | undefined;
}

/** Where one sequential sign-in's time goes: mean milliseconds per login of each timed step. */
export interface LoginBreakdown {
  backend: BenchBackend;
  logins: number;
  loginMs: number;
  rawVerifyMs: number;
  auditAppendMs: number;
  steps: Array<{ step: string; ms: number }>;
}

export interface LoginBenchOptions {
  rounds?: number;
  /** Operations per side per round; one is ~12–25 ms here. */
  opsPerRound?: number;
  print?: boolean;
}

const GOAL = 0.9;

export async function main(options: LoginBenchOptions = {}): Promise<{ rows: LoginBenchRow[]; breakdowns: LoginBreakdown[] }> {
  const rounds = options.rounds ?? Number(process.env.BENCH_ROUNDS ?? 9);
  const opsPerRound = options.opsPerRound ?? Number(process.env.BENCH_OPS ?? 16);
  const startLoad = loadavg();
  const { backends, notes } = await benchBackends();
  const rows: LoginBenchRow[] = [];
  const breakdowns: LoginBreakdown[] = [];
  for (const backend of backends) {
    const measured = await measureBackend(backend, rounds, opsPerRound);
    rows.push(...measured.rows);
    breakdowns.push(measured.breakdown);
  }
  if (options.print ?? true) {
    console.log(markdownTable(rows, rounds, opsPerRound, [loadLine(startLoad), ...notes]));
    console.log(breakdownTable(breakdowns));
  }
  return { rows, breakdowns };
}

async function measureBackend(backend: BenchBackend, rounds: number, opsPerRound: number): Promise<{ rows: LoginBenchRow[]; breakdown: LoginBreakdown }> {
  const bench = await openIdentityBench({ backend });
  try {
    const user = await createSignedInUser(bench);
    const rawVerify = async () => {
      if (!(await verify(user.passwordHash, user.password))) throw new Error('raw verify refused the right password');
    };
    let address = 0;
    const login = async () => {
      address += 1;
      const response = await injectJson(
        bench.app,
        'POST',
        '/api/v1/auth/login',
        { email: user.email, password: user.password, deviceToken: user.deviceToken },
        `10.${(address >> 16) & 255}.${(address >> 8) & 255}.${address & 255}`,
      );
      // Tokens in the body means no second factor was asked for: the device was recognised.
      if (response.statusCode !== 200) throw new Error(`login answered ${response.statusCode} ${response.body}`);
    };

    const rows: LoginBenchRow[] = [];
    const pair = async (operation: string, baseline: () => Promise<void>, candidate: () => Promise<void>, concurrency: number, goal: number | undefined) => {
      const result = await compareAlternating(
        () => opsPerSecond(baseline, opsPerRound, concurrency),
        () => opsPerSecond(candidate, opsPerRound, concurrency),
        rounds,
      );
      rows.push({ backend, operation, concurrency, verifyOpsPerSec: result.baseline, loginOpsPerSec: result.candidate, ratio: result.ratio, goal });
    };
    // A/A: the baseline against itself shows how much of a ratio is noise on this host.
    await pair('A/A noise check (raw verify vs raw verify)', rawVerify, rawVerify, 1, undefined);
    // One sign-in at a time: what one user waits for.
    await pair('login, trusted device', rawVerify, login, 1, GOAL);
    // Two in flight on two cores: argon2 runs on libuv's pool, so this is the capacity ratio,
    // with the database and the event loop competing for the same cores.
    await pair('login, trusted device', rawVerify, login, 2, GOAL);
    // Last, because it wraps the identity's methods with timers.
    const breakdown = await breakDown(bench, backend, login, rawVerify, 4 * opsPerRound);
    return { rows, breakdown };
  } finally {
    await bench.close();
  }
}

/**
 * Times the steps of a sign-in by wrapping the identity's parts, then the raw verify and one
 * audit append on their own (the append is a module function, so it cannot be wrapped):
 * what the login adds to the hash, step by step. The wrappers cost microseconds.
 */
async function breakDown(bench: IdentityBench, backend: BenchBackend, login: () => Promise<void>, rawVerify: () => Promise<void>, logins: number): Promise<LoginBreakdown> {
  const { parts } = bench.identity;
  const totals = new Map<string, number>();
  const timed = <T extends object>(target: T, method: keyof T & string, step: string) => {
    const original = target[method] as unknown as (...args: unknown[]) => Promise<unknown>;
    totals.set(step, 0);
    (target as Record<string, unknown>)[method] = async (...args: unknown[]) => {
      const start = process.hrtime.bigint();
      try {
        return await original.apply(target, args);
      } finally {
        totals.set(step, totals.get(step)! + Number(process.hrtime.bigint() - start) / 1e6);
      }
    };
  };
  timed(parts.throttle, 'consumeIp', 'throttle: per-IP budget');
  timed(parts.throttle, 'check', 'throttle: account+IP lock check');
  timed(parts.users, 'findByEmail', 'user by email blind index (1 select)');
  timed(parts.throttle, 'recordSuccess', 'throttle: clear failures');
  timed(parts.factors, 'offeredTo', 'standalone second factor enrolled (1 select)');
  timed(parts.devices, 'recognise', 'device token recognised, expiry slid (1 update)');
  timed(parts.sessions, 'start', 'session + refresh token (2 inserts)');
  timed(bench.identity, 'accessTokenFor', 'access token signed (EdDSA)');

  const mean = async (fn: () => Promise<unknown>) => {
    const start = process.hrtime.bigint();
    for (let i = 0; i < logins; i++) await fn();
    return Number(process.hrtime.bigint() - start) / 1e6 / logins;
  };
  const loginMs = await mean(login);
  const steps = [...totals].map(([step, ms]) => ({ step, ms: ms / logins }));
  const rawVerifyMs = await mean(rawVerify);
  const auditAppendMs = await mean(() => appendAuditEvent(parts.db, { actor: { type: 'system' }, action: 'job.retry', outcome: 'success' }));
  return { backend, logins, loginMs, rawVerifyMs, auditAppendMs, steps };
}

function breakdownTable(breakdowns: LoginBreakdown[]): string {
  const lines = [
    '',
    `Where a sign-in's time goes: mean ms per login over ${breakdowns[0]?.logins ?? 0} sequential logins (steps timed inside the login; raw verify and audit append timed on their own)`,
    '',
    `| step | ${breakdowns.map((breakdown) => breakdown.backend).join(' | ')} |`,
    `| --- | ${breakdowns.map(() => '---:').join(' | ')} |`,
  ];
  const cell = (ms: number) => ms.toFixed(2);
  const row = (label: string, pick: (breakdown: LoginBreakdown) => number) => lines.push(`| ${label} | ${breakdowns.map((breakdown) => cell(pick(breakdown))).join(' | ')} |`);
  row('whole login (POST /api/v1/auth/login)', (breakdown) => breakdown.loginMs);
  row('argon2id verify (raw, on its own)', (breakdown) => breakdown.rawVerifyMs);
  for (const [index, step] of (breakdowns[0]?.steps ?? []).entries()) row(step.step, (breakdown) => breakdown.steps[index]!.ms);
  row('audit event appended (on its own: lock, head, insert)', (breakdown) => breakdown.auditAppendMs);
  row(
    'rest: HTTP, validation, log line, waits',
    (breakdown) => breakdown.loginMs - breakdown.rawVerifyMs - breakdown.auditAppendMs - breakdown.steps.reduce((sum, step) => sum + step.ms, 0),
  );
  return lines.join('\n');
}

function markdownTable(rows: LoginBenchRow[], rounds: number, opsPerRound: number, notes: string[]): string {
  const lines = [
    machineLine(),
    `argon2id m=19456 KiB, t=2, p=1; ${rounds} alternating rounds of ${opsPerRound} operations per side; ops/s = median over rounds, ratio = median of per-round ratios (login ops/s ÷ raw verify ops/s)`,
    ...notes,
    '',
    '| backend | operation | in flight | raw verify ops/s | login ops/s | ratio | goal |',
    '| --- | --- | ---: | ---: | ---: | ---: | --- |',
  ];
  for (const row of rows) {
    const goal = row.goal === undefined ? 'ideally 1.00×' : `≥ ${row.goal}× ${row.ratio >= row.goal ? 'met' : 'missed'}`;
    lines.push(`| ${row.backend} | ${row.operation} | ${row.concurrency} | ${row.verifyOpsPerSec.toFixed(1)} | ${row.loginOpsPerSec.toFixed(1)} | ${row.ratio.toFixed(2)}× | ${goal} |`);
  }
  return lines.join('\n');
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main();
}
