import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { ROLES } from '../../src/identity/permissions.js';
import { queryRows } from '../../src/store/connection.js';
import { assertOneLine, runCliProcess, stopChildren } from '../helpers/cli.js';
import { openCliWorkspace, type CliWorkspace } from '../helpers/cli-identity.js';
import { describeEachBackend } from '../helpers/database.js';
import { totpCode } from '../helpers/totp-codes.js';

after(stopChildren);

/** Unique enough to grep for anywhere: if it shows up in output, logs or rows, it leaked. */
const PASSWORD = 'canary-pw Tr0ub4dor&3 horse';
const UUID_LINE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\n$/;

describe('users create: usage', () => {
  // None of these reaches the database, so one data dir (never created) serves them all.
  test('the password is never an argument; role, email and tenant rules are usage errors (exit 2)', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'cg-users-usage-'));
    const run = (args: string[], stdin?: string) => runCliProcess(['users', 'create', ...args], { env: {}, cwd, timeoutMs: 300_000, ...(stdin !== undefined ? { stdin } : {}) });
    const [noStdinFlag, asArgument, asSeparateArgument, badRole, badEmail, clientWithoutTenant, adminWithTenant, emptyStdin, help] = await Promise.all([
      run(['--email', 'a@example.test', '--role', 'admin'], `${PASSWORD}\n`),
      run(['--email', 'a@example.test', '--role', 'admin', `--password=${PASSWORD}`]),
      run(['--email', 'a@example.test', '--role', 'admin', '--password', PASSWORD]),
      run(['--email', 'a@example.test', '--role', 'root', '--password-stdin'], `${PASSWORD}\n`),
      run(['--email', 'not an address', '--role', 'admin', '--password-stdin'], `${PASSWORD}\n`),
      run(['--email', 'a@example.test', '--role', 'client', '--password-stdin'], `${PASSWORD}\n`),
      run(['--email', 'a@example.test', '--role', 'admin', '--tenant', 'acme', '--password-stdin'], `${PASSWORD}\n`),
      run(['--email', 'a@example.test', '--role', 'admin', '--password-stdin'], ''),
      run(['--help']),
    ]);
    for (const result of [noStdinFlag, asArgument, asSeparateArgument, badRole, badEmail, clientWithoutTenant, adminWithTenant, emptyStdin]) {
      assert.equal(result.code, 2, result.stderr);
      assertOneLine(result.stderr);
      assert.equal(result.stdout, '');
      assert.equal((result.stdout + result.stderr).includes(PASSWORD), false, 'the password is never echoed');
    }
    assert.equal(noStdinFlag.stderr, 'ciphergate: users create: --password-stdin is required; the password is read from stdin, never from an argument\n');
    assert.match(asArgument.stderr, /^ciphergate: --password: a password is never taken as an argument .*--password-stdin\n$/);
    assert.equal(asSeparateArgument.stderr, asArgument.stderr);
    assert.equal(badRole.stderr, `ciphergate: --role: expected one of ${ROLES.join(', ')}, got "root"\n`);
    assert.equal(badEmail.stderr, 'ciphergate: --email: expected an e-mail address, got "not an address"\n');
    assert.match(clientWithoutTenant.stderr, /^ciphergate: --tenant: a client user belongs to one tenant/);
    assert.equal(adminWithTenant.stderr, 'ciphergate: --tenant: only client users belong to a tenant, not a admin\n');
    assert.equal(emptyStdin.stderr, 'ciphergate: --password-stdin: stdin was empty\n');
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--password-stdin/);
    assert.match(help.stdout, /enroll TOTP at the first sign-in/);
    assert.doesNotMatch(help.stdout, /--password </, 'the refusing --password option is hidden');
    rmSync(cwd, { recursive: true, force: true });
  });
});

await describeEachBackend('users create', (backend) => {
  let space: CliWorkspace;

  before(async () => {
    space = await openCliWorkspace(backend, 'users');
    const put = await space.run(['tenants', 'put', 'acme'], { stdin: JSON.stringify({ name: 'Acme' }) });
    assert.equal(put.code, 0, put.stderr);
  });
  after(() => space?.cleanup());

  test('makes an active user from the password on stdin, prints its id, leaks the password nowhere; the user signs in and must enroll TOTP', async () => {
    // Trace logging, so a password passing through any logged value would show.
    const created = await space.run(['users', 'create', '--email', 'First.Admin@Example.test', '--role', 'admin', '--password-stdin'], {
      stdin: `${PASSWORD}\n`,
      env: { CIPHERGATE_LOG_LEVEL: 'trace' },
    });
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stdout, UUID_LINE);
    const userId = created.stdout.trim();
    assert.match(created.stderr, /note: the user enrolls TOTP at the first sign-in/);
    assert.equal((created.stdout + created.stderr).includes(PASSWORD), false);

    const client = await space.run(['users', 'create', '--email', 'client@example.test', '--role', 'client', '--tenant', 'acme', '--password-stdin'], { stdin: `${PASSWORD}\r\n` });
    assert.equal(client.code, 0, client.stderr);
    const clientId = client.stdout.trim();

    const server = await space.openServer({ logLevel: 'trace' });
    try {
      const rows = await queryRows<{ id: string; role: string; status: string; tenant_slug: string | null; password_hash: string }>(
        server.db,
        sql`select u.id::text, u.role, u.status, t.slug as tenant_slug, u.password_hash from users u left join tenants t on t.id = u.tenant_id order by u.created_at`,
      );
      assert.deepEqual(
        rows.map(({ id, role, status, tenant_slug }) => ({ id, role, status, tenant_slug })),
        [
          { id: userId, role: 'admin', status: 'active', tenant_slug: null },
          { id: clientId, role: 'client', status: 'active', tenant_slug: 'acme' },
        ],
      );
      for (const row of rows) assert.match(row.password_hash, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);

      const audit = await queryRows<{ action: string; actor_type: string; target_id: string; details: Record<string, unknown> }>(
        server.db,
        sql`select action, actor_type, target_id, details from audit_events where action = 'user.create' order by seq`,
      );
      assert.deepEqual(audit, [
        { action: 'user.create', actor_type: 'system', target_id: userId, details: { role: 'admin', via: 'cli' } },
        { action: 'user.create', actor_type: 'system', target_id: clientId, details: { role: 'client', via: 'cli' } },
      ]);
      const everything = JSON.stringify(await queryRows(server.db, sql`select * from audit_events`)) + JSON.stringify(await queryRows(server.db, sql`select * from users`));
      assert.equal(everything.includes(PASSWORD), false, 'neither the audit trail nor the users table holds the password');
      assert.equal(everything.toLowerCase().includes('first.admin@example.test'), false, 'the email is stored sealed');

      // The exact password (one trailing newline dropped, nothing else) is accepted; the email in any case.
      const withNewline = await server.request('POST', '/api/v1/auth/login', { body: { email: 'first.admin@example.test', password: `${PASSWORD}\n` } });
      assert.equal(withNewline.statusCode, 401);
      assert.equal(withNewline.json().type, 'invalid-credentials');
      const login = await server.request('POST', '/api/v1/auth/login', { body: { email: 'first.admin@example.test', password: PASSWORD } });
      assert.equal(login.statusCode, 401, login.body);
      assert.equal(login.json().type, 'second-factor-enrollment-required');
      const challengeToken = login.json().challengeToken as string;
      assert.equal(typeof challengeToken, 'string');

      // The rest of the first sign-in: enroll, confirm, and the tokens work.
      const enroll = await server.request('POST', '/api/v1/auth/totp/enroll', { body: { challengeToken } });
      assert.equal(enroll.statusCode, 200, enroll.body);
      const confirm = await server.request('POST', '/api/v1/auth/totp/confirm', { body: { challengeToken, code: totpCode(enroll.json().secret) } });
      assert.equal(confirm.statusCode, 200, confirm.body);
      assert.equal(confirm.json().recoveryCodes.length, 10);
      const sessions = await server.request('GET', '/api/v1/auth/sessions', { token: confirm.json().accessToken });
      assert.equal(sessions.statusCode, 200, sessions.body);

      const clientLogin = await server.request('POST', '/api/v1/auth/login', { body: { email: 'client@example.test', password: PASSWORD } });
      assert.equal(clientLogin.json().type, 'second-factor-enrollment-required', 'a CRLF line ending is dropped too');
      assert.equal(server.logText().includes(PASSWORD), false, 'the server logs never hold the password');
    } finally {
      await server.close();
    }
  });

  test('an unknown tenant, a weak password and a taken email are refused with one line (exit 1) and nothing is written', async () => {
    const email = `taken-${randomBytes(3).toString('hex')}@example.test`;
    const first = await space.run(['users', 'create', '--email', email, '--role', 'employee', '--password-stdin'], { stdin: PASSWORD });
    assert.equal(first.code, 0, first.stderr);
    const runs = {
      unknownTenant: ['--email', 'other@example.test', '--role', 'client', '--tenant', 'nope'],
      weak: ['--email', 'weak@example.test', '--role', 'employee'],
      taken: ['--email', email.toUpperCase(), '--role', 'manager'],
    };
    const [unknownTenant, weak, taken] = await space.runAll([
      { args: ['users', 'create', ...runs.unknownTenant, '--password-stdin'], stdin: `${PASSWORD}\n` },
      { args: ['users', 'create', ...runs.weak, '--password-stdin'], stdin: 'password1234\n' },
      { args: ['users', 'create', ...runs.taken, '--password-stdin'], stdin: `${PASSWORD}\n` },
    ]);
    const results = { unknownTenant: unknownTenant!, weak: weak!, taken: taken! };
    for (const result of Object.values(results)) {
      assert.equal(result.code, 1, result.stderr);
      assertOneLine(result.stderr);
      assert.equal(result.stdout, '');
      assert.equal(result.stderr.includes(PASSWORD), false);
    }
    assert.equal(results.unknownTenant.stderr, 'ciphergate: --tenant: no tenant "nope"\n');
    assert.equal(results.weak.stderr, 'ciphergate: password rejected: This password is on a list of commonly used passwords; choose another.\n');
    assert.equal(results.weak.stderr.includes('password1234'), false);
    assert.equal(results.taken.stderr, 'ciphergate: a user with this email exists already\n');

    const server = await space.openServer();
    try {
      const [{ users }] = (await queryRows<{ users: number }>(server.db, sql`select count(*)::int as users from users where role in ('employee', 'manager')`)) as [{ users: number }];
      assert.equal(users, 1, 'only the first user exists');
      const [{ events }] = (await queryRows<{ events: number }>(server.db, sql`select count(*)::int as events from audit_events where action = 'user.create' and details->>'role' in ('employee', 'manager')`)) as [{ events: number }];
      assert.equal(events, 1);
    } finally {
      await server.close();
    }
  });
});

await describeEachBackend('users reset-factors', (backend) => {
  let space: CliWorkspace;

  before(async () => {
    space = await openCliWorkspace(backend, 'users-reset');
  });
  after(() => space?.cleanup());

  test('removes every factor of the user and ends their sessions, audited as the operator; bad and unknown ids are refused with one line', async () => {
    const created = await space.run(['users', 'create', '--email', 'lost@example.test', '--role', 'admin', '--password-stdin'], { stdin: `${PASSWORD}\n` });
    assert.equal(created.code, 0, created.stderr);
    const userId = created.stdout.trim();
    let server = await space.openServer();
    try {
      const { factors, sessions } = server.identity.parts;
      const enrollment = await factors.startTotpEnrollment(userId, 'lost@example.test');
      assert.ok((await factors.confirmTotp(userId, totpCode(enrollment.secretBase32, -1), server.db)).ok);
      await sessions.start({ userId, deviceId: null, deviceLabel: 'test', ip: '127.0.0.1' });
    } finally {
      await server.close();
    }

    const [reset, malformed, unknown] = await space.runAll([
      ['users', 'reset-factors', userId],
      ['users', 'reset-factors', 'not-a-uuid'],
      ['users', 'reset-factors', '00000000-0000-4000-8000-000000000000'],
    ]);
    assert.equal(reset!.code, 0, reset!.stderr);
    assert.equal(reset!.stdout, `reset the second factors of user ${userId}: 1 authenticator, 10 recovery codes removed; 1 session ended\n`);
    assert.equal(malformed!.code, 2);
    assert.equal(malformed!.stderr, 'ciphergate: id: expected a user id (a UUID), got "not-a-uuid"\n');
    assert.equal(unknown!.code, 1);
    assert.equal(unknown!.stderr, 'ciphergate: no user 00000000-0000-4000-8000-000000000000\n');

    server = await space.openServer();
    try {
      const [rows] = await queryRows<{ factors: number; recovery: number; live_sessions: number }>(
        server.db,
        sql`select (select count(*)::int from totp_factors where user_id = ${userId}) as factors,
                   (select count(*)::int from recovery_codes where user_id = ${userId}) as recovery,
                   (select count(*)::int from sessions where user_id = ${userId} and revoked_at is null) as live_sessions`,
      );
      assert.deepEqual({ ...rows }, { factors: 0, recovery: 0, live_sessions: 0 });
      const audit = await queryRows<{ actor_type: string; actor_id: string | null; target_id: string; details: Record<string, unknown> }>(
        server.db,
        sql`select actor_type, actor_id, target_id, details from audit_events where action = 'user.factors.reset'`,
      );
      assert.deepEqual(audit, [
        { actor_type: 'system', actor_id: 'cli', target_id: userId, details: { via: 'cli', authenticators: 1, recoveryCodes: 10, phone: false, sessions: 1, devices: 0 } },
      ]);
      const login = await server.request('POST', '/api/v1/auth/login', { body: { email: 'lost@example.test', password: PASSWORD } });
      assert.equal(login.json().type, 'second-factor-enrollment-required', login.body);
    } finally {
      await server.close();
    }
  });
});

await describeEachBackend('users list, lock, unlock, sessions', (backend) => {
  let space: CliWorkspace;

  before(async () => {
    space = await openCliWorkspace(backend, 'users-admin');
  });
  after(() => space?.cleanup());

  test('lists users (table and --json), locks and unlocks one, lists and ends sessions; audited as the operator; bad ids are one line', async () => {
    const [first, second] = await space.runAll([
      { args: ['users', 'create', '--email', 'boss@example.test', '--role', 'admin', '--password-stdin'], stdin: `${PASSWORD}\n` },
      { args: ['users', 'create', '--email', 'clerk@example.test', '--role', 'employee', '--password-stdin'], stdin: `${PASSWORD}\n` },
    ]);
    const [adminId, clerkId] = [first!.stdout.trim(), second!.stdout.trim()];
    let server = await space.openServer();
    const sessionIds: string[] = [];
    try {
      for (let n = 0; n < 2; n += 1) sessionIds.push((await server.identity.parts.sessions.start({ userId: clerkId, deviceId: null, deviceLabel: 'test', ip: '127.0.0.1' })).sessionId);
    } finally {
      await server.close();
    }

    const [table, json, sessions] = await space.runAll([['users', 'list'], ['users', 'list', '--json'], ['users', 'sessions', clerkId, '--json']]);
    assert.equal(table!.code, 0, table!.stderr);
    const lines = table!.stdout.trimEnd().split('\n');
    assert.match(lines[0]!, /^ID +EMAIL +ROLE +TENANT +STATUS$/);
    assert.equal(lines.length, 3);
    assert.match(table!.stdout, new RegExp(`${clerkId}  clerk@example.test +employee  - +active`));
    const listed = JSON.parse(json!.stdout) as { users: Array<{ id: string; email: string; status: string }> };
    assert.deepEqual(listed.users.map((user) => [user.id, user.email, user.status]).sort(), [[adminId, 'boss@example.test', 'active'], [clerkId, 'clerk@example.test', 'active']].sort());
    assert.deepEqual(new Set((JSON.parse(sessions!.stdout) as { sessions: Array<{ id: string }> }).sessions.map((s) => s.id)), new Set(sessionIds));

    const endOne = await space.run(['users', 'sessions', clerkId, '--revoke', sessionIds[0]!]);
    assert.equal(endOne.stdout, `ended session ${sessionIds[0]} of user ${clerkId}\n`, endOne.stderr);
    const endAgain = await space.run(['users', 'sessions', clerkId, '--revoke', sessionIds[0]!]);
    assert.equal(endAgain.code, 1);
    assert.equal(endAgain.stderr, `ciphergate: no live session ${sessionIds[0]} of user ${clerkId}\n`);
    const lock = await space.run(['users', 'lock', clerkId]);
    assert.equal(lock.stdout, `locked user ${clerkId}: 1 session ended, 0 trusted devices forgotten\n`, lock.stderr);
    const [lockAgain, lastAdmin, malformed, unknown, badSession] = await space.runAll([
      ['users', 'lock', clerkId],
      ['users', 'lock', adminId],
      ['users', 'unlock', 'not-a-uuid'],
      ['users', 'lock', '00000000-0000-4000-8000-000000000000'],
      ['users', 'sessions', clerkId, '--revoke', 'nope'],
    ]);
    for (const result of [lockAgain, lastAdmin, unknown]) assert.equal(result!.code, 1, result!.stderr);
    for (const result of [malformed, badSession]) assert.equal(result!.code, 2, result!.stderr);
    assert.equal(lockAgain!.stderr, 'ciphergate: only an active user can be locked; this one is locked\n');
    assert.equal(lastAdmin!.stderr, 'ciphergate: the last active admin cannot be locked: nobody could sign in to unlock them\n');
    assert.equal(malformed!.stderr, 'ciphergate: id: expected a user id (a UUID), got "not-a-uuid"\n');
    assert.equal(unknown!.stderr, 'ciphergate: no user 00000000-0000-4000-8000-000000000000\n');
    assert.equal(badSession!.stderr, 'ciphergate: --revoke: expected a session id (a UUID), got "nope"\n');

    server = await space.openServer();
    try {
      const login = await server.request('POST', '/api/v1/auth/login', { body: { email: 'clerk@example.test', password: PASSWORD } });
      assert.equal(login.json().type, 'invalid-credentials', 'a locked user cannot sign in');
    } finally {
      await server.close();
    }
    const unlock = await space.run(['users', 'unlock', clerkId]);
    assert.match(unlock.stdout, new RegExp(`^unlocked user ${clerkId}; \\d+ failed-attempt runs? cleared\\n$`), unlock.stderr);

    server = await space.openServer();
    try {
      const login = await server.request('POST', '/api/v1/auth/login', { body: { email: 'clerk@example.test', password: PASSWORD } });
      assert.equal(login.json().type, 'second-factor-enrollment-required', login.body);
      const audit = await queryRows<{ action: string; actor_id: string; target_id: string; details: Record<string, unknown> }>(
        server.db,
        sql`select action, actor_id, target_id, details from audit_events where action in ('user.lock', 'user.unlock', 'auth.session.revoke') order by seq`,
      );
      assert.deepEqual(
        audit.map((event) => [event.action, event.actor_id, event.details.via]),
        [['auth.session.revoke', 'cli', 'cli'], ['user.lock', 'cli', 'cli'], ['user.unlock', 'cli', 'cli']],
      );
    } finally {
      await server.close();
    }
  });
});
