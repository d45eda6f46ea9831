import { execFile } from 'node:child_process';
import { accessSync, chmodSync, chownSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { freePort } from './ports.js';

/**
 * A PostgreSQL cluster of the test's own (initdb + pg_ctl in a temp folder, on a free loopback
 * port), so a drill can stop or restart it without disturbing the suites that share the
 * machine's server. As root the cluster runs as `postgres` (PostgreSQL refuses to run as root).
 */
export interface PrivatePostgres {
  /** `postgres://postgres@127.0.0.1:PORT/postgres` (trust authentication, loopback only). */
  readonly url: string;
  readonly port: number;
  /** `pg_ctl restart -m fast`: every connection is cut (57P01), the server is back when this resolves. */
  restart(): Promise<void>;
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stops the server and removes its folder. */
  destroy(): Promise<void>;
}

const BIN = process.env.CIPHERGATE_TEST_PG_BIN ?? '/usr/lib/postgresql/15/bin';
const run = promisify(execFile);
const AS_ROOT = process.getuid?.() === 0;

/** undefined when a private cluster can be made here, else why not. */
export function privatePostgresUnavailableReason(): string | undefined {
  for (const tool of ['initdb', 'pg_ctl', 'postgres']) {
    try {
      accessSync(join(BIN, tool), constants.X_OK);
    } catch {
      return `${join(BIN, tool)} is not there (set CIPHERGATE_TEST_PG_BIN)`;
    }
  }
  return undefined;
}

export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const root = mkdtempSync(join(tmpdir(), 'cg-private-pg-'));
  const dataDir = join(root, 'data');
  const logFile = join(root, 'server.log');
  if (AS_ROOT) {
    const { uid, gid } = await postgresUser();
    chownSync(root, uid, gid);
  }
  chmodSync(root, 0o700);
  const port = await freePort();
  // Unix sockets go to the private folder too: nothing of this cluster touches /var/run.
  const options = `-c listen_addresses=127.0.0.1 -c port=${port} -c unix_socket_directories=${root} -c fsync=off -c max_connections=50`;
  const pgCtl = async (...args: string[]) => {
    await runAsPostgres(join(BIN, 'pg_ctl'), ['-D', dataDir, '-l', logFile, '-o', options, '-w', '-t', '60', ...args]);
  };
  await runAsPostgres(join(BIN, 'initdb'), ['-D', dataDir, '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8']);
  await pgCtl('start');
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  await waitUntilAccepting(url);
  let destroyed = false;
  return {
    url,
    port,
    async restart() {
      await pgCtl('restart', '-m', 'fast');
      await waitUntilAccepting(url);
    },
    async stop() {
      await pgCtl('stop', '-m', 'fast');
    },
    async start() {
      await pgCtl('start');
      await waitUntilAccepting(url);
    },
    async destroy() {
      if (destroyed) return;
      destroyed = true;
      await pgCtl('stop', '-m', 'immediate').catch(() => undefined);
      rmSync(root, { recursive: true, force: true });
    },
  };
}

async function runAsPostgres(file: string, args: string[]): Promise<void> {
  if (!AS_ROOT) {
    await run(file, args, { timeout: 120_000 });
    return;
  }
  await run('runuser', ['-u', 'postgres', '--', file, ...args], { timeout: 120_000 });
}

async function postgresUser(): Promise<{ uid: number; gid: number }> {
  const { stdout } = await run('id', ['postgres']);
  const uid = /uid=(\d+)/.exec(stdout)?.[1];
  const gid = /gid=(\d+)/.exec(stdout)?.[1];
  if (!uid || !gid) throw new Error('no postgres user to run a private cluster as');
  return { uid: Number(uid), gid: Number(gid) };
}

async function waitUntilAccepting(url: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
    try {
      await client.connect();
      await client.query('select 1');
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
    } finally {
      await client.end().catch(() => undefined);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
