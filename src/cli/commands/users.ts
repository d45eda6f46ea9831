import { Option, type Command } from 'commander';
import { Accounts } from '../../identity/accounts/accounts.js';
import { IdentityError } from '../../identity/errors.js';
import { FactorReset } from '../../identity/factors/factor-reset.js';
import { ROLES, isRole } from '../../identity/permissions.js';
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
