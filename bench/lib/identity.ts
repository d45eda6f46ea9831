import { randomBytes, randomUUID } from 'node:crypto';
import { loadavg } from 'node:os';
import { HOTP, Secret } from 'otpauth';
import { pino } from 'pino';
import pg from 'pg';
import { AuditLog } from '../../src/audit/audit-log.js';
import { loadConfig } from '../../src/config/load.js';
import { buildApp, type App } from '../../src/http/app.js';
import { Accounts } from '../../src/identity/accounts/accounts.js';
import { forbidden, unauthenticated } from '../../src/identity/errors.js';
import { openIdentity, type Identity } from '../../src/identity/identity.js';
import { principalHas, type Principal } from '../../src/identity/principal.js';
import { TokenError, verifyAccessToken } from '../../src/identity/tokens/access-tokens.js';
import { createLogger } from '../../src/log/logger.js';
import { SYSTEM_SCOPE } from '../../src/seal/binding.js';
import { SealedFields } from '../../src/seal/sealed-fields.js';
import { InMemoryKeyring, Sealer } from '../../src/seal/sealer.js';
import { openDatabase, type Db } from '../../src/store/connection.js';
import { migrate } from '../../src/store/migrate.js';
import { ADMIN_DATABASE_URL, createBenchDatabase } from './harness.js';

export type BenchBackend = 'pglite' | 'postgres';

export const BENCH_PASSWORD = 'correct horse battery staple 7';
export const BENCH_USER_AGENT = 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0';

export interface IdentityBench {
  backend: BenchBackend;
  app: App;
  identity: Identity;
  accounts: Accounts;
  db: Db;
  close(): Promise<void>;
}

export interface SignedInUser {
  userId: string;
  email: string;
  password: string;
  /** The PHC string as stored, for the raw-argon2 baseline. */
  passwordHash: string;
  deviceToken: string;
  accessToken: string;
  sessionId: string;
}

/**
 * The real app with a real Identity for the identity benchmarks: production config defaults,
 * the JSON request log at its default level into an asynchronous /dev/null destination (the
 * line is still built and written), and sealing with an in-memory keyring (the stored keyring
 * of `serve` caches the same data keys in memory after start-up, so the hot path is the same).
 */
export async function openIdentityBench(options: {
  backend: BenchBackend;
  env?: Record<string, string>;
  logLevel?: string;
  routes?: Array<(app: App, identity: Identity) => Promise<void> | void>;
}): Promise<IdentityBench> {
  const storage = await openStorage(options.backend);
  const keyring = new InMemoryKeyring().add(SYSTEM_SCOPE, 1, randomBytes(32));
  const fields = new SealedFields(new Sealer(keyring), keyring);
  const config = loadConfig({ CIPHERGATE_PUBLIC_URL: 'https://gate.example.test', ...options.env }, process.cwd());
  const logger = createLogger({ level: options.logLevel ?? 'info', destination: pino.destination({ dest: '/dev/null', sync: false }) });
  const identity = await openIdentity({ config, db: storage.db, fields, logger, redisKeyPrefix: `b${randomBytes(4).toString('hex')}` });
  const app = await buildApp({
    config,
    logger,
    identity,
    audit: new AuditLog(storage.db),
    routes: (options.routes ?? []).map((routes) => (scope: App) => routes(scope, identity)),
  });
  return {
    backend: options.backend,
    app,
    identity,
    accounts: new Accounts(identity),
    db: storage.db,
    async close() {
      await app.close();
      await identity.close();
      await storage.close();
    },
  };
}

/**
 * An active user with a password and a confirmed TOTP factor, signed in once through the API
 * (password, then TOTP) so that later logins can present the device token it returned.
 */
export async function createSignedInUser(bench: IdentityBench): Promise<SignedInUser> {
  const { accounts, identity, db } = bench;
  const email = `bench-${randomUUID()}@example.test`;
  const record = await accounts.createUserWithPassword({ email, role: 'employee', tenantId: null, password: BENCH_PASSWORD });
  const enrollment = await identity.parts.factors.startTotpEnrollment(record.id, email);
  // Confirmed with the previous step's code, so the current step stays fresh for the sign-in.
  const confirmed = await identity.parts.factors.confirmTotp(record.id, totpCode(enrollment.secretBase32, -1), db);
  if (!confirmed.ok) throw new Error(`could not confirm TOTP: ${confirmed.reason}`);

  const login = await injectJson(bench.app, 'POST', '/api/v1/auth/login', { email, password: BENCH_PASSWORD }, '127.0.0.1');
  if (login.statusCode !== 401 || login.json().type !== 'second-factor-required') throw new Error(`unexpected login answer ${login.statusCode} ${login.body}`);
  const second = await injectJson(
    bench.app,
    'POST',
    '/api/v1/auth/second-factor',
    { challengeToken: login.json().challengeToken, method: 'totp', code: totpCode(enrollment.secretBase32, 0) },
    '127.0.0.1',
  );
  if (second.statusCode !== 200) throw new Error(`unexpected second-factor answer ${second.statusCode} ${second.body}`);
  const tokens = second.json() as { accessToken: string; deviceToken: string };
  const sessionId = JSON.parse(Buffer.from(tokens.accessToken.split('.')[1]!, 'base64url').toString()).sid as string;
  const stored = await identity.parts.users.findByEmail(email);
  return { userId: record.id, email, password: BENCH_PASSWORD, passwordHash: stored!.passwordHash!, deviceToken: tokens.deviceToken, accessToken: tokens.accessToken, sessionId };
}

export function injectJson(app: App, method: 'GET' | 'POST', url: string, body: unknown, remoteAddress: string, headers: Record<string, string> = {}) {
  return app.inject({
    method,
    url,
    remoteAddress,
    headers: { 'user-agent': BENCH_USER_AGENT, ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
    ...(body !== undefined ? { payload: JSON.stringify(body) } : {}),
  });
}

/**
 * Runs `total` calls of `fn` with at most `concurrency` in flight and returns calls per second.
 * `fn` gets the call's index, for round-robin over tokens or addresses.
 */
export async function opsPerSecond(fn: (index: number) => Promise<unknown>, total: number, concurrency = 1): Promise<number> {
  let next = 0;
  const start = process.hrtime.bigint();
  const worker = async () => {
    while (next < total) await fn(next++);
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return total / (Number(process.hrtime.bigint() - start) / 1e9);
}

/** Other work on the machine during a run, printed beside the figures: on two shared cores it moves them. */
export function loadLine(startLoad: number[]): string {
  const format = (load: number[]) => load.map((value) => value.toFixed(1)).join(', ');
  return `load average (1, 5, 15 min) at start: ${format(startLoad)}; at end: ${format(loadavg())}`;
}

/**
 * The backends to measure: `BENCH_BACKENDS=pglite,postgres` (the default); PostgreSQL is left
 * out, with a note, when it does not answer.
 */
export async function benchBackends(): Promise<{ backends: BenchBackend[]; notes: string[] }> {
  const wanted = (process.env.BENCH_BACKENDS ?? 'pglite,postgres').split(',').map((name) => name.trim());
  const backends: BenchBackend[] = [];
  const notes: string[] = [];
  if (wanted.includes('pglite')) backends.push('pglite');
  if (wanted.includes('postgres')) {
    const client = new pg.Client({ connectionString: ADMIN_DATABASE_URL, connectionTimeoutMillis: 3000 });
    try {
      await client.connect();
      backends.push('postgres');
    } catch (error) {
      notes.push(`PostgreSQL skipped: cannot reach ${new URL(ADMIN_DATABASE_URL).host} (${(error as Error).message})`);
    } finally {
      await client.end().catch(() => undefined);
    }
  }
  return { backends, notes };
}

function totpCode(secretBase32: string, stepOffset: number): string {
  const counter = Math.floor(Date.now() / 30_000) + stepOffset;
  return HOTP.generate({ secret: Secret.fromBase32(secretBase32), counter, algorithm: 'SHA1', digits: 6 });
}

async function openStorage(backend: BenchBackend): Promise<{ db: Db; close(): Promise<void> }> {
  if (backend === 'pglite') {
    const database = await openDatabase({ dataDir: 'memory://' });
    await migrate(database);
    return { db: database.db, close: () => database.close() };
  }
  // The pool size of `serve`'s default.
  const bench = await createBenchDatabase(10);
  return { db: bench.database.db, close: () => bench.drop() };
}

/**
 * Two routes that differ only in how the caller is authenticated, for the session-check
 * benchmark. Both sit under /api/ (so the API rate limit runs on both) and answer the same
 * serialised `{ ok: true }`:
 *
 * - `/api/v1/bench/guarded` declares `auth:self`: the app's guard does its full work (bearer
 *   header, JWT verification, `Sessions.checkLive`, the permission check).
 * - `/api/v1/bench/jwt-only` is declared public and authenticates in its own `onRequest`
 *   hook, at the same stage, with the same steps minus the session check: the same header
 *   rule, `verifyAccessToken` with the same issuer and audience, the principal from the
 *   claims and the same permission check.
 */
export const GUARDED_PATH = '/api/v1/bench/guarded';
export const JWT_ONLY_PATH = '/api/v1/bench/jwt-only';

export function sessionCheckRoutes(app: App, identity: Identity): void {
  const response = { 200: { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'] } } as const;
  app.get(GUARDED_PATH, { config: { access: { permission: 'auth:self' } }, schema: { response } }, async () => ({ ok: true }));
  app.get(
    JWT_ONLY_PATH,
    {
      config: { access: { public: true, reason: 'benchmark baseline: verifies the access token itself, without the session check' } },
      schema: { response },
      onRequest: async (request) => {
        const match = /^Bearer ([\x21-\x7e]{1,4096})$/.exec(request.headers.authorization ?? '');
        if (!match) throw unauthenticated();
        const { signingKeys, settings } = identity.parts;
        let claims;
        try {
          claims = await verifyAccessToken(signingKeys, match[1]!, { issuer: settings.issuer, audience: settings.audience });
        } catch (error) {
          if (error instanceof TokenError) throw unauthenticated();
          throw error;
        }
        if (claims.role === null) throw unauthenticated();
        const principal: Principal = { kind: 'user', userId: claims.sub, sessionId: claims.sid, role: claims.role, tenantId: claims.tenant, via: 'bearer' };
        if (!principalHas(principal, 'auth:self')) throw forbidden('this needs the "auth:self" permission');
        request.principal = principal;
      },
    },
    async () => ({ ok: true }),
  );
}
