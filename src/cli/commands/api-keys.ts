import type { Command } from 'commander';
import { IdentityError } from '../../identity/errors.js';
import { isUsable, listApiKeys, type ApiKeyRecord } from '../../identity/machines/api-keys.js';
import { MachineAuth } from '../../identity/machines/machine-auth.js';
import { API_KEY_SCOPES, isApiKeyScope } from '../../identity/permissions.js';
import { isUuid } from '../../domain/ids.js';
import { listAllTenants } from '../../relay/tenant-catalogue.js';
import { CliError } from '../errors.js';
import { tenantBySlug, withIdentity } from '../identity-runtime.js';
import { openRuntime, type CliIo, type Runtime } from '../runtime.js';

export function registerApiKeys(program: Command, io: CliIo): void {
  const apiKeysCommand = program.command('api-keys').description('API keys for machines (bearer keys and OAuth client credentials)');

  apiKeysCommand
    .command('create')
    .description('create an API key bound to a tenant and scopes; prints the key once (it is stored hashed and cannot be shown again)')
    .option('--tenant <slug>', 'the tenant the key is bound to (required unless the only scope is metrics:read)')
    .option('--scope <scope>', `repeat for several: ${API_KEY_SCOPES.join(', ')}`, (value: string, previous: string[]) => [...previous, value], [] as string[])
    .requiredOption('--name <name>', 'what the key is for, shown in listings (1-100 characters)')
    .option('--expires <iso8601>', 'when the key stops working, e.g. 2027-01-31 or 2027-01-31T12:00:00Z (default: never)')
    .option('--json', 'print {id, key, tenantId, scopes, expiresAt} instead of the key alone')
    .action(async (options: { tenant?: string; scope: string[]; name: string; expires?: string; json?: boolean }) => {
      const scopes = parseScopes(options.scope);
      const name = options.name.trim();
      if (name.length < 1 || name.length > 100) throw new CliError('--name: expected 1-100 characters', 2);
      const expiresAt = options.expires === undefined ? null : parseExpiry(options.expires);
      if (options.tenant === undefined && scopes.some((scope) => scope !== 'metrics:read')) {
        throw new CliError('--tenant: a key with data scopes is bound to one tenant; name it with --tenant SLUG', 2);
      }

      const { created, tenantSlug } = await withIdentity(io, async (identity, runtime) => {
        const tenant = options.tenant === undefined ? undefined : await tenantBySlug(runtime.database.db, options.tenant);
        try {
          const result = await new MachineAuth(identity).createKey(null, { name, tenantId: tenant?.id ?? null, scopes, expiresAt });
          return { created: result, tenantSlug: tenant?.slug };
        } catch (error) {
          if (error instanceof IdentityError) throw new CliError(error.detail, error.code === 'invalid-input' ? 2 : 1);
          throw error;
        }
      });
      const { record, key } = created;
      if (options.json) {
        io.stdout.write(`${JSON.stringify({ id: record.id, key, tenantId: record.tenantId, scopes: record.scopes, expiresAt: record.expiresAt?.toISOString() ?? null }, null, 2)}\n`);
      } else {
        // The key alone on stdout, so `KEY=$(ciphergate api-keys create …)` captures exactly it.
        io.stdout.write(`${key}\n`);
      }
      io.stderr.write(
        `ciphergate: note: API key ${record.id} (also its OAuth client id) for ${tenantSlug === undefined ? 'no tenant' : `tenant ${tenantSlug}`}, scopes ${record.scopes.join(' ')}; the key is shown only this once\n`,
      );
    });

  apiKeysCommand
    .command('list')
    .description('API keys, newest first, with tenant, scopes, expiry, last use and status (never the keys themselves)')
    .option('--tenant <slug>', 'only the keys of this tenant')
    .option('--json', 'one JSON document instead of a table')
    .action(async (options: { tenant?: string; json?: boolean }) => {
      // Listing needs no keys: nothing sealed is read.
      const runtime = await openRuntime(io, { logTo: 'stderr', defaultLogLevel: 'warn' });
      try {
        const db = runtime.database.db;
        const tenantId = options.tenant === undefined ? undefined : (await tenantBySlug(db, options.tenant)).id;
        const keys = await listApiKeys(db, tenantId === undefined ? {} : { tenantId });
        const slugs = await tenantSlugs(db);
        const now = new Date();
        if (options.json) {
          io.stdout.write(`${JSON.stringify(keys.map((record) => keyView(record, slugs, now)), null, 2)}\n`);
          return;
        }
        if (keys.length === 0) {
          io.stdout.write('no API keys\n');
          return;
        }
        const rows = keys.map((record) => {
          const view = keyView(record, slugs, now);
          return [view.id, view.status, view.tenant ?? '-', view.scopes.join(','), view.expiresAt ?? '-', view.lastUsedAt ?? '-', `${view.name} (${view.hint}…)`];
        });
        const header = ['ID', 'STATUS', 'TENANT', 'SCOPES', 'EXPIRES', 'LAST USED', 'NAME'];
        const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)));
        for (const row of [header, ...rows]) {
          io.stdout.write(`${row.map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column]!))).join('  ')}\n`);
        }
      } finally {
        await runtime.close();
      }
    });

  apiKeysCommand
    .command('revoke')
    .description('revoke an API key and end every token issued from it, at once')
    .argument('<id>', 'the key id (from `api-keys list`)')
    .action(async (id: string) => {
      if (!isUuid(id)) throw new CliError(`id: expected an API key id (a UUID), got ${JSON.stringify(id)}`, 2);
      const revocation = await withIdentity(io, (identity) => new MachineAuth(identity).revokeKeyAsOperator(id));
      if (revocation.kind === 'unknown') throw new CliError(`no API key ${id}`);
      if (revocation.kind === 'revoked-already') throw new CliError(`API key ${id} is revoked already`);
      const endedSessions = revocation.endedSessions;
      io.stdout.write(`revoked API key ${id} (${endedSessions} ${endedSessions === 1 ? 'session' : 'sessions'} ended)\n`);
    });
}

function parseScopes(given: string[]): Array<(typeof API_KEY_SCOPES)[number]> {
  if (given.length === 0) throw new CliError(`--scope: give at least one of ${API_KEY_SCOPES.join(', ')}`, 2);
  const unknown = given.find((scope) => !isApiKeyScope(scope));
  if (unknown !== undefined) throw new CliError(`--scope: unknown scope ${JSON.stringify(unknown)}; allowed: ${API_KEY_SCOPES.join(', ')}`, 2);
  return [...new Set(given)].sort() as Array<(typeof API_KEY_SCOPES)[number]>;
}

/** A date (midnight UTC) or a date-time with an explicit zone: a zone-less time would mean the server's local time. */
const ISO_8601 = /^\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2}))?$/;

function parseExpiry(value: string): Date {
  const at = ISO_8601.test(value) && isCalendarDate(value.slice(0, 10)) ? new Date(value) : undefined;
  if (!at || Number.isNaN(at.getTime())) throw new CliError(`--expires: expected an ISO 8601 date or date-time with a zone (2027-01-31, 2027-01-31T12:00:00Z), got ${JSON.stringify(value)}`, 2);
  if (at.getTime() <= Date.now()) throw new CliError(`--expires: ${at.toISOString()} is in the past`, 2);
  return at;
}

/** `Date` reads 2027-02-31 as 3 March; an operator who typed it made a mistake. */
function isCalendarDate(date: string): boolean {
  const [year, month, day] = date.split('-').map(Number) as [number, number, number];
  const parsed = new Date(Date.UTC(year, month - 1, day));
  return parsed.getUTCFullYear() === year && parsed.getUTCMonth() === month - 1 && parsed.getUTCDate() === day;
}

async function tenantSlugs(db: Runtime['database']['db']): Promise<Map<string, string>> {
  return new Map((await listAllTenants(db)).map((tenant) => [tenant.id, tenant.slug]));
}

function keyView(record: ApiKeyRecord, slugs: Map<string, string>, now: Date) {
  const status = record.revokedAt !== null ? 'revoked' : isUsable(record, now) ? 'active' : 'expired';
  return {
    id: record.id,
    name: record.name,
    hint: record.hint,
    status,
    tenantId: record.tenantId,
    tenant: record.tenantId === null ? null : (slugs.get(record.tenantId) ?? null),
    scopes: record.scopes,
    createdAt: record.createdAt.toISOString(),
    expiresAt: record.expiresAt?.toISOString() ?? null,
    lastUsedAt: record.lastUsedAt?.toISOString() ?? null,
    revokedAt: record.revokedAt?.toISOString() ?? null,
  };
}
