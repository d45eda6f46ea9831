import type { Command } from 'commander';
import { gatherStatus, type GatewayStatus } from '../../runtime/status.js';
import { openRuntime, type CliIo } from '../runtime.js';

export function registerStatus(program: Command, io: CliIo): void {
  program
    .command('status')
    .description('version, store and migrations, keys, Redis, job queue and server, like `vault status`; exit 1 when something is unusable')
    .option('--json', 'one JSON document instead of a table')
    .action(async (options: { json?: boolean }) => {
      const runtime = await openRuntime(io, { logTo: 'stderr', defaultLogLevel: 'error' });
      try {
        const status = await gatherStatus({
          config: runtime.config,
          database: runtime.database,
          logger: runtime.logger,
          ...(io.hosted ? { keyProvider: io.hosted.runtime.sealing.provider, listeningUrl: io.hosted.listeningUrl } : {}),
        });
        io.stdout.write(options.json ? `${JSON.stringify(status, null, 2)}\n` : statusTable(status));
        if (!status.healthy) process.exitCode = 1;
      } finally {
        await runtime.close();
      }
    });
}

function statusTable(status: GatewayStatus): string {
  const { store, keys, redis, queue, server } = status;
  const plural = (count: number, one: string, many = `${one}s`) => `${count} ${count === 1 ? one : many}`;
  const rows: Array<[string, string]> = [
    ['version', status.version],
    ['store', `${store.kind} (${store.location})`],
    ['migrations', `${store.migrations.applied} of ${store.migrations.available} applied (latest ${store.migrations.latest})`],
    ['key provider', keys.provider],
    ['KEK', keys.kekReachable ? 'reachable' : `UNREACHABLE: ${keys.kekError ?? 'unknown error'}`],
    ...keys.dataKeys.map((key): [string, string] => [`data key ${key.scope}`, `v${key.currentVersion} (${plural(key.versions, 'active version')}), ${plural(key.currentAgeDays, 'day')} old`]),
    ['signing key', keys.signingKey ? `${keys.signingKey.kid}, ${plural(keys.signingKey.ageDays, 'day')} old` : 'none yet (made at the first start)'],
    ['redis', redis.configured ? `${redis.location}: ${redis.reachable ? 'reachable' : 'UNREACHABLE'}` : 'not configured (per-instance limits and revocations)'],
    ['queue', `${queue.pending} pending (${queue.due} due), ${queue.running} running, ${plural(queue.dead, 'dead letter')}`],
    ['listening', `${server.listen}: ${server.listening ? 'answering' : 'NOT ANSWERING'}`],
    ['public URL', server.publicUrl],
  ];
  const width = Math.max(...rows.map(([label]) => label.length));
  return rows.map(([label, value]) => `${label.padEnd(width)}  ${value}\n`).join('');
}
