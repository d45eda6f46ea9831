import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DATABASE_RESTORED_MESSAGE, DATABASE_UNAVAILABLE_MESSAGE, DatabaseOutageLog, isDatabaseUnavailable } from '../../src/store/connection-errors.js';
import { captureLogs } from '../helpers/log-capture.js';

function withCode(code: string, message = 'x'): Error {
  return Object.assign(new Error(message), { code });
}

/** What Drizzle throws: its own error, holding the SQL and parameters, with the driver's in `cause`. */
function wrapped(cause: unknown): Error {
  return Object.assign(new Error('Failed query: insert into messages values ($1)\\nparams: +14155550123'), { cause });
}

describe('database connection errors', () => {
  test('connection losses are recognised, directly, wrapped by Drizzle, or inside an AggregateError', () => {
    for (const error of [
      withCode('ECONNREFUSED'),
      withCode('ECONNRESET'),
      withCode('57P01', 'terminating connection due to administrator command'),
      withCode('57P03', 'the database system is starting up'),
      withCode('08006'),
      new Error('Connection terminated unexpectedly'),
      new Error('timeout exceeded when trying to connect'),
      new Error('Client has encountered a connection error and is not queryable'),
      wrapped(withCode('57P01')),
      wrapped(new Error('Connection terminated unexpectedly')),
      new AggregateError([withCode('ECONNREFUSED')]),
    ]) {
      assert.equal(isDatabaseUnavailable(error), true, String((error as { code?: string }).code ?? error.message));
    }
  });

  test('statement errors and bugs are not outages', () => {
    for (const error of [
      withCode('23505', 'duplicate key value violates unique constraint'),
      withCode('42601', 'syntax error'),
      withCode('22P02'),
      wrapped(withCode('23505')),
      new TypeError('cannot read properties of undefined'),
      new Error('Connection string is invalid'),
      undefined,
      null,
      'ECONNREFUSED',
    ]) {
      assert.equal(isDatabaseUnavailable(error), false, String(error));
    }
  });

  test('an outage is two log lines however many errors it spans, and never carries the failed SQL', () => {
    const logs = captureLogs('debug');
    const outage = new DatabaseOutageLog(logs.logger, 'PostgreSQL at 127.0.0.1:5432/app');
    assert.equal(outage.failed(withCode('23505')), false);
    for (let index = 0; index < 20; index++) assert.equal(outage.failed(wrapped(withCode('57P01'))), true);
    assert.equal(outage.isDown, true);
    outage.succeeded();
    outage.succeeded();
    outage.failed(withCode('ECONNREFUSED'));
    const lines = logs.lines();
    assert.deepEqual(
      lines.map((line) => [line.level, line.msg, line.reason]),
      [
        [40, DATABASE_UNAVAILABLE_MESSAGE, '57P01'],
        [30, DATABASE_RESTORED_MESSAGE, undefined],
        [40, DATABASE_UNAVAILABLE_MESSAGE, 'ECONNREFUSED'],
      ],
    );
    assert.ok(!logs.text().includes('+14155550123'));
  });
});
