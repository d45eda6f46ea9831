import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { openIdentityHarness, type IdentityHarness } from '../helpers/identity.js';

/**
 * The console's sign-in under a lockout: the page says "too many attempts" and nothing more,
 * the same for a real account and for an address nobody has, with the throttle's Retry-After,
 * and the right password is refused while the lock holds (the lock is the API's).
 */

let h: IdentityHarness;
before(async () => {
  h = await openIdentityHarness('pglite');
});
after(() => h?.close());

function postSignIn(email: string, password: string, remoteAddress: string) {
  return h.app.inject({
    method: 'POST',
    url: '/console',
    remoteAddress,
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'sec-fetch-site': 'same-origin' },
    payload: new URLSearchParams({ email, password }).toString(),
  });
}

function alertOf(html: string): string {
  return /<p class="error" role="alert">([^<]*)<\/p>/.exec(html)?.[1] ?? '';
}

test('a locked account and a locked unknown address read the same; the lock holds against the right password', async () => {
  const user = await h.createUser({ role: 'employee' });
  const answers: Array<{ status: number; alert: string; retryAfter: unknown }> = [];
  for (const [email, address] of [
    [user.email, '10.77.0.1'],
    ['nobody-at-all@example.test', '10.77.0.2'],
  ] as const) {
    let last;
    for (let attempt = 0; attempt < 12; attempt += 1) last = await postSignIn(email, 'wrong password, again and again', address);
    answers.push({ status: last!.statusCode, alert: alertOf(last!.body), retryAfter: last!.headers['retry-after'] });
  }
  for (const answer of answers) {
    assert.equal(answer.status, 429);
    assert.equal(answer.alert, 'Too many attempts. Wait a few minutes, then try again.');
    assert.match(String(answer.retryAfter), /^\d+$/);
  }
  const right = await postSignIn(user.email, user.password, '10.77.0.1');
  assert.equal(right.statusCode, 429, 'locked: the right password does not get through either');
  assert.equal(right.headers['set-cookie'], undefined, 'and no cookie is set');
  assert.equal(alertOf(right.body), answers[0]!.alert);
});
