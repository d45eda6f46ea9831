import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { auditMark, auditSince } from '../helpers/audit.js';
import { describeEachBackend } from '../helpers/database.js';
import { openIdentityHarness, type IdentityHarness } from '../helpers/identity.js';
import { freshAddresses } from '../helpers/addresses.js';
import { assertProblem } from '../helpers/problems.js';

/**
 * Issue #13 item 1: every throttled sign-in (429) wrote an audit row, so hammering a limit
 * filled the trail at the attacker's pace. The 429s are counted in the metrics and audited as one
 * `auth.throttled` entry per step, reason and minute with the count; the lockout itself is still
 * its own entry.
 */

const IP_ATTEMPTS_PER_MINUTE = 30;
const REFUSED = 50;

await describeEachBackend('throttled sign-ins', (backend) => {
  let harness: IdentityHarness;
  const freshIp = freshAddresses('10.31');

  before(async () => {
    harness = await openIdentityHarness(backend);
  });
  after(() => harness.close());

  const login = (email: string, password: string, remoteAddress: string) => harness.request({ method: 'POST', url: '/api/v1/auth/login', body: { email, password }, remoteAddress });

  async function failureCount(reason: string): Promise<number> {
    const metric = await harness.identity.metrics.failures.get();
    return metric.values.find((value) => value.labels.stage === 'password' && value.labels.reason === reason)?.value ?? 0;
  }

  // Each test writes what it counted before it ends, so the next one starts with nothing pending.
  test('past the per-address limit, 50 refused logins are one aggregated entry, not 50 rows', async () => {
    const sprayer = freshIp();
    for (let attempt = 1; attempt <= IP_ATTEMPTS_PER_MINUTE; attempt++) {
      assert.equal((await login(`sprayed-${randomUUID()}@example.test`, 'Spring2024!spray', sprayer)).statusCode, 401);
    }
    const mark = await auditMark(harness);
    const countedBefore = await failureCount('ip-limit');
    for (let attempt = 1; attempt <= REFUSED; attempt++) assertProblem(await login(`sprayed-${randomUUID()}@example.test`, 'Spring2024!spray', sprayer), 429, 'rate-limited');

    assert.deepEqual(await auditSince(harness, mark), [], 'no row per refusal');
    assert.equal(await failureCount('ip-limit'), countedBefore + REFUSED, 'every refusal is in the metrics');

    await harness.identity.throttleAudit.flush({ all: true });
    const rows = await auditSince(harness, mark);
    assert.deepEqual(
      rows.map((row) => [row.action, row.outcome, row.actor_type, row.details.attempt, row.details.reason, row.details.count]),
      [['auth.throttled', 'denied', 'anonymous', 'auth.login', 'ip-limit', REFUSED]],
    );
    assert.deepEqual(Object.keys(rows[0]!.details).sort(), ['attempt', 'count', 'firstAt', 'lastAt', 'reason'], 'ids and counts only');
  });

  test('a locked account+address: the lockout is one entry, the refused attempts after it are counted in one more', async () => {
    const user = await harness.createUser({ role: 'employee' });
    const attacker = freshIp();
    const mark = await auditMark(harness);
    for (let attempt = 1; attempt <= 10; attempt++) assert.equal((await login(user.email, `wrong guess number ${attempt}`, attacker)).statusCode, 401);
    const refusedAfterLock = 15;
    for (let attempt = 1; attempt <= refusedAfterLock; attempt++) assertProblem(await login(user.email, user.password, attacker), 429, 'account-locked');

    const perRequest = (await auditSince(harness, mark)).filter((row) => row.action === 'auth.login' && row.outcome === 'denied');
    assert.deepEqual(perRequest, [], 'no row per refusal');
    await harness.identity.throttleAudit.flush({ all: true });
    const rows = await auditSince(harness, mark);
    assert.equal(rows.filter((row) => row.action === 'auth.login' && row.outcome === 'failure').length, 10);
    assert.equal(rows.filter((row) => row.action === 'auth.lockout').length, 1);
    assert.deepEqual(
      rows.filter((row) => row.action === 'auth.throttled').map((row) => [row.details.attempt, row.details.reason, row.details.count]),
      [['auth.login', 'account-locked', refusedAfterLock]],
    );
    assert.ok(!JSON.stringify(rows).includes(user.email), 'no email in the trail');
  });

  test('written at close: a clean stop loses no count', async () => {
    const sprayer = freshIp();
    for (let attempt = 1; attempt <= IP_ATTEMPTS_PER_MINUTE; attempt++) await login(`sprayed-${randomUUID()}@example.test`, 'Spring2024!spray', sprayer);
    const mark = await auditMark(harness);
    for (let attempt = 1; attempt <= 3; attempt++) assertProblem(await login(`late-${randomUUID()}@example.test`, 'Spring2024!spray', sprayer), 429, 'rate-limited');
    await harness.identity.close();
    assert.deepEqual(
      (await auditSince(harness, mark)).map((row) => [row.action, row.details.reason, row.details.count]),
      [['auth.throttled', 'ip-limit', 3]],
    );
  });
});
