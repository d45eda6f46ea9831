// /healthz of the full app (helmet, swagger, error handling, request ids, JSON logs) against a
// bare Fastify route, both in child processes, loaded alternately with autocannon on loopback.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, load, machineLine, median, startServer } from './lib/harness.js';

const ROOT = join(fileURLToPath(import.meta.url), '..', '..');
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const CONNECTIONS = 50;

export async function main(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'cg-bench-'));
  const tsx = ['--import', 'tsx'];
  const barePort = await freePort();
  const bare = await startServer([...tsx, join(ROOT, 'bench/servers/bare-fastify.ts')], { PORT: String(barePort) }, ROOT, barePort);
  const variants = [
    { name: 'ciphergate, log level info (default)', level: 'info' },
    { name: 'ciphergate, log level warn', level: 'warn' },
  ];
  const rows: string[] = [];
  const startups: number[] = [];
  for (const variant of variants) {
    const port = await freePort();
    const full = await startServer(
      [join(ROOT, 'bin/ciphergate.js'), 'serve'],
      { CIPHERGATE_PORT: String(port), CIPHERGATE_DATA_DIR: join(dataDir, variant.level), CIPHERGATE_LOG_LEVEL: variant.level },
      ROOT,
      port,
    );
    startups.push(full.startupMs);
    const bareRps: number[] = [];
    const fullRps: number[] = [];
    const fullP99: number[] = [];
    await load({ url: `${bare.url}/healthz`, connections: CONNECTIONS, durationSeconds: 1 });
    await load({ url: `${full.url}/healthz`, connections: CONNECTIONS, durationSeconds: 1 });
    for (let round = 0; round < ROUNDS; round += 1) {
      bareRps.push((await load({ url: `${bare.url}/healthz`, connections: CONNECTIONS, durationSeconds: SECONDS })).requestsPerSecond);
      const result = await load({ url: `${full.url}/healthz`, connections: CONNECTIONS, durationSeconds: SECONDS });
      if (result.errors > 0 || result.non2xx > 0) throw new Error(`full app answered ${result.non2xx} non-2xx, ${result.errors} errors`);
      fullRps.push(result.requestsPerSecond);
      fullP99.push(result.p99Ms);
    }
    await full.stop();
    const ratio = median(fullRps) / median(bareRps);
    rows.push(`| ${variant.name} | ${Math.round(median(fullRps))} | ${Math.round(median(bareRps))} | ${ratio.toFixed(2)}× | ${median(fullP99)} ms | ≥ 0.9× |`);
  }
  await bare.stop();
  console.log(`\n### /healthz: full app vs bare Fastify (${CONNECTIONS} connections, ${ROUNDS}×${SECONDS}s, median)\n${machineLine()}\n`);
  console.log('| variant | req/s | bare Fastify req/s | ratio | p99 | goal |\n|---|---|---|---|---|---|');
  for (const row of rows) console.log(row);
  console.log(`\nStart-up of \`ciphergate serve\` on a fresh embedded database (spawn to first 200 on /healthz): ${startups.map((ms) => `${ms} ms`).join(', ')} (goal < 10 s)`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
