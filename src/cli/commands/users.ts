import { Option, type Command } from 'commander';
import { AccountLocks } from '../../identity/accounts/account-locks.js';
import { Accounts } from '../../identity/accounts/accounts.js';
import { IdentityError } from '../../identity/errors.js';
import { FactorReset } from '../../identity/factors/factor-reset.js';
import { ROLES, isRole } from '../../identity/permissions.js';
import { SessionControl } from '../../identity/sessions/session-control.js';
import { isUuid } from '../../domain/ids.js';
import { CliError } from '../errors.js';
import { tenantBySlug, withIdentity } from '../identity-runtime.js';
import type { CliIo } from '../runtime.js';
import { readStdin } from '../stdin.js';

export function registerUsers(program: Command, io: CliIo): void {
  const usersCommand = program.command('users').description('people who sign in to the API and the console');

  usersCommand
    .command('create')
    .description(
      'create an active user with a password read from stdin (the first admin starts here); prints the user id. ' +
        'The user must still enroll TOTP at the first sign-in: POST /api/v1/auth/login answers second-factor-enrollment-required',
    )
    .requiredOption('--email <email>', 'the sign-in address (stored sealed)')
    .requiredOption('--role <role>', `one of ${ROLES.join(', ')}`)
    .option('--tenant <slug>', 'the tenant of a client user (required for --role client, refused for other roles)')
    .option('--password-stdin', 'read the password from stdin (one trailing newline is dropped); required')
    // Declared only to refuse it without echoing the value: commander would print
    // "unknown option '--password=…'", putting the password into terminal logs.
    .addOption(new Option('--password <password>').hideHelp())
    .action(async (options: { email: string; role: string; tenant?: string; passwordStdin?: boolean; password?: string }) => {
      if (options.password !== undefined) {
        throw new CliError('--password: a password is never taken as an argument (it would stay in shell history and ps); pipe it in with --password-stdin', 2);
      }
      if (!options.passwordStdin) throw new CliError('users create: --password-stdin is required; the password is read from stdin, never from an argument', 2);
      if (!isRole(options.role)) throw new CliError(`--role: expected one of ${ROLES.join(', ')}, got ${JSON.stringify(options.role)}`, 2);
      const role = options.role;
      if (!isEmailAddress(options.email)) throw new CliError(`--email: expected an e-mail address, got ${JSON.stringify(options.email)}`, 2);
      if (role === 'client' && options.tenant === undefined) throw new CliError('--tenant: a client user belongs to one tenant; name it with --tenant SLUG', 2);
      if (role !== 'client' && options.tenant !== undefined) throw new CliError(`--tenant: only client users belong to a tenant, not a ${role}`, 2);
      const password = await readPassword(io.stdin);

      const userId = await withIdentity(io, async (identity, runtime) => {
        const tenantId = options.tenant === undefined ? null : (await tenantBySlug(runtime.database.db, options.tenant)).id;
        try {
          const user = await new Accounts(identity).createUserWithPassword({ email: options.email, role, tenantId, password });
          return user.id;
        } catch (error) {
          if (error instanceof IdentityError && error.code === 'weak-password') throw new CliError(`password rejected: ${error.detail}`);
          if (error instanceof IdentityError) throw new CliError(error.detail, error.code === 'invalid-input' ? 2 : 1);
          throw error;
        }
      });
      io.stdout.write(`${userId}\n`);
      io.stderr.write('ciphergate: note: the user enrolls TOTP at the first sign-in before any token is issued\n');
    });

  usersCommand
    .command('reset-factors')
    .description(
      "remove a user's second factors (authenticator, recovery codes, phone) and end their sessions and trusted devices, for someone who lost them; " +
        'the user enrolls TOTP again at the next sign-in (whoever knows the password can, so be sure of it)',
    )
    .argument('<id>', 'the user id')
    .action(async (id: string) => {
      if (!isUuid(id)) throw new CliError(`id: expected a user id (a UUID), got ${JSON.stringify(id)}`, 2);
      const reset = await withIdentity(io, async (identity) => {
        try {
          return await new FactorReset(identity).resetAsOperator(id);
        } catch (error) {
          if (error instanceof IdentityError && error.code === 'not-found') throw new CliError(`no user ${id}`);
          throw error;
        }
      });
      const count = (n: number, one: string, many: string) => `${n} ${n === 1 ? one : many}`;
      io.stdout.write(
        `reset the second factors of user ${id}: ${count(reset.authenticators, 'authenticator', 'authenticators')}, ${count(reset.recoveryCodes, 'recovery code', 'recovery codes')}` +
          `${reset.phone ? ', the phone' : ''} removed; ${count(reset.sessions, 'session', 'sessions')} ended\n`,
      );
    });

  registerAdministration(usersCommand, io);
}

/**
 * `users list`, `lock`, `unlock` and `sessions`: identity administration by the operator, through
 * the same use cases as the API's routes (audited as actor `system`/`cli`, `via: cli`).
 */
function registerAdministration(usersCommand: Command, io: CliIo): void {
  usersCommand
    .command('list')
    .description('every user: id, email, role, tenant, status (emails opened for display)')
    .option('--tenant <slug>', 'only the users of this tenant')
    .option('--json', 'one JSON document: {"users": [{id, email, role, tenantId, status, hasPassword, createdAt, updatedAt}]}')
    .action(async (options: { tenant?: string; json?: boolean }) => {
      const users = await withIdentity(io, async (identity, runtime) => {
        const tenantId = options.tenant === undefined ? undefined : (await tenantBySlug(runtime.database.db, options.tenant)).id;
        return new Accounts(identity).listUsersAsOperator(tenantId === undefined ? {} : { tenantId });
      });
      if (options.json) {
        io.stdout.write(`${JSON.stringify({ users: users.map((user) => ({ ...user, createdAt: user.createdAt.toISOString(), updatedAt: user.updatedAt.toISOString() })) })}\n`);
        return;
      }
      io.stdout.write(table(['ID', 'EMAIL', 'ROLE', 'TENANT', 'STATUS'], users.map((user) => [user.id, user.email, user.role, user.tenantId ?? '-', user.status])));
    });

  usersCommand
    .command('lock')
    .description("lock an active user until unlocked: sign-in refused, every session, trusted device and sign-in challenge ended; password, factors and API keys kept")
    .argument('<id>', 'the user id')
    .action(async (id: string) => {
      const userId = userIdArgument(id);
      const locked = await withIdentity(io, (identity) => knownUser(userId, () => new AccountLocks(identity).lockAsOperator(userId)));
      io.stdout.write(`locked user ${userId}: ${count(locked.sessions, 'session', 'sessions')} ended, ${count(locked.devices, 'trusted device', 'trusted devices')} forgotten\n`);
    });

  usersCommand
    .command('unlock')
    .description("unlock a locked user, and clear the sign-in throttle's failed-attempt locks of a locked or active user")
    .argument('<id>', 'the user id')
    .action(async (id: string) => {
      const userId = userIdArgument(id);
      const unlocked = await withIdentity(io, (identity) => knownUser(userId, () => new AccountLocks(identity).unlockAsOperator(userId)));
      io.stdout.write(`${unlocked.wasLocked ? 'unlocked' : 'was not locked:'} user ${userId}; ${count(unlocked.failedAttemptLocks, 'failed-attempt run', 'failed-attempt runs')} cleared\n`);
    });

  usersCommand
    .command('sessions')
    .description("a user's live sessions; --revoke ends them all (and forgets their trusted devices), --revoke SESSION_ID ends one")
    .argument('<id>', 'the user id')
    .option('--revoke [sessionId]', 'end every session of the user, or only this one')
    .option('--json', 'the list as one JSON document: {"sessions": [{id, device, ip, createdAt, lastUsedAt}]}')
    .action(async (id: string, options: { revoke?: string | true; json?: boolean }) => {
      const userId = userIdArgument(id);
      const revoke = options.revoke;
      if (typeof revoke === 'string' && !isUuid(revoke)) throw new CliError(`--revoke: expected a session id (a UUID), got ${JSON.stringify(revoke)}`, 2);
      if (revoke !== undefined && options.json) throw new CliError('--json: lists only; --revoke prints one line', 2);
      await withIdentity(io, async (identity) => {
        const sessions = new SessionControl(identity);
        if (revoke === true) {
          const ended = await knownUser(userId, () => sessions.revokeAllAsOperator(userId));
          io.stdout.write(`ended ${count(ended.sessions, 'session', 'sessions')} of user ${userId}, ${count(ended.devices, 'trusted device', 'trusted devices')} forgotten\n`);
          return;
        }
        if (typeof revoke === 'string') {
          await knownUser(userId, () => sessions.revokeSessionAsOperator(userId, revoke), `no live session ${revoke} of user ${userId}`);
          io.stdout.write(`ended session ${revoke} of user ${userId}\n`);
          return;
        }
        const listed = await knownUser(userId, () => sessions.sessionsAsOperator(userId));
        const rows = listed.map((session) => ({ id: session.id, device: session.deviceLabel, ip: session.ip, createdAt: session.createdAt.toISOString(), lastUsedAt: session.lastUsedAt.toISOString() }));
        if (options.json) io.stdout.write(`${JSON.stringify({ sessions: rows })}\n`);
        else io.stdout.write(table(['ID', 'DEVICE', 'IP', 'CREATED', 'LAST USED'], rows.map((row) => [row.id, row.device, row.ip ?? '-', row.createdAt, row.lastUsedAt])));
      });
    });
}

function userIdArgument(id: string): string {
  if (!isUuid(id)) throw new CliError(`id: expected a user id (a UUID), got ${JSON.stringify(id)}`, 2);
  return id;
}

/** Runs a use case on one user; its refusals become one line (exit 1): `not-found` names the user (or `absent`), others say what the use case said. */
async function knownUser<T>(userId: string, action: () => Promise<T>, absent = `no user ${userId}`): Promise<T> {
  try {
    return await action();
  } catch (error) {
    if (error instanceof IdentityError && error.code === 'not-found') throw new CliError(absent);
    if (error instanceof IdentityError) throw new CliError(error.detail);
    throw error;
  }
}

function count(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** Columns padded to their widest cell, two spaces apart; a header row first. */
function table(header: string[], rows: string[][]): string {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)));
  return [header, ...rows].map((row) => row.map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column]!))).join('  ')).join('\n') + '\n';
}

/**
 * The password from stdin with one trailing newline dropped (what `echo` and most secret
 * stores add); any other whitespace is part of the password.
 */
async function readPassword(stdin: NodeJS.ReadableStream): Promise<string> {
  // A terminal would echo it; and a prompt is not what --password-stdin promises scripts.
  if ((stdin as NodeJS.ReadStream).isTTY) throw new CliError('--password-stdin: stdin is a terminal; pipe the password in (e.g. from a secret store)', 2);
  // Far above the 128-character policy limit, so the policy gives the answer for long input.
  const text = await readStdin(stdin, 'password', 4096);
  const password = text.endsWith('\r\n') ? text.slice(0, -2) : text.endsWith('\n') ? text.slice(0, -1) : text;
  if (password.length === 0) throw new CliError('--password-stdin: stdin was empty', 2);
  return password;
}

/**
 * The `email` format of ajv-formats (full mode), which the HTTP API applies to the same field,
 * so the CLI and `POST /users` accept the same addresses.
 */
const EMAIL_PATTERN = /^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*@(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/i;

function isEmailAddress(value: string): boolean {
  return value.length <= 254 && EMAIL_PATTERN.test(value);
}
