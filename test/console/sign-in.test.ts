import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { CONSOLE_CSP } from '../../src/console/page-security.js';
import { openConsoleBrowser, signInThroughConsole, type ConsoleBrowser } from '../helpers/console-browser.js';
import { totpCode } from '../helpers/totp-codes.js';

/**
 * The console's sign-in, layout and session in Chromium: password then TOTP, a trusted device
 * the next time, sign-out; the console session is one of identity's sessions (listed and
 * revoked through the API); and the abuse cases: forged forms, dead cookies, framing, a role
 * opening a page it may not, caching of personal pages.
 */

let cb: ConsoleBrowser;
before(async () => {
  cb = await openConsoleBrowser();
});
after(() => cb?.close());

test('GET /console is the sign-in page: one h1, the console CSP, no-store, clean under axe', async () => {
  const watched = await cb.newPage();
  const response = await watched.page.goto(`${cb.baseUrl}/console`);
  assert.equal(response?.status(), 200);
  const headers = response!.headers();
  assert.equal(headers['content-security-policy'], CONSOLE_CSP);
  assert.equal(headers['cache-control'], 'no-store');
  assert.equal(headers['x-frame-options'], 'DENY');
  assert.deepEqual(await watched.page.locator('h1').allTextContents(), ['Sign in']);
  await watched.check('sign-in');
});

test('password then TOTP signs in to the dashboard; the nav holds only what an admin may open; cookies are __Host-, HttpOnly, Secure, SameSite=Strict', async () => {
  const admin = await cb.harness.createUser({ role: 'admin' });
  const watched = await cb.newPage();
  await watched.page.goto(`${cb.baseUrl}/console`);
  await watched.page.getByLabel('Email').fill(admin.email);
  await watched.page.getByLabel('Password').fill(admin.password);
  await watched.page.getByRole('button', { name: 'Sign in' }).click();
  await watched.page.waitForURL(`${cb.baseUrl}/console/second-factor`);
  assert.deepEqual(await watched.page.locator('h1').allTextContents(), ['Second factor']);
  await watched.check('second-factor');
  await watched.page.getByLabel('Code', { exact: true }).fill(totpCode(admin.totpSecret!));
  await watched.page.getByRole('button', { name: 'Continue' }).click();
  await watched.page.waitForURL(`${cb.baseUrl}/console/dashboard`);
  assert.deepEqual(await watched.page.locator('h1').allTextContents(), ['Dashboard']);
  assert.deepEqual(await watched.page.locator('nav a').allTextContents(), ['Dashboard', 'Conversations', 'Users', 'My account']);
  await watched.check('dashboard');

  const cookies = await watched.context.cookies();
  for (const name of ['__Host-cg_access', '__Host-cg_refresh', '__Host-cg_device']) {
    const cookie = cookies.find((candidate) => candidate.name === name);
    assert.ok(cookie, `${name} is set`);
    assert.equal(cookie.httpOnly, true, name);
    assert.equal(cookie.secure, true, name);
    assert.equal(cookie.sameSite, 'Strict', name);
    assert.equal(cookie.path, '/', name);
  }

  // Signed out, the same browser is a trusted device: the password alone signs in again.
  await watched.page.getByRole('button', { name: 'Sign out' }).click();
  await watched.page.waitForURL(`${cb.baseUrl}/console`);
  await watched.page.getByLabel('Email').fill(admin.email);
  await watched.page.getByLabel('Password').fill(admin.password);
  await watched.page.getByRole('button', { name: 'Sign in' }).click();
  await watched.page.waitForURL(`${cb.baseUrl}/console/dashboard`);
  watched.assertClean();
});

test('a wrong password and an unknown email read the same, and say nothing else', async () => {
  const user = await cb.harness.createUser({ role: 'employee' });
  const watched = await cb.newPage();
  const texts: string[] = [];
  for (const [email, password] of [
    [user.email, 'not the password at all'],
    ['nobody-here@example.test', 'not the password at all'],
  ] as const) {
    await watched.page.goto(`${cb.baseUrl}/console`);
    await watched.page.getByLabel('Email').fill(email);
    await watched.page.getByLabel('Password').fill(password);
    const [response] = await Promise.all([watched.page.waitForResponse((candidate) => candidate.request().method() === 'POST'), watched.page.getByRole('button', { name: 'Sign in' }).click()]);
    assert.equal(response.status(), 401);
    texts.push((await watched.page.getByRole('alert').textContent()) ?? '');
  }
  assert.equal(texts[0], 'The email or the password is wrong.');
  assert.equal(texts[1], texts[0]);
  // The 401 of the form is an expected answer, which Chromium reports as a console error.
  watched.problems.splice(0, watched.problems.length, ...watched.problems.filter((problem) => !/status of 401/.test(problem)));
  await watched.check('sign-in-refused');
});

test('the console session is listed by GET /api/v1/auth/sessions, and revoking it there ends it at once', async () => {
  const user = await cb.harness.createUser({ role: 'employee' });
  const watched = await cb.newPage();
  await signInThroughConsole(watched, cb.baseUrl, user, 0);
  // Another session of the same user through the API, with the next TOTP step.
  const login = await cb.harness.request({ method: 'POST', url: '/api/v1/auth/login', body: { email: user.email, password: user.password } });
  const second = await cb.harness.request({ method: 'POST', url: '/api/v1/auth/second-factor', body: { challengeToken: login.json().challengeToken, method: 'totp', code: totpCode(user.totpSecret!, 1) } });
  assert.equal(second.statusCode, 200, second.body);
  const api = second.json().accessToken as string;
  const listed = (await cb.harness.request({ method: 'GET', url: '/api/v1/auth/sessions', token: api })).json().sessions as Array<{ id: string; current: boolean }>;
  const consoleSession = listed.find((session) => !session.current);
  assert.ok(consoleSession, 'the console session is listed beside the API one');

  const revoked = await cb.harness.request({ method: 'DELETE', url: `/api/v1/auth/sessions/${consoleSession.id}`, token: api });
  assert.equal(revoked.statusCode, 204);
  await watched.page.goto(`${cb.baseUrl}/console/account`);
  assert.equal(watched.page.url(), `${cb.baseUrl}/console`, 'the revoked session is sent to the sign-in page, its refresh token refused too');
  assert.deepEqual(await watched.page.locator('h1').allTextContents(), ['Sign in']);
  watched.assertClean();
});

test("a logged-out session's cookies are refused when replayed", async () => {
  const user = await cb.harness.createUser({ role: 'employee' });
  const watched = await cb.newPage();
  await signInThroughConsole(watched, cb.baseUrl, user);
  const stolen = await watched.context.cookies();
  await watched.page.getByRole('button', { name: 'Sign out' }).click();
  await watched.page.waitForURL(`${cb.baseUrl}/console`);

  const replay = await cb.newPage();
  await replay.context.addCookies(stolen);
  await replay.page.goto(`${cb.baseUrl}/console/account`);
  assert.equal(replay.page.url(), `${cb.baseUrl}/console`);
  assert.deepEqual(await replay.page.locator('h1').allTextContents(), ['Sign in']);
  replay.assertClean();
});

test("a form without a CSRF token, or with another session's, is refused and changes nothing", async () => {
  const user = await cb.harness.createUser({ role: 'employee' });
  const mine = await cb.newPage();
  await signInThroughConsole(mine, cb.baseUrl, user, 0);
  const other = await cb.harness.createUser({ role: 'employee' });
  const theirs = await cb.newPage();
  await signInThroughConsole(theirs, cb.baseUrl, other, 0);
  await theirs.page.goto(`${cb.baseUrl}/console/account`);
  const theirToken = await theirs.page.locator('input[name="_csrf"]').first().inputValue();

  for (const form of [{ action: 'revoke-others' } as Record<string, string>, { action: 'revoke-others', _csrf: theirToken }, { action: 'revoke-others', _csrf: 'forged' }]) {
    const response = await mine.context.request.post(`${cb.baseUrl}/console/account`, { form, maxRedirects: 0 });
    assert.equal(response.status(), 403, JSON.stringify(form));
    assert.match(await response.text(), /CSRF token missing or invalid/);
  }
  const signOut = await mine.context.request.post(`${cb.baseUrl}/console/sign-out`, { form: { _csrf: theirToken }, maxRedirects: 0 });
  assert.equal(signOut.status(), 403);
  // Still signed in: nothing was changed by the forged forms.
  const page = await mine.page.goto(`${cb.baseUrl}/console/account`);
  assert.equal(page?.status(), 200);
  assert.equal(mine.page.url(), `${cb.baseUrl}/console/account`);
});

test('a cross-site form post is refused before it is read', async () => {
  const response = await fetch(`${cb.baseUrl}/console`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'sec-fetch-site': 'cross-site' },
    body: 'email=a%40example.test&password=whatever',
    redirect: 'manual',
  });
  assert.equal(response.status, 403);
});

test('an employee sees no Users link (Conversations, yes) and gets 403 on /console/users; personal pages are no-store', async () => {
  const employee = await cb.harness.createUser({ role: 'employee' });
  const watched = await cb.newPage();
  await signInThroughConsole(watched, cb.baseUrl, employee);
  assert.deepEqual(await watched.page.locator('nav a').allTextContents(), ['Dashboard', 'Conversations', 'My account']);
  const account = await watched.page.goto(`${cb.baseUrl}/console/account`);
  assert.equal(account?.headers()['cache-control'], 'no-store');
  assert.equal(account?.headers()['content-security-policy'], CONSOLE_CSP);
  assert.equal(await watched.page.locator('tr.current').count(), 1, 'the current session is marked');
  await watched.check('my-account');
  const forbidden = await watched.page.goto(`${cb.baseUrl}/console/users`);
  assert.equal(forbidden?.status(), 403);
  assert.deepEqual(await watched.page.locator('h1').allTextContents(), ['Forbidden']);
  watched.problems.splice(0, watched.problems.length, ...watched.problems.filter((problem) => !/status of 403/.test(problem)));
  watched.assertClean();
});

test('an admin opens Users; a page of the console cannot be framed by another origin', async () => {
  const admin = await cb.harness.createUser({ role: 'admin' });
  const watched = await cb.newPage();
  await signInThroughConsole(watched, cb.baseUrl, admin);
  const users = await watched.page.goto(`${cb.baseUrl}/console/users`);
  assert.equal(users?.status(), 200);
  assert.ok((await watched.page.locator('td', { hasText: admin.email }).count()) === 1);
  await watched.check('users');

  // The attacker's page (about:blank, another origin) frames the console: Chromium refuses.
  const attacker = await watched.context.newPage();
  await attacker.setContent(`<iframe src="${cb.baseUrl}/console/account" title="bait"></iframe>`);
  const frame = attacker.frames().find((candidate) => candidate !== attacker.mainFrame());
  await attacker.waitForTimeout(500);
  const framed = frame ? await frame.evaluate(() => document.body?.innerText ?? '').catch(() => '') : '';
  assert.doesNotMatch(framed, /My account/);
});
