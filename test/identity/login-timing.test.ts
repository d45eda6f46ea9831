import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { after, before, test } from 'node:test';
import { describeEachBackend } from '../helpers/database.js';
import { openIdentityHarness, type IdentityHarness } from '../helpers/identity.js';
import { freshAddresses } from '../helpers/addresses.js';

/**
 * The one timed assertion the issue demands: `POST /auth/login` with an unknown email takes
 * the same time as with a registered email and a wrong password, so the answer time does not
 * tell who has an account.
 */

const SAMPLES = 21;
const WARM_UP = 2;

await describeEachBackend('sign-in: no user-enumeration timing oracle', (backend) => {
  let harness: IdentityHarness;
  // A fresh address per attempt: 30 failures would otherwise lock the account (10 per account
  // and address, and a locked answer skips argon2) and exhaust the address's budget.
  const freshIp = freshAddresses('10.50');

  before(async () => {
    harness = await openIdentityHarness(backend);
  });
  after(async () => {
    await harness.close();
  });

  test('unknown email and wrong password take statistically indistinguishable time', async () => {
    const user = await harness.createUser({ role: 'employee' });
    const unknownEmail = `nobody-${randomUUID()}@example.test`;
    const timeLogin = async (email: string): Promise<number> => {
      const started = performance.now();
      const answer = await harness.request({ method: 'POST', url: '/api/v1/auth/login', body: { email, password: 'a wrong but plausible password 7' }, remoteAddress: freshIp() });
      const elapsed = performance.now() - started;
      assert.equal(answer.statusCode, 401);
      assert.equal(answer.json().type, 'invalid-credentials');
      return elapsed;
    };

    for (let round = 0; round < WARM_UP; round++) {
      await timeLogin(user.email);
      await timeLogin(unknownEmail);
    }
    const measure = async () => {
      const wrongPassword: number[] = [];
      const unknown: number[] = [];
      // Alternating, and swapping which goes first each round, so drift in the machine's load
      // (other suites share its two cores) falls on both series alike.
      for (let round = 0; round < SAMPLES; round++) {
        if (round % 2 === 0) {
          wrongPassword.push(await timeLogin(user.email));
          unknown.push(await timeLogin(unknownEmail));
        } else {
          unknown.push(await timeLogin(unknownEmail));
          wrongPassword.push(await timeLogin(user.email));
        }
      }
      const ratio = median(unknown) / median(wrongPassword);
      return { ratio, report: `unknown median ${median(unknown).toFixed(1)} ms, wrong-password median ${median(wrongPassword).toFixed(1)} ms, ratio ${ratio.toFixed(2)}` };
    };

    // One argon2id verification (m=19 MiB, t=2) is most of either answer's time. An oracle
    // means one path skips it (or hashes twice), which puts the ratio of medians near 0.1–0.3
    // (or 2): a lookup and an audit row against tens of milliseconds of hashing. Medians shrug
    // off the odd sample delayed by a neighbour's test; 0.7–1.4 leaves room for the noise of
    // a loaded shared machine (medians of 21 ranged 0.78–1.12 there) and still fails on a
    // skipped or doubled hash. A measurement outside is taken again once: an oracle fails
    // every measurement, a burst of load rarely two in a row.
    const within = (ratio: number) => ratio >= 0.7 && ratio <= 1.4;
    const first = await measure();
    if (within(first.ratio)) return;
    const second = await measure();
    assert.ok(within(second.ratio), `first: ${first.report}; again: ${second.report}`);
  });
});

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}
