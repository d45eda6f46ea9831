import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { DATABASE_RESTORED_MESSAGE, DATABASE_UNAVAILABLE_MESSAGE, DatabaseOutageLog } from '../../src/store/connection-errors.js';
import { captureLogs } from '../helpers/log-capture.js';

// The PostgreSQL restart drill logged "database unavailable" twice for one outage on a loaded
// machine: while the server shut down it still accepted a new pooled connection, which counted
// as recovery, and then ended it (57P01). A new connection now counts as recovery only once it
// has stayed up with no failure meanwhile.

const shutdown = () => Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' });

test('a connection the shutting-down server accepts and then ends is not a recovery', async () => {
  const logs = captureLogs('debug');
  const outage = new DatabaseOutageLog(logs.logger, 'PostgreSQL at test', 50);
  outage.failed(shutdown());
  outage.connectionOpened();
  outage.failed(shutdown());
  await sleep(150);
  assert.equal(outage.isDown, true);
  assert.deepEqual(logs.lines().map((line) => line.msg), [DATABASE_UNAVAILABLE_MESSAGE]);
});

test('a connection that stays up is a recovery, logged once', async () => {
  const logs = captureLogs('debug');
  const outage = new DatabaseOutageLog(logs.logger, 'PostgreSQL at test', 50);
  outage.failed(shutdown());
  outage.connectionOpened();
  outage.connectionOpened();
  await sleep(150);
  assert.equal(outage.isDown, false);
  assert.deepEqual(logs.lines().map((line) => line.msg), [DATABASE_UNAVAILABLE_MESSAGE, DATABASE_RESTORED_MESSAGE]);
});
