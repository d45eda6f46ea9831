import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { openConsoleBrowser, signInThroughConsole, type ConsoleBrowser } from '../helpers/console-browser.js';
import type { TestUser } from '../helpers/identity.js';
import { totpCode } from '../helpers/totp-codes.js';

/**
 * My account in Chromium: the caller's sessions with the current one marked, ending one or
 * every other (identity's revocation, so an API token of an ended session is refused at once),
 * and the password change with its refusals.
 */

let cb: ConsoleBrowser;
before(async () => {
  cb = await openConsoleBrowser();
});
after(() => cb?.close());

/**
 * Two API sessions of `user`: one with the TOTP code of the next step (the browser used this
 * step's; the verifier accepts no step further ahead), one through the device that made trusted.
 */
async function apiSessions(user: TestUser): Promise<[string, string]> {
  const login = await cb.harness.request({ method: 'POST', url: '/api/v1/auth/login', body: { email: user.email, password: user.password } });
  const second = await cb.harness.request({ method: 'POST', url: '/api/v1/auth/second-factor', body: { challengeToken: login.json().challengeToken, method: 'totp', code: totpCode(user.totpSecret!, 1) } });
  assert.equal(second.statusCode, 200, second.body);
  const onDevice = await cb.harness.signInOnDevice(user, second.json().deviceToken as string, { ip: '127.0.0.1' });
  return [second.json().accessToken as string, onDevice.accessToken];
}

async function alive(accessToken: string): Promise<boolean> {
  return (await cb.harness.request({ method: 'GET', url: '/api/v1/auth/sessions', token: accessToken })).statusCode === 200;
}

test('sessions are listed with the current one marked; ending one and every other ends them at once, this one stays', async () => {
  const user = await cb.harness.createUser({ role: 'employee' });
  const watched = await cb.newPage();
  await signInThroughConsole(watched, cb.baseUrl, user, 0);
  const [first, second] = await apiSessions(user);
  await watched.page.goto(`${cb.baseUrl}/console/account`);
  assert.equal(await watched.page.locator('tbody tr').count(), 3);
  assert.equal(await watched.page.locator('tr.current').count(), 1);
  assert.equal(await watched.page.locator('tr.current button').count(), 0, 'the current session has no End button: signing out ends it');

  await watched.page.getByRole('button', { name: /^End the session/ }).first().click();
  await watched.page.waitForLoadState();
  assert.equal(await watched.page.getByRole('status').textContent(), 'The session has been ended.');
  assert.equal(await watched.page.locator('tbody tr').count(), 2);
  assert.equal([await alive(first), await alive(second)].filter(Boolean).length, 1, 'one API session was ended');

  await watched.page.getByRole('button', { name: 'End every other session' }).click();
  await watched.page.waitForLoadState();
  assert.equal(await watched.page.getByRole('status').textContent(), '1 other session ended.');
  assert.equal(await alive(first), false);
  assert.equal(await alive(second), false);
  assert.equal(await watched.page.locator('tbody tr').count(), 1);
  await watched.check('my-account-sessions-ended');
});

test('the current session cannot be ended from the list (sign out does that)', async () => {
  const user = await cb.harness.createUser({ role: 'employee' });
  const watched = await cb.newPage();
  await signInThroughConsole(watched, cb.baseUrl, user, 0);
  await watched.page.goto(`${cb.baseUrl}/console/account`);
  const csrf = await watched.page.locator('input[name="_csrf"]').first().inputValue();
  const sessions = (await cb.harness.identity.parts.sessions.listForUser(user.id)).map((session) => session.id);
  assert.equal(sessions.length, 1);
  const response = await watched.context.request.post(`${cb.baseUrl}/console/account`, { form: { _csrf: csrf, action: 'revoke-session', session: sessions[0]! }, maxRedirects: 0 });
  assert.equal(response.status(), 400);
  assert.match(await response.text(), /sign out instead/);
  assert.equal((await watched.page.goto(`${cb.baseUrl}/console/account`))?.status(), 200, 'still signed in');
});

test('a wrong current password is refused and changes nothing; the right one changes it and ends the other sessions', async () => {
  const user = await cb.harness.createUser({ role: 'employee' });
  const watched = await cb.newPage();
  await signInThroughConsole(watched, cb.baseUrl, user, 0);
  const [other] = await apiSessions(user);
  await watched.page.goto(`${cb.baseUrl}/console/account`);

  await watched.page.getByLabel('Current password').fill('not my password at all');
  await watched.page.getByLabel('New password').fill('a brand new passphrase 42');
  const [refused] = await Promise.all([watched.page.waitForResponse((r) => r.request().method() === 'POST'), watched.page.getByRole('button', { name: 'Change password' }).click()]);
  assert.equal(refused.status(), 403);
  assert.equal(await watched.page.getByRole('alert').textContent(), 'The current password is wrong.');
  assert.equal(await alive(other), true, 'nothing changed');
  watched.problems.splice(0, watched.problems.length, ...watched.problems.filter((problem) => !/status of 403/.test(problem)));

  await watched.page.getByLabel('Current password').fill(user.password);
  await watched.page.getByLabel('New password').fill('a brand new passphrase 42');
  await watched.page.getByRole('button', { name: 'Change password' }).click();
  await watched.page.waitForLoadState();
  assert.equal(await watched.page.getByRole('status').textContent(), 'Password changed. 2 other sessions ended.');
  assert.equal(await alive(other), false);
  await watched.check('my-account-password-changed');

  // The new password is the one that signs in now (to the second-factor step: a password
  // change forgets trusted devices), and the old one is refused.
  const withNew = await cb.harness.request({ method: 'POST', url: '/api/v1/auth/login', body: { email: user.email, password: 'a brand new passphrase 42' } });
  assert.equal(withNew.json().type, 'second-factor-required');
  const withOld = await cb.harness.request({ method: 'POST', url: '/api/v1/auth/login', body: { email: user.email, password: user.password } });
  assert.equal(withOld.json().type, 'invalid-credentials');
  watched.assertClean();
});
