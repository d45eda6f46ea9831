import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import type { LightMyRequestResponse } from 'fastify';
import { AuditLog } from '../../src/audit/audit-log.js';
import { openRelay } from '../../src/runtime/worker.js';
import { openSealingRuntime, type SealingRuntime } from '../../src/cli/runtime.js';
import type { Config } from '../../src/config/load.js';
import { buildApp, type App } from '../../src/http/app.js';
import { openIdentity, type Identity } from '../../src/identity/identity.js';
import { identitySmsSender } from '../../src/runtime/tenant-sms-sender.js';
import type { Db } from '../../src/store/connection.js';
import { runCliProcess, type CliResult } from './cli.js';
import { createPostgresDatabase, dropPostgresDatabase, type Backend } from './database.js';
import { USER_AGENT } from './identity.js';

/**
 * What the identity CLI commands run against: a data dir (PGlite) or a fresh PostgreSQL
 * database, with the env a CLI child and an in-process server share (one master key).
 */
export interface CliWorkspace {
  cwd: string;
  env: Record<string, string>;
  /** `ciphergate ARGS` in the workspace, with `options.env` on top of the workspace's. */
  run(args: string[], options?: { stdin?: string; env?: Record<string, string> }): Promise<CliResult>;
  /** Several runs: at once on PostgreSQL, one after another on the embedded database (one process at a time). */
  runAll(commands: Array<string[] | { args: string[]; stdin?: string }>): Promise<CliResult[]>;
  /** The server side on the same database and keys, in this process (close it before the next CLI run on PGlite). */
  openServer(options?: { logLevel?: Config['logLevel'] }): Promise<CliServer>;
  cleanup(): Promise<void>;
}

export interface CliServer {
  runtime: SealingRuntime;
  db: Db;
  identity: Identity;
  app: App;
  /** A JSON request from 127.0.0.1 with the browser User-Agent, as the identity harness sends. */
  request(method: 'GET' | 'POST', url: string, options?: { body?: unknown; token?: string }): Promise<LightMyRequestResponse>;
  /** Everything the server logged so far (at `logLevel`). */
  logText(): string;
  close(): Promise<void>;
}

export async function openCliWorkspace(backend: Backend, name: string): Promise<CliWorkspace> {
  const cwd = mkdtempSync(join(tmpdir(), `cg-${name}-`));
  const env: Record<string, string> = { CIPHERGATE_MASTER_KEY: randomBytes(32).toString('base64'), CIPHERGATE_PUBLIC_URL: 'https://gate.example.test' };
  const databaseName = backend === 'postgres' ? `cg_test_${randomBytes(6).toString('hex')}` : undefined;
  if (databaseName) env.CIPHERGATE_DATABASE_URL = await createPostgresDatabase(databaseName);
  const run: CliWorkspace['run'] = (args, options = {}) =>
    // A loaded 2-core machine can take a while to start tsx; the default minute is not enough.
    runCliProcess(args, { env: { ...env, ...options.env }, cwd, timeoutMs: 300_000, ...(options.stdin !== undefined ? { stdin: options.stdin } : {}) });
  const runOne = (command: string[] | { args: string[]; stdin?: string }) =>
    Array.isArray(command) ? run(command) : run(command.args, command.stdin !== undefined ? { stdin: command.stdin } : {});
  return {
    cwd,
    env,
    run,
    async runAll(commands) {
      if (backend === 'postgres') return Promise.all(commands.map(runOne));
      const results: CliResult[] = [];
      for (const command of commands) results.push(await runOne(command));
      return results;
    },
    async openServer({ logLevel = 'warn' } = {}) {
      const logs = new PassThrough();
      let logText = '';
      logs.on('data', (chunk: Buffer) => (logText += chunk.toString()));
      const runtime = await openSealingRuntime({ env, cwd, stdout: logs, stderr: logs, stdin: Readable.from([]) }, { logTo: 'stderr', defaultLogLevel: logLevel });
      const identity = await openIdentity({ config: runtime.config, db: runtime.database.db, fields: runtime.sealing.fields, logger: runtime.logger, smsSender: identitySmsSender(runtime.config, runtime.database.db, runtime.sealing.fields, runtime.logger) });
      const relay = openRelay(runtime);
      const app = await buildApp({ config: runtime.config, logger: runtime.logger, identity, relay, audit: new AuditLog(runtime.database.db) });
      return {
        runtime,
        db: runtime.database.db,
        identity,
        app,
        request: (method, url, { body, token } = {}) =>
          app.inject({
            method,
            url,
            remoteAddress: '127.0.0.1',
            headers: { 'user-agent': USER_AGENT, ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...(token ? { authorization: `Bearer ${token}` } : {}) },
            ...(body !== undefined ? { payload: JSON.stringify(body) } : {}),
          }),
        logText: () => logText,
        async close() {
          await relay.rejectionAudit.stop();
          await app.close();
          await identity.close();
          await runtime.close();
        },
      };
    },
    async cleanup() {
      if (databaseName) await dropPostgresDatabase(databaseName);
      rmSync(cwd, { recursive: true, force: true });
    },
  };
}
