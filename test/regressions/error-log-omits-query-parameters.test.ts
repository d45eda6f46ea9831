import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { buildApp } from '../../src/http/app.js';
import { serializeError } from '../../src/log/logger.js';
import { createTestDatabase, describeEachBackend, type TestDatabase } from '../helpers/database.js';
import { captureLogs } from '../helpers/log-capture.js';
import { assertProblem } from '../helpers/problems.js';

// A failed query's error carries the statement and its parameters (Drizzle's DrizzleQueryError:
// `query`, `params` and a message that repeats both; PGlite's error: `query`, `params`), and
// PostgreSQL's own message and `detail` quote the refused value. All of it went to the error log:
// one 500 logged the hash of the API key being created. The log keeps what failed, not what was sent.

function canary(): string {
  return `canary-${randomBytes(12).toString('hex')}`;
}

/** Runs `statement` and returns what it threw. */
async function failure(database: TestDatabase, statement: ReturnType<typeof sql>): Promise<unknown> {
  try {
    await database.database.db.execute(statement);
  } catch (error) {
    return error;
  }
  assert.fail('the statement should have failed');
}

await describeEachBackend('an error log names the failure, never the statement or its parameters', (backend) => {
  let database: TestDatabase;
  before(async () => {
    database = await createTestDatabase(backend);
  });
  after(() => database.cleanup());

  test('a value the database refuses (invalid input, quoted back in its message) is not logged', async () => {
    const secret = canary();
    const error = await failure(database, sql`select ${secret}::integer as n`);
    assert.ok(JSON.stringify(Object.entries(error as object)).includes(secret) || String((error as Error).message).includes(secret), 'the raw error does carry the value (else this proves nothing)');
    const logs = captureLogs();
    logs.logger.error({ err: error }, 'unexpected error');
    const [line] = logs.lines();
    assert.ok(!logs.text().includes(secret), logs.text());
    assert.ok(!/select/i.test(logs.text()), 'the statement text is not logged');
    const logged = line!.err as Record<string, any>;
    assert.equal(logged.type, 'DrizzleQueryError');
    assert.equal(logged.cause.code, '22P02');
    assert.match(logged.cause.message, /invalid input syntax for type integer: "…"/);
    assert.equal(logged.params, undefined);
    assert.equal(logged.query, undefined);
  });

  test('a unique violation keeps its constraint but not the duplicate value (PostgreSQL\u2019s detail)', async () => {
    const slug = `t-${randomBytes(6).toString('hex')}`;
    const insert = () =>
      sql`insert into tenants (id, slug, name, settings, created_at, updated_at) values (${randomUUID()}, ${slug}, ${slug}, ${JSON.stringify({ allowIps: { twilio: [], airtable: [], podium: [] } })}::jsonb, now(), now())`;
    await database.database.db.execute(insert());
    const error = await failure(database, insert());
    const serialized = serializeError(error);
    const text = JSON.stringify(serialized);
    assert.ok(!text.includes(slug), text);
    assert.equal(serialized.cause?.code, '23505');
    assert.equal(typeof serialized.cause?.constraint, 'string');
    assert.equal(serialized.cause?.detail, undefined);
  });

  test('a 500 answers an errorId and logs the failure under it, without the parameters', async () => {
    const secret = canary();
    const logs = captureLogs();
    const app = await buildApp({
      config: { publicUrl: 'http://127.0.0.1:8080', trustProxy: [], bodyLimitBytes: 1024 * 1024 },
      logger: logs.logger,
      routes: [
        (scope) => {
          // Stands for any handler whose query fails on what it was given (the API key insert did).
          scope.post('/test/failing-query', { config: { access: { public: true, reason: 'test route' } } }, async () => {
            await database.database.db.execute(sql`select ${secret}::bigint as n`);
            return {};
          });
        },
      ],
    });
    try {
      const response = await app.inject({ method: 'POST', url: '/test/failing-query' });
      const problem = assertProblem(response, 500, 'internal-error');
      assert.ok(!response.body.includes(secret));
      const logged = logs.lines().find((line) => line.errorId === problem.errorId);
      assert.ok(logged, 'the failure is logged under the errorId the client was given');
      assert.equal((logged.err as Record<string, any>).cause.code, '22P02');
      assert.ok(!logs.text().includes(secret), 'no parameter in any log line');
      assert.ok(!/select/i.test(logs.text()), 'no statement in any log line');
    } finally {
      await app.close();
    }
  });
});

test('errors that are not the database\u2019s keep their message, stack frames, code and cause', () => {
  const cause = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED', errno: -111, syscall: 'connect', address: '127.0.0.1' });
  const error = new Error('could not refresh data keys', { cause });
  const serialized = serializeError(error);
  assert.equal(serialized.message, 'could not refresh data keys');
  assert.match(serialized.stack!, /^Error: could not refresh data keys\n\s+at /);
  assert.deepEqual({ ...serialized.cause, stack: undefined }, { type: 'Error', message: 'connect ECONNREFUSED 127.0.0.1:5432', code: 'ECONNREFUSED', errno: -111, syscall: 'connect', stack: undefined });
});
