/**
 * The permission matrix: the one place that says which role may do what. Routes declare a
 * permission (`config.access`), the guard checks it against this table before the handler
 * runs, and docs/permissions.md is generated from it (a test keeps the file current).
 *
 * Two further rules cannot be a table cell and live in the functions below: tenant scoping
 * (a client user, or an API key, sees only its own tenant) and role assignment (managers
 * cannot make admins or managers; nobody changes their own role).
 */

export const ROLES = ['admin', 'manager', 'employee', 'client', 'user'] as const;
export type Role = (typeof ROLES)[number];

export const PERMISSIONS = {
  'auth:self': 'Own sessions, sign-out, password and second factor',
  'users:read': 'List users and read their roles and status',
  'users:write': 'Create, change, lock, unlock, disable and delete users (within the role-assignment rules)',
  'sessions:manage': "List and revoke other users' sessions",
  'api-keys:read': 'List API keys',
  'api-keys:write': 'Create and revoke API keys',
  'tenants:read': 'List tenants and their configured providers (never secrets)',
  'tenants:write': 'Create, change and delete tenants',
  'conversations:read': 'Read conversations and messages (opens sealed data; every read is audited)',
  'messages:send': 'Send a message to a contact',
  'audit:read': 'Read the audit trail',
  'metrics:read': 'Read Prometheus metrics',
} as const;
export type Permission = keyof typeof PERMISSIONS;

const ALL = Object.keys(PERMISSIONS) as Permission[];

/** Role × permission. A role not listing a permission does not have it (deny by default). */
export const ROLE_PERMISSIONS: Record<Role, readonly Permission[]> = {
  admin: ALL,
  manager: ['auth:self', 'users:read', 'users:write', 'sessions:manage', 'api-keys:read', 'api-keys:write', 'tenants:read', 'conversations:read', 'messages:send', 'audit:read'],
  employee: ['auth:self', 'tenants:read', 'conversations:read', 'messages:send'],
  // Limited to their own tenant by `tenantScope`.
  client: ['auth:self', 'tenants:read', 'conversations:read', 'messages:send'],
  // A self-registered account: no data until an admin grants a role.
  user: ['auth:self'],
};

/**
 * What an API key may be granted. Keys are bound to one tenant, so only tenant-scoped data
 * permissions and metrics make sense; nothing that manages identities.
 */
export const API_KEY_SCOPES = ['tenants:read', 'conversations:read', 'messages:send', 'metrics:read'] as const satisfies readonly Permission[];
export type ApiKeyScope = (typeof API_KEY_SCOPES)[number];

/** Roles each role may give to another user (on create or change). */
export const ASSIGNABLE_ROLES: Record<Role, readonly Role[]> = {
  admin: ROLES,
  manager: ['employee', 'client', 'user'],
  employee: [],
  client: [],
  user: [],
};

/**
 * Roles whose users each role may see (user lists, a user by id). A manager does not see
 * admins: it cannot manage them, and a list of the agency's admins tells an attacker who
 * holds a manager account whom to phish next. Not seeing someone reads as 404.
 */
export const VISIBLE_ROLES: Record<Role, readonly Role[]> = {
  admin: ROLES,
  manager: ['manager', 'employee', 'client', 'user'],
  employee: [],
  client: [],
  user: [],
};

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (ROLES as readonly string[]).includes(value);
}

export function isApiKeyScope(value: unknown): value is ApiKeyScope {
  return typeof value === 'string' && (API_KEY_SCOPES as readonly string[]).includes(value);
}

export function roleHasPermission(role: Role, permission: Permission): boolean {
  return ROLE_PERMISSIONS[role].includes(permission);
}

/**
 * The scopes among `scopes` that a user of `role` may not put on an API key: all of them
 * without `api-keys:write`, else those the role lacks itself. A key never holds more than the
 * person answerable for it: this decides what a key may be made with, and, when its creator's
 * role changes, whether the key survives (docs/identity.md, "Who owns a key").
 */
export function keyScopesBeyondRole(role: Role, scopes: readonly ApiKeyScope[]): ApiKeyScope[] {
  if (!roleHasPermission(role, 'api-keys:write')) return [...scopes];
  return scopes.filter((scope) => !roleHasPermission(role, scope));
}

/**
 * Whether `actor` may manage a user who has (or would get) `targetRole`. Managing covers
 * create, change, disable and delete; a manager may not touch an admin or another manager,
 * since that would let one manager lock out or take over another.
 */
export function mayManageRole(actorRole: Role, targetRole: Role): boolean {
  return ASSIGNABLE_ROLES[actorRole].includes(targetRole);
}

/** Whether `actor` may see a user who has `targetRole` (listed, or read by id). */
export function mayViewRole(actorRole: Role, targetRole: Role): boolean {
  return VISIBLE_ROLES[actorRole].includes(targetRole);
}
