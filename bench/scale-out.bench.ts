/**
 * Scale-out (issue 7): the relay ingest of bench/inbound-sms.bench.ts (signed Twilio inbound SMS,
 * a fresh MessageSid each, 50 keep-alive connections, autocannon) against ONE `ciphergate serve`,
 * then the same load split over TWO instances on the same PostgreSQL database, in the same run.
 * The figure is combined requests/s of two over one; goal ≥ 1.6×.
 *
 * Both instances are `serve --no-workers` from the sources with the default log level, as in the
 * inbound benchmark: ingest alone (verify, seal, store, enqueue, 200 after the commit), the
 * ai-reply jobs stay pending. Redis is not used: the webhook path takes no rate limit and no
 * session, so it has nothing to share there. The split run gives each instance half of the
 * connections (two autocannon instances in this process, run at the same time); its p99 is the
 * higher of the two instances' p99s (autocannon reports percentiles, not the histogram, so the
 * exact p99 of the union is not available; the higher one bounds it from above).
 *
 * Rounds alternate the order (one, two; two, one; …) and the ratio is the median of per-round
 * ratios, so load from other processes that drifts between rounds cancels out. Every MessageSid
 * that got a 2xx must be stored afterwards, once, with its pending ai-reply job.
 *
 *   npm run bench -- scale-out
 *   BENCH_SECONDS (20)  BENCH_WARMUP_SECONDS (5)  BENCH_ROUNDS (2)
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { checkDurability, CLI_ENTRY, fmt, loadLine, processCpuMs, putTenant, TSX_LOADER } from './lib/ciphergate-process.js';
import { createBenchDatabase, freePort, machineLine, median, startServer, type Server } from './lib/harness.js';
import { loadSignedSms, phonePool, postDelivery, SignedDeliveries, type SmsLoadResult, type TwilioAccount } from './lib/twilio-inbound.js';

const CONNECTIONS = 50;
const SECONDS = Number(process.env.BENCH_SECONDS ?? 20);
const WARMUP_SECONDS = Number(process.env.BENCH_WARMUP_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const DISTINCT_SENDERS = 1_000;
const SLUG = 'bench-clinic';
const PUBLIC_URL = 'https://gateway.example.com';
const WEBHOOK_PATH = `/webhooks/twilio/${SLUG}/sms`;
/** No worker runs, so nothing is ever sent here. */
const UNUSED_PROVIDER_URL = 'http://127.0.0.1:9';
const GOAL_RATIO = 1.6;

/** One measured run: combined figures, and the CPU each instance and this process (the load generator) spent. */
interface Run {
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  perInstance: SmsLoadResult[];
  non2xx: number;
  errors: number;
  /** Server CPU (all instances together) per answered request. */
  serverCpuMsPerRequest: number;
  generatorCpuMsPerRequest: number;
}

export async function main(): Promise<void> {
  const account: TwilioAccount = { accountSid: `AC${randomBytes(16).toString('hex')}`, authToken: randomBytes(16).toString('hex'), fromNumber: '+14155550100' };
  const deliveries = new SignedDeliveries(account, `${PUBLIC_URL}${WEBHOOK_PATH}`, phonePool(DISTINCT_SENDERS));
  const loadBefore = loadLine();
  const workDir = mkdtempSync(join(tmpdir(), 'cg-bench-scale-'));
  const database = await createBenchDatabase(2);
  const env: Record<string, string> = {
    CIPHERGATE_PUBLIC_URL: PUBLIC_URL,
    CIPHERGATE_MASTER_KEY: randomBytes(32).toString('base64'),
    CIPHERGATE_OPENAI_BASE_URL: `${UNUSED_PROVIDER_URL}/v1`,
    CIPHERGATE_TWILIO_API_URL: UNUSED_PROVIDER_URL,
    CIPHERGATE_DATABASE_URL: database.url,
  };
  const servers: Server[] = [];
  try {
    await putTenant(env, workDir, SLUG, account);
    // Started together, as a deployment of two would be.
    servers.push(...(await Promise.all([startInstance(env, workDir), startInstance(env, workDir)])));
    const [first, second] = servers as [Server, Server];
    const urls = servers.map((server) => `${server.url}${WEBHOOK_PATH}`);

    // Both must really check signatures and store, or the figures mean nothing.
    const acknowledged: string[] = [];
    let unanswered = 0;
    deliveries.prepare(4);
    for (const url of urls) {
      const forged = await postDelivery(url, deliveries.forged());
      if (forged !== 403) throw new Error(`${url} answered ${forged} to a forged signature (expected 403)`);
      const genuine = deliveries.next();
      const status = await postDelivery(url, genuine);
      if (status !== 200) throw new Error(`${url} answered ${status} to a genuinely signed delivery`);
      acknowledged.push(genuine.sid);
    }

    let bestRate = 500;
    const run = async (instances: 1 | 2, seconds: number): Promise<Run> => {
      deliveries.prepare(Math.ceil(bestRate * 2 * seconds) + 1_000);
      const used = servers.slice(0, instances);
      const cpuBefore = used.map((server) => processCpuMs(server.child.pid!));
      const generatorBefore = process.cpuUsage();
      const perInstance = await Promise.all(
        used.map((_, index) => loadSignedSms({ url: urls[index]!, deliveries, connections: CONNECTIONS / instances, durationSeconds: seconds })),
      );
      const generator = process.cpuUsage(generatorBefore);
      const serverCpuMs = used.reduce((sum, server, index) => sum + processCpuMs(server.child.pid!) - cpuBefore[index]!, 0);
      for (const result of perInstance) {
        acknowledged.push(...result.acknowledged);
        unanswered += result.unanswered;
      }
      const answered = Math.max(1, perInstance.reduce((sum, result) => sum + result.ok + result.non2xx, 0));
      const requestsPerSecond = perInstance.reduce((sum, result) => sum + result.requestsPerSecond, 0);
      bestRate = Math.max(bestRate, requestsPerSecond);
      return {
        requestsPerSecond,
        p50Ms: Math.max(...perInstance.map((result) => result.p50Ms)),
        p99Ms: Math.max(...perInstance.map((result) => result.p99Ms)),
        perInstance,
        non2xx: perInstance.reduce((sum, result) => sum + result.non2xx, 0),
        errors: perInstance.reduce((sum, result) => sum + result.errors, 0),
        serverCpuMsPerRequest: serverCpuMs / answered,
        generatorCpuMsPerRequest: (generator.user + generator.system) / 1000 / answered,
      };
    };

    // Warm-up of both instances (JIT, pools, first message of most senders creates contact and conversation).
    await run(2, WARMUP_SECONDS);
    const one: Run[] = [];
    const two: Run[] = [];
    for (let round = 0; round < ROUNDS; round += 1) {
      if (round % 2 === 0) {
        one.push(await run(1, SECONDS));
        two.push(await run(2, SECONDS));
      } else {
        two.push(await run(2, SECONDS));
        one.push(await run(1, SECONDS));
      }
    }
    const ratio = median(two.map((result, index) => result.requestsPerSecond / one[index]!.requestsPerSecond));
    const startupMs = Math.max(first.startupMs, second.startupMs);
    await Promise.all(servers.map((server) => server.stop()));
    servers.length = 0;
    const durability = await checkDurability(database.database.db, workDir, acknowledged, unanswered);

    console.log(`\n### Scale-out: signed Twilio inbound SMS, one instance against two on one PostgreSQL`);
    console.log(machineLine());
    console.log(`${CONNECTIONS} connections in all (${CONNECTIONS / 2} per instance when split), ${ROUNDS} rounds × ${SECONDS} s per side after ${WARMUP_SECONDS} s warm-up, median of rounds\n`);
    console.log('| instances | req/s | p50 / p99 | non-2xx / errors | server CPU per request | load generator CPU per request |');
    console.log('|---|---:|---:|---:|---:|---:|');
    for (const [label, runs] of [['one', one], ['two', two]] as const) {
      console.log(
        `| ${label} | ${fmt(median(runs.map((result) => result.requestsPerSecond)))} | ${median(runs.map((result) => result.p50Ms))} / ${median(runs.map((result) => result.p99Ms))} ms | ` +
          `${runs.reduce((sum, result) => sum + result.non2xx, 0)} / ${runs.reduce((sum, result) => sum + result.errors, 0)} | ` +
          `${median(runs.map((result) => result.serverCpuMsPerRequest)).toFixed(2)} ms | ${median(runs.map((result) => result.generatorCpuMsPerRequest)).toFixed(2)} ms |`,
      );
    }
    console.log(`\nratio two / one: ${ratio.toFixed(2)}× (goal ≥ ${GOAL_RATIO}×: ${ratio >= GOAL_RATIO ? 'met' : 'missed'}); ${cpus().length} cores for both instances, PostgreSQL and the load generator`);
    console.log(`load average ${loadBefore} before, ${loadLine()} after; serve start-up ${startupMs} ms`);
    console.log(`  one: ${one.map(runLine).join('; ')}`);
    console.log(`  two: ${two.map(runLine).join('; ')}`);
    console.log(`  durability: ${durability.line}`);
    if (!durability.ok) throw new Error('durability check failed: see above');
  } finally {
    await Promise.all(servers.map((server) => server.stop()));
    await database.drop();
    rmSync(workDir, { recursive: true, force: true });
  }
}

async function startInstance(env: Record<string, string>, workDir: string): Promise<Server> {
  const port = await freePort();
  return startServer(['--import', TSX_LOADER, CLI_ENTRY, 'serve', '--no-workers'], { ...env, CIPHERGATE_HOST: '127.0.0.1', CIPHERGATE_PORT: String(port) }, workDir, port, '/readyz', 180_000);
}

function runLine(result: Run): string {
  const split = result.perInstance.length > 1 ? ` (${result.perInstance.map((part) => `${fmt(part.requestsPerSecond)} req/s p99 ${part.p99Ms} ms`).join(' + ')})` : '';
  return (
    `${fmt(result.requestsPerSecond)} req/s${split}, p99 ${result.p99Ms} ms, ${result.non2xx} non-2xx, ${result.errors} errors, ` +
    `server CPU ${result.serverCpuMsPerRequest.toFixed(2)} ms/req, load generator CPU ${result.generatorCpuMsPerRequest.toFixed(2)} ms/req`
  );
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
