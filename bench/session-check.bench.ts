/**
 * What the session check adds to an authenticated request: the same trivial GET behind the
 * app's full guard (bearer header, JWT verification, `Sessions.checkLive`, permission) against
 * a route of the same app that verifies the JWT and checks the permission but skips the
 * session check (see `sessionCheckRoutes` in lib/identity.ts). Goal: ≥ 0.95×, i.e. the check
 * adds less than 5 %.
 *
 * Two harnesses, each alternating the two routes round by round (compareAlternating):
 *
 * - in process with app.inject, 10 requests in flight, on PGlite and on PostgreSQL. No
 *   sockets, so the server's own work is nearly the whole denominator: the stricter figure.
 *   A second row gives every request its own session (round-robin over more sessions than
 *   are checked per second), so every check misses the 1 s liveness cache and reads the
 *   database: the worst case, reported without a goal.
 * - over HTTP with autocannon against the app in a child process (embedded database), as
 *   bench/http-healthz.bench.ts does.
 *
 *   node --import tsx bench/session-check.bench.ts     BENCH_BACKENDS=pglite, BENCH_ROUNDS, BENCH_REQUESTS, BENCH_HTTP_ROUNDS, BENCH_SECONDS
 */

import { mkdtempSync, readFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { LIVENESS_CACHE_MS } from '../src/identity/sessions/sessions.js';
import { compareAlternating, freePort, load, machineLine, median, startServer } from './lib/harness.js';
import {
  GUARDED_PATH,
  JWT_ONLY_PATH,
  benchBackends,
  loadLine,
  createSignedInUser,
  openIdentityBench,
  opsPerSecond,
  sessionCheckRoutes,
  type BenchBackend,
  type IdentityBench,
} from './lib/identity.js';

const ROOT = join(fileURLToPath(import.meta.url), '..', '..');
const GOAL = 0.95;
const IN_FLIGHT = 10;
const HTTP_CONNECTIONS = 50;

export interface SessionCheckRow {
  harness: string;
  operation: string;
  baselineOpsPerSec: number;
  candidateOpsPerSec: number;
  ratio: number;
  goal: number | undefined;
  note?: string;
}

export interface SessionCheckOptions {
  rounds?: number;
  /** Requests per side per round, in process. */
  requestsPerRound?: number;
  /** Over HTTP, where a round takes seconds rather than one. */
  httpRounds?: number;
  /** Seconds per side per round, over HTTP. */
  httpSeconds?: number;
  print?: boolean;
}

export async function main(options: SessionCheckOptions = {}): Promise<SessionCheckRow[]> {
  const rounds = options.rounds ?? Number(process.env.BENCH_ROUNDS ?? 15);
  const httpRounds = options.httpRounds ?? Number(process.env.BENCH_HTTP_ROUNDS ?? 9);
  const requestsPerRound = options.requestsPerRound ?? Number(process.env.BENCH_REQUESTS ?? 2000);
  const httpSeconds = options.httpSeconds ?? Number(process.env.BENCH_SECONDS ?? 3);
  const startLoad = loadavg();
  const { backends, notes } = await benchBackends();
  const rows: SessionCheckRow[] = [];
  for (const backend of backends) rows.push(...(await measureInProcess(backend, rounds, requestsPerRound)));
  rows.push(...(await measureOverHttp(httpRounds, httpSeconds)));
  if (options.print ?? true) console.log(markdownTable(rows, rounds, requestsPerRound, httpRounds, httpSeconds, [loadLine(startLoad), ...notes]));
  return rows;
}

async function measureInProcess(backend: BenchBackend, rounds: number, requestsPerRound: number): Promise<SessionCheckRow[]> {
  const harness = `inject, ${backend}, ${IN_FLIGHT} in flight`;
  const bench = await openIdentityBench({ backend, env: { CIPHERGATE_API_RATE_LIMIT_PER_MINUTE: '1000000' }, routes: [sessionCheckRoutes] });
  try {
    const user = await createSignedInUser(bench);
    const rows: SessionCheckRow[] = [];
    // Each side walks the tokens round-robin across its rounds, so with enough tokens a
    // session comes back only after `tokens.length` of that side's requests.
    const compare = async (tokens: string[], requests: number, baselinePath: string, candidatePath: string) => {
      let baselineCursor = 0;
      let candidateCursor = 0;
      const result = await compareAlternating(
        () => opsPerSecond(() => get(bench, baselinePath, tokens[baselineCursor++ % tokens.length]!), requests, IN_FLIGHT),
        () => opsPerSecond(() => get(bench, candidatePath, tokens[candidateCursor++ % tokens.length]!), requests, IN_FLIGHT),
        rounds,
      );
      return { baselineOpsPerSec: result.baseline, candidateOpsPerSec: result.candidate, ratio: result.ratio };
    };

    // Tokens live 10 minutes: each comparison gets tokens made just before it.
    const oneSession = async () => [await freshToken(bench, user.userId, user.sessionId)];
    rows.push({ harness, operation: 'A/A noise check (JWT only vs JWT only)', ...(await compare(await oneSession(), requestsPerRound, JWT_ONLY_PATH, JWT_ONLY_PATH)), goal: undefined, note: 'ideally 1.00×' });
    rows.push({ harness, operation: 'guard with session check vs JWT only, one session', ...(await compare(await oneSession(), requestsPerRound, JWT_ONLY_PATH, GUARDED_PATH)), goal: GOAL });

    // The check alone on its hot path (an entry younger than the cache's life), timed
    // directly: the cost the requests above carry, free of their noise. The implied ratio
    // adds it to the time of one JWT-only request at that row's median rate.
    const checkSeconds = await secondsPerLivenessCheck(bench, user.sessionId);
    const jwtOnlyRate = rows[1]!.baselineOpsPerSec;
    rows.push({
      harness: `function calls, ${backend}`,
      operation: 'Sessions.checkLive alone, cache hit',
      baselineOpsPerSec: jwtOnlyRate,
      candidateOpsPerSec: 1 / (1 / jwtOnlyRate + checkSeconds),
      ratio: 1 / (1 + checkSeconds * jwtOnlyRate),
      goal: undefined,
      note: `${formatMicroseconds(checkSeconds)} per check; candidate and ratio derived, not measured`,
    });

    // Every request its own session: more sessions than the guarded side checks in a second
    // (and than two rounds send), so no check finds a fresh cache entry and each one reads
    // the database. A quarter of the requests per round: this side is several times slower.
    const coldRequests = Math.max(100, Math.round(requestsPerRound / 4));
    const sessionCount = 4 * coldRequests;
    const tokens = await manySessions(bench, user.userId, sessionCount);
    const coldCheck = await compare(tokens, coldRequests, JWT_ONLY_PATH, GUARDED_PATH);
    const revisitSeconds = sessionCount / coldCheck.candidateOpsPerSec;
    rows.push({
      harness,
      operation: `guard with session check vs JWT only, ${sessionCount} sessions round-robin`,
      ...coldCheck,
      // The same goal, honestly applied: this is what a client sending less than one request
      // a second meets on every request.
      goal: GOAL,
      note: `worst case: each session revisited after ≥ ${revisitSeconds.toFixed(1)} s${revisitSeconds * 1000 > LIVENESS_CACHE_MS ? ', every check a cache miss' : ' (some cache hits)'}; the check ≈ ${formatMicroseconds((1 / coldCheck.ratio - 1) / coldCheck.baselineOpsPerSec)} per request`,
    });
    return rows;
  } finally {
    await bench.close();
  }
}

async function measureOverHttp(rounds: number, seconds: number): Promise<SessionCheckRow[]> {
  const harness = `HTTP, pglite, autocannon ${HTTP_CONNECTIONS} connections × ${seconds} s`;
  const tokenFile = join(mkdtempSync(join(tmpdir(), 'cg-bench-')), 'token');
  const port = await freePort();
  // Start-up migrates a fresh embedded database and signs a user in (two argon2id runs): slow
  // when other work shares the machine, hence the long timeout.
  const server = await startServer(['--import', 'tsx', join(ROOT, 'bench/servers/session-check-app.ts')], { PORT: String(port), TOKEN_FILE: tokenFile }, ROOT, port, '/healthz', 180_000);
  try {
    const headers = { authorization: `Bearer ${readFileSync(tokenFile, 'utf8')}` };
    const measure = (path: string) => async () => {
      const result = await load({ url: server.url + path, connections: HTTP_CONNECTIONS, durationSeconds: seconds, headers });
      if (result.errors > 0 || result.non2xx > 0) throw new Error(`${path} answered ${result.non2xx} non-2xx, ${result.errors} errors`);
      return result.requestsPerSecond;
    };
    const noise = await compareAlternating(measure(JWT_ONLY_PATH), measure(JWT_ONLY_PATH), rounds);
    const check = await compareAlternating(measure(JWT_ONLY_PATH), measure(GUARDED_PATH), rounds);
    return [
      { harness, operation: 'A/A noise check (JWT only vs JWT only)', baselineOpsPerSec: noise.baseline, candidateOpsPerSec: noise.candidate, ratio: noise.ratio, goal: undefined, note: 'ideally 1.00×' },
      { harness, operation: 'guard with session check vs JWT only, one session', baselineOpsPerSec: check.baseline, candidateOpsPerSec: check.candidate, ratio: check.ratio, goal: GOAL },
    ];
  } finally {
    await server.stop();
  }
}

async function get(bench: IdentityBench, path: string, token: string): Promise<void> {
  const response = await bench.app.inject({ method: 'GET', url: path, remoteAddress: '127.0.0.1', headers: { authorization: `Bearer ${token}` } });
  if (response.statusCode !== 200) throw new Error(`${path} answered ${response.statusCode} ${response.body}`);
}

/** Median over runs of sequential checks of one session whose cache entry is fresh. */
async function secondsPerLivenessCheck(bench: IdentityBench, sessionId: string): Promise<number> {
  const { sessions } = bench.identity.parts;
  const perRun = 20_000;
  const runs: number[] = [];
  for (let run = 0; run < 7; run++) {
    // Outside the timer: refreshes the entry if it aged, so the timed run (far shorter than
    // the cache's life) is all hits.
    await sessions.checkLive(sessionId);
    const start = process.hrtime.bigint();
    for (let i = 0; i < perRun; i++) {
      if (!(await sessions.checkLive(sessionId))) throw new Error('the benchmark session is not live');
    }
    runs.push(Number(process.hrtime.bigint() - start) / 1e9 / perRun);
  }
  return median(runs);
}

async function freshToken(bench: IdentityBench, userId: string, sessionId: string): Promise<string> {
  const user = await bench.identity.parts.users.get(userId);
  return (await bench.identity.accessTokenFor(user!, sessionId)).token;
}

/** `count` live sessions of one user, each with its own access token. */
async function manySessions(bench: IdentityBench, userId: string, count: number): Promise<string[]> {
  const user = (await bench.identity.parts.users.get(userId))!;
  const tokens: string[] = [];
  for (let i = 0; i < count; i++) {
    const started = await bench.identity.parts.sessions.start({ userId, deviceLabel: 'bench', ip: '127.0.0.1' });
    tokens.push((await bench.identity.accessTokenFor(user, started.sessionId)).token);
  }
  return tokens;
}

function formatMicroseconds(seconds: number): string {
  return seconds >= 1e-3 ? `${(seconds * 1e3).toFixed(2)} ms` : `${(seconds * 1e6).toFixed(1)} µs`;
}

function markdownTable(rows: SessionCheckRow[], rounds: number, requestsPerRound: number, httpRounds: number, httpSeconds: number, notes: string[]): string {
  const lines = [
    machineLine(),
    `alternating rounds per pair (in process: ${rounds} rounds of ${requestsPerRound} requests per side; HTTP: ${httpRounds} rounds of ${httpSeconds} s per side); req/s = median over rounds, ratio = median of per-round ratios (guarded req/s ÷ JWT-only req/s)`,
    ...notes,
    '',
    '| harness | comparison | JWT only req/s | candidate req/s | ratio | goal |',
    '| --- | --- | ---: | ---: | ---: | --- |',
  ];
  for (const row of rows) {
    const verdict = row.goal === undefined ? '' : `≥ ${row.goal}× ${row.ratio >= row.goal ? 'met' : 'missed'}`;
    const goal = [verdict, row.note ?? ''].filter((part) => part !== '').join('; ');
    lines.push(`| ${row.harness} | ${row.operation} | ${Math.round(row.baselineOpsPerSec)} | ${Math.round(row.candidateOpsPerSec)} | ${row.ratio.toFixed(2)}× | ${goal} |`);
  }
  return lines.join('\n');
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main();
}
