import { randomBytes, randomUUID } from 'node:crypto';
import type { LightMyRequestResponse } from 'fastify';
import { sql } from 'drizzle-orm';
import { AuditLog } from '../../src/audit/audit-log.js';
import { loadConfig, type Config } from '../../src/config/load.js';
import { buildApp, type App, type AppDependencies } from '../../src/http/app.js';
import { DocumentedStatuses } from './documented-statuses.js';
import type { Logger } from '../../src/log/logger.js';
import { Accounts } from '../../src/identity/accounts/accounts.js';
import { openIdentity, type Identity } from '../../src/identity/identity.js';
import { identitySmsSender } from '../../src/runtime/tenant-sms-sender.js';
import type { Mailer } from '../../src/providers/smtp/mailer.js';
import type { Role } from '../../src/identity/permissions.js';
import { Relay, type RelayOptions } from '../../src/relay/relay.js';
import type { RedisConnection } from '../../src/store/redis.js';
import { openDatabase, queryRows, type Db } from '../../src/store/connection.js';
import { captureLogs } from './log-capture.js';
import { createTestDatabase, type Backend, type TestDatabase } from './database.js';
import { openTestSealing } from './sealing.js';
import { totpCode } from './totp-codes.js';
import { sessionIdOf } from './token-claims.js';

export const PASSWORD = 'correct horse battery staple 7';
export const USER_AGENT = 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0';

export interface IdentityHarness {
  test: TestDatabase;
  /** The test database's handle (`test.database.db`). */
  db: Db;
  /** The KEK's master key, so a second instance (`shareWith`) can open the same sealed data. */
  masterKey: string;
  sealing: Awaited<ReturnType<typeof openTestSealing>>;
  app: App;
  identity: Identity;
  /** The message pipeline behind the app's relay routes (tenants, webhooks, messages, conversations). */
  relay: Relay;
  accounts: Accounts;
  config: Config;
  logs: ReturnType<typeof captureLogs>;
  /** Injects a JSON request from 127.0.0.1 (or `remoteAddress`) with the browser User-Agent unless told otherwise. */
  request(options: { method: string; url: string; body?: unknown; token?: string; headers?: Record<string, string>; cookies?: Record<string, string>; remoteAddress?: string }): Promise<LightMyRequestResponse>;
  /** An active user with a password and a confirmed TOTP factor. */
  createUser(options?: { role?: Role; tenantId?: string | null; withTotp?: boolean; email?: string }): Promise<TestUser>;
  /** Signs in through the API (password + TOTP) and returns the pair and the device token. */
  signIn(user: TestUser, options?: { userAgent?: string; remoteAddress?: string }): Promise<SignedSession & { deviceToken: string }>;
  /**
   * Another session of `user` through the trusted device of an earlier sign-in: password and
   * `deviceToken`, no second factor, so no TOTP step is spent. From `origin.ip`, so a test can
   * keep each sign-in off the per-address budget of the others.
   */
  signInOnDevice(user: TestUser, deviceToken: string, origin: { ip: string; userAgent?: string }): Promise<SignedSession>;
  createTenant(slug?: string): Promise<string>;
  auditActions(): Promise<Array<{ action: string; outcome: string; actor_id: string | null; details: Record<string, unknown> }>>;
  close(): Promise<void>;
}

export interface SignedSession {
  accessToken: string;
  refreshToken: string;
  sessionId: string;
}

export interface TestUser {
  id: string;
  email: string;
  password: string;
  totpSecret?: string;
  role: Role;
  tenantId: string | null;
}

export async function openIdentityHarness(
  backend: Backend,
  options: {
    env?: Record<string, string>;
    redis?: RedisConnection;
    redisKeyPrefix?: string;
    mailer?: Mailer;
    /**
     * A second instance over this harness's database and master key (its own connection,
     * Identity, caches and app), as a second server of one deployment would be. Closing it
     * leaves the database to its owner.
     */
    shareWith?: IdentityHarness;
    /** The relay's test settings (shorter retries, stand-in clients). */
    relay?: Partial<Pick<RelayOptions, 'retry' | 'leaseMs' | 'airtableSleep' | 'clients' | 'historyLimit'>>;
    /** More of the app (readiness checks, metrics, test routes), built over this harness's database, keys, identity and relay. */
    extend?: (parts: { db: Db; sealing: Awaited<ReturnType<typeof openTestSealing>>; identity: Identity; relay: Relay; config: Config; logger: Logger }) => {
      routes?: AppDependencies['routes'];
      readinessChecks?: AppDependencies['readinessChecks'];
      metricsRegistries?: AppDependencies['metricsRegistries'];
      close?: () => Promise<void>;
    };
  } = {},
): Promise<IdentityHarness> {
  const test = options.shareWith ? await attachTestDatabase(options.shareWith.test) : await createTestDatabase(backend);
  const db = test.database.db;
  const sealing = await openTestSealing(db, options.shareWith?.masterKey);
  // One prefix for every Redis key of this instance (throttle, revocations, API rate limit), so
  // suites sharing the test Redis never see each other's counts.
  const redisKeyPrefix = options.redisKeyPrefix ?? `t${randomBytes(4).toString('hex')}`;
  const config = loadConfig(
    { CIPHERGATE_PUBLIC_URL: 'https://gate.example.test', CIPHERGATE_API_RATE_LIMIT_PER_MINUTE: '100000', CIPHERGATE_REDIS_KEY_PREFIX: redisKeyPrefix, ...options.env },
    process.cwd(),
  );
  const logs = captureLogs('info');
  const identity = await openIdentity({
    config,
    db,
    fields: sealing.fields,
    logger: logs.logger,
    smsSender: identitySmsSender(config, db, sealing.fields, logs.logger),
    ...(options.redis ? { redis: options.redis } : {}),
    redisKeyPrefix,
    ...(options.mailer ? { mailer: options.mailer } : {}),
  });
  const relay = new Relay({
    config: { publicUrl: config.publicUrl, providers: config.providers },
    db,
    fields: sealing.fields,
    keyring: sealing.keyring,
    logger: logs.logger,
    ...options.relay,
  });
  const extension = options.extend?.({ db, sealing, identity, relay, config, logger: logs.logger });
  const documented = new DocumentedStatuses();
  const app = await buildApp({
    config,
    logger: logs.logger,
    observeResponse: documented.observe,
    identity,
    relay,
    audit: new AuditLog(db, sealing.fields),
    ...(options.redis ? { redis: options.redis } : {}),
    ...(extension ? { routes: extension.routes ?? [], readinessChecks: extension.readinessChecks ?? [], metricsRegistries: extension.metricsRegistries ?? [] } : {}),
  });
  const accounts = new Accounts(identity);

  const harness: IdentityHarness = {
    test,
    db,
    masterKey: sealing.masterKey,
    sealing,
    app,
    identity,
    relay,
    accounts,
    config,
    logs,
    request({ method, url, body, token, headers, cookies, remoteAddress }) {
      return app.inject({
        method: method as 'GET',
        url,
        remoteAddress: remoteAddress ?? '127.0.0.1',
        headers: {
          'user-agent': USER_AGENT,
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          ...headers,
        },
        ...(cookies ? { cookies } : {}),
        ...(body !== undefined ? { payload: JSON.stringify(body) } : {}),
      });
    },
    async createUser(userOptions = {}) {
      const role = userOptions.role ?? 'admin';
      const email = userOptions.email ?? `user-${randomUUID()}@example.test`;
      const record = await accounts.createUserWithPassword({ email, role, tenantId: userOptions.tenantId ?? null, password: PASSWORD });
      const user: TestUser = { id: record.id, email, password: PASSWORD, role, tenantId: record.tenantId };
      if (userOptions.withTotp !== false) {
        const enrollment = await identity.parts.factors.startTotpEnrollment(record.id, email);
        // A past step, so the codes the tests use now are still fresh for the replay guard.
        const confirmed = await identity.parts.factors.confirmTotp(record.id, totpCode(enrollment.secretBase32, -1), db);
        if (!confirmed.ok) throw new Error(`could not confirm TOTP: ${confirmed.reason}`);
        user.totpSecret = enrollment.secretBase32;
      }
      return user;
    },
    async signIn(user, signInOptions = {}) {
      const headers: Record<string, string> = signInOptions.userAgent ? { 'user-agent': signInOptions.userAgent } : {};
      const from = signInOptions.remoteAddress ? { remoteAddress: signInOptions.remoteAddress } : {};
      const login = await harness.request({ method: 'POST', url: '/api/v1/auth/login', body: { email: user.email, password: user.password }, headers, ...from });
      if (login.statusCode !== 401 || login.json().type !== 'second-factor-required') throw new Error(`unexpected login answer ${login.statusCode} ${login.body}`);
      const second = await harness.request({
        method: 'POST',
        url: '/api/v1/auth/second-factor',
        body: { challengeToken: login.json().challengeToken, method: 'totp', code: totpCode(user.totpSecret!, usedSteps.next(user.id)) },
        headers,
        ...from,
      });
      if (second.statusCode !== 200) throw new Error(`unexpected second-factor answer ${second.statusCode} ${second.body}`);
      const tokens = second.json();
      return { accessToken: tokens.accessToken, refreshToken: tokens.refreshToken, deviceToken: tokens.deviceToken, sessionId: sessionIdOf(tokens.accessToken) };
    },
    async signInOnDevice(user, deviceToken, origin) {
      const response = await harness.request({
        method: 'POST',
        url: '/api/v1/auth/login',
        body: { email: user.email, password: user.password, deviceToken },
        remoteAddress: origin.ip,
        ...(origin.userAgent ? { headers: { 'user-agent': origin.userAgent } } : {}),
      });
      if (response.statusCode !== 200) throw new Error(`unexpected login answer ${response.statusCode} ${response.body}`);
      const { accessToken, refreshToken } = response.json() as { accessToken: string; refreshToken: string };
      return { accessToken, refreshToken, sessionId: sessionIdOf(accessToken) };
    },
    async createTenant(slug = `t-${randomBytes(3).toString('hex')}`) {
      const id = randomUUID();
      await db.execute(sql`insert into tenants (id, slug, name, settings, created_at, updated_at) values (${id}, ${slug}, ${slug}, ${JSON.stringify({ allowIps: { twilio: [], airtable: [], podium: [] } })}::jsonb, now(), now())`);
      return id;
    },
    async auditActions() {
      return queryRows(db, sql`select action, outcome, actor_id, details from audit_events order by seq`);
    },
    async close() {
      await extension?.close?.();
      // As serve does at a stop: the aggregated webhook refusals are written before the database closes.
      await relay.rejectionAudit.stop();
      await app.close();
      await identity.close();
      await sealing.provider.close();
      await test.cleanup();
      // Last, so a failure here never leaves the database or the keys open.
      documented.assertAllDocumented();
    },
  };
  return harness;
}

/** Another connection to a test database; its cleanup closes the connection only. */
async function attachTestDatabase(shared: TestDatabase): Promise<TestDatabase> {
  // PGlite lives in the owner's process memory: the only way to share it is its handle.
  if (!shared.url) return { ...shared, cleanup: async () => undefined };
  const database = await openDatabase({ url: shared.url, connectTimeoutSeconds: 5, maxConnections: 5 });
  return { backend: shared.backend, database, url: shared.url, cleanup: () => database.close() };
}

/**
 * The replay guard accepts each step once per user, and a test may sign one user in several
 * times within 30 s: each sign-in takes the next step of the ±1 window (0, then +1). Beyond
 * two, the test must use another user.
 */
const usedSteps = {
  counts: new Map<string, number>(),
  next(userId: string): number {
    const used = this.counts.get(userId) ?? 0;
    this.counts.set(userId, used + 1);
    if (used > 1) throw new Error('a user can pass TOTP at most twice per 30 s window in tests; make another user');
    return used;
  },
};
