import { randomBytes } from 'node:crypto';
import type { AuditLog } from '../audit/audit-log.js';
import type { Relay } from '../relay/relay.js';
import { createLogger } from '../log/logger.js';
import type { Identity } from '../identity/identity.js';
import { API_KEY_SCOPES, ASSIGNABLE_ROLES, PERMISSIONS, ROLES, ROLE_PERMISSIONS, VISIBLE_ROLES, keyScopesBeyondRole, type Permission } from '../identity/permissions.js';
import { buildApp, type RouteCatalogueEntry } from './app.js';

/**
 * docs/permissions.md, generated from the permission matrix and from the routes the real app
 * registers, so neither the matrix nor a route's declaration can drift from the document.
 */
export function permissionsReference(catalogue: RouteCatalogueEntry[]): string {
  const permissions = Object.keys(PERMISSIONS) as Permission[];
  const matrix = permissions.map((permission) => {
    const cells = ROLES.map((role) => (ROLE_PERMISSIONS[role].includes(permission) ? 'yes' : '—'));
    const scope = (API_KEY_SCOPES as readonly string[]).includes(permission) ? 'yes' : '—';
    return `| \`${permission}\` | ${PERMISSIONS[permission]} | ${cells.join(' | ')} | ${scope} |`;
  });
  const routes = [...catalogue]
    .filter((route) => route.method !== 'HEAD')
    .sort((a, b) => a.url.localeCompare(b.url) || String(a.method).localeCompare(String(b.method)))
    .map((route) => {
      const access = 'public' in route.access ? `public: ${route.access.reason}` : `\`${route.access.permission}\``;
      return `| \`${String(route.method)} ${route.url}\` | ${access.replaceAll('|', '\\|')} |`;
    });
  const keyScopes = ROLES.map((role) => {
    const scopes = API_KEY_SCOPES.filter((scope) => keyScopesBeyondRole(role, [scope]).length === 0);
    return `- **${role}** may give: ${scopes.length > 0 ? scopes.join(', ') : 'no key'}`;
  });
  const assignable = ROLES.map((role) => `- **${role}** may give: ${ASSIGNABLE_ROLES[role].length > 0 ? ASSIGNABLE_ROLES[role].join(', ') : 'nothing'}`);
  const visible = ROLES.filter((role) => ROLE_PERMISSIONS[role].includes('users:read')).map((role) => `- **${role}** sees: ${VISIBLE_ROLES[role].join(', ')}`);
  return [
    '# Permissions',
    '',
    '<!-- Generated from src/identity/permissions.ts and the registered routes by `npm run docs:permissions`; test/http/permissions-reference.test.ts keeps it current. -->',
    '',
    'Every route declares the permission it needs, or says why it is public; a route without a',
    'declaration stops start-up (deny by default). The guard checks the permission before the',
    'handler runs: a missing or dead credential is 401 `unauthenticated`, a missing permission',
    'is 403 `forbidden` and an `access.denied` audit event.',
    '',
    '## Roles and API-key scopes',
    '',
    `| permission | allows | ${ROLES.join(' | ')} | API key scope |`,
    `| --- | --- | ${ROLES.map(() => '---').join(' | ')} | --- |`,
    ...matrix,
    '',
    '## Rules beyond the table',
    '',
    '- **Tenant confinement.** A `client` user belongs to one tenant and sees only its data;',
    '  an API key is bound to one tenant (or none, for `metrics:read` only). Another tenant',
    '  reads as absent (404), so confined callers cannot enumerate the agency\'s clients.',
    '  Staff (admin, manager, employee) belong to no one tenant: an admin or manager may make',
    '  a key for any tenant, and the key is then confined to the tenant it names.',
    '- **API-key scopes.** A key holds only scopes its creator\'s role holds, so which scopes',
    '  each role may give a key it makes:',
    ...keyScopes.map((line) => `  ${line}`),
    '  A key dies when its creator loses a permission it needs (a demotion, a disable, a',
    '  deletion); keys made with the CLI have no creator. See [identity.md](identity.md#who-owns-a-key).',
    '- **Role assignment.** Who may create, change, lock, disable or delete users of which role:',
    ...assignable.map((line) => `  ${line}`),
    '  A manager asking about an admin or another manager hears 404, not 403.',
    '- **Who sees whom.** `GET /api/v1/users` lists, and `GET /api/v1/users/{id}` shows, only users',
    '  of the roles the caller may see; any other user reads as absent (404):',
    ...visible.map((line) => `  ${line}`),
    '- **Nobody changes their own role, tenant or status** (a lock included), and nobody deletes themselves.',
    '- **Sessions.** Everyone lists and ends their own; `sessions:manage` holders end those of',
    '  users whose role they may assign.',
    '- **Self-registered users** (`CIPHERGATE_SIGNUP=open`) start as `user`: their own sessions',
    '  and second factor, nothing else, until an admin gives them a role.',
    '',
    '## Routes',
    '',
    '| route | access |',
    '| --- | --- |',
    ...routes,
    '',
  ].join('\n');
}

/**
 * The catalogue of the full app (every module of the route table, src/http/routes/index.ts),
 * built without a database: routes are registered, never called.
 */
export async function fullRouteCatalogue(): Promise<RouteCatalogueEntry[]> {
  const app = await buildApp({
    config: { publicUrl: 'http://127.0.0.1:8080', trustProxy: [], bodyLimitBytes: 1024 * 1024, apiRateLimitPerMinute: 100, webhookRateLimitPerMinute: 6000 },
    logger: createLogger({ level: 'silent' }),
    // Only what registering the routes reads: the guard's CSRF key. The use cases are stand-ins
    // that are never called while the catalogue is read.
    identity: { csrfKey: () => randomBytes(32) } as unknown as Identity,
    audit: {} as AuditLog,
    relay: {} as Relay,
  });
  const catalogue = [...app.routeCatalogue];
  await app.close();
  return catalogue;
}
