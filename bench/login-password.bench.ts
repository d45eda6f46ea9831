/**
 * The password step of a sign-in from a trusted device, against bare @node-rs/argon2
 * `verify` on the same PHC string. The database lookups that surround it in a real sign-in
 * come later; this isolates what passwords.ts adds (NFKC, the length guard, error handling).
 * Each pair runs in alternating order over several rounds and the median per-round ratio is
 * reported, because a noisy neighbour hits one round, not all of them.
 *
 *   node --import tsx bench/login-password.bench.ts
 */

import { pathToFileURL } from 'node:url';
import { verify } from '@node-rs/argon2';
import { hashPassword, verifyAgainstDummy, verifyPassword } from '../src/identity/passwords/passwords.js';
import { compareAlternating, machineLine } from './lib/harness.js';

export interface BenchRow {
  operation: string;
  baseline: string;
  baselineOpsPerSec: number;
  candidate: string;
  candidateOpsPerSec: number;
  ratio: number;
  goal: number | undefined;
  note?: string;
}

export interface BenchOptions {
  rounds?: number;
  /** Sequential verifications per side per round; one is ~20–60 ms on current CPUs. */
  opsPerRound?: number;
  print?: boolean;
}

export async function main(options: BenchOptions = {}): Promise<BenchRow[]> {
  const rounds = options.rounds ?? 9;
  const opsPerRound = options.opsPerRound ?? 8;
  const password = 'correct horse battery staple';
  const phc = await hashPassword(password);
  const rows: BenchRow[] = [];

  // A/A: the baseline against itself shows how much of a ratio is just noise on this host.
  const noise = await compare(() => verify(phc, password), () => verify(phc, password), rounds, opsPerRound);
  rows.push({ operation: 'A/A noise check', baseline: 'argon2 verify', candidate: 'argon2 verify', ...noise, goal: undefined, note: 'ideally 1.00×' });

  const login = await compare(() => verify(phc, password), () => verifyPassword(phc, password), rounds, opsPerRound);
  rows.push({ operation: 'password sign-in (right password)', baseline: 'argon2 verify', candidate: 'verifyPassword', ...login, goal: 0.9 });

  // Not a speed goal: the unknown-email path should cost what the wrong-password path costs.
  const enumeration = await compare(
    () => verifyPassword(phc, 'wrong password guess'),
    () => verifyAgainstDummy('wrong password guess'),
    rounds,
    opsPerRound,
  );
  rows.push({
    operation: 'unknown email vs wrong password',
    baseline: 'verifyPassword',
    candidate: 'verifyAgainstDummy',
    ...enumeration,
    goal: undefined,
    note: 'should be ≈ 1.00× (timing oracle check)',
  });

  if (options.print ?? true) console.log(markdownTable(rows));
  return rows;
}

/** Alternating rounds of `opsPerRound` sequential operations each. */
async function compare(
  baseline: () => Promise<unknown>,
  candidate: () => Promise<unknown>,
  rounds: number,
  opsPerRound: number,
): Promise<{ baselineOpsPerSec: number; candidateOpsPerSec: number; ratio: number }> {
  const result = await compareAlternating(() => opsPerSecond(baseline, opsPerRound), () => opsPerSecond(candidate, opsPerRound), rounds);
  return { baselineOpsPerSec: result.baseline, candidateOpsPerSec: result.candidate, ratio: result.ratio };
}

/** Sequential, as one sign-in is: argon2id is memory-hard, so parallel runs measure RAM bandwidth. */
async function opsPerSecond(fn: () => Promise<unknown>, ops: number): Promise<number> {
  const start = process.hrtime.bigint();
  for (let i = 0; i < ops; i++) await fn();
  return ops / (Number(process.hrtime.bigint() - start) / 1e9);
}

function markdownTable(rows: BenchRow[]): string {
  const formatOps = (ops: number) => ops.toFixed(1);
  const lines = [
    machineLine(),
    'argon2id m=19456 KiB, t=2, p=1; ops/s = median over rounds, ratio = median of per-round ratios',
    '',
    '| operation | baseline | ops/s | candidate | ops/s | ratio | goal |',
    '| --- | --- | ---: | --- | ---: | ---: | --- |',
  ];
  for (const row of rows) {
    const goal = row.goal === undefined ? (row.note ?? '') : `≥ ${row.goal}× ${row.ratio >= row.goal ? 'met' : 'missed'}`;
    lines.push(
      `| ${row.operation} | ${row.baseline} | ${formatOps(row.baselineOpsPerSec)} | ${row.candidate} | ${formatOps(row.candidateOpsPerSec)} | ${row.ratio.toFixed(2)}× | ${goal} |`,
    );
  }
  return lines.join('\n');
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main();
}
