import type { Permission } from '../identity/permissions.js';
import { principalHas, type Principal } from '../identity/principal.js';

/**
 * The signed-in layout's navigation, in the contract's order (docs/http.md, "Console"). Each
 * link names the permission its page declares, so a role sees exactly the links it may follow.
 * Screens not built yet have no `href`: they are listed for the roles that will have them but
 * are not links (docs/console.md says which exist).
 */
export const NAVIGATION: ReadonlyArray<{ label: string; href?: string; permission: Permission }> = [
  { label: 'Dashboard', href: '/console/dashboard', permission: 'auth:self' },
  { label: 'Conversations', href: '/console/conversations', permission: 'conversations:read' },
  { label: 'Users', href: '/console/users', permission: 'users:read' },
  { label: 'API keys', permission: 'api-keys:read' },
  { label: 'Tenants', permission: 'tenants:read' },
  { label: 'Audit', permission: 'audit:read' },
  { label: 'Operations', permission: 'metrics:read' },
  { label: 'My account', href: '/console/account', permission: 'auth:self' },
];

export interface NavLink {
  label: string;
  href: string;
  current: boolean;
}

/** The links `principal` may follow, the one for `currentPath` marked. */
export function navigationFor(principal: Principal, currentPath: string): NavLink[] {
  return NAVIGATION.filter((entry): entry is typeof entry & { href: string } => entry.href !== undefined && principalHas(principal, entry.permission)).map((entry) => ({
    label: entry.label,
    href: entry.href,
    current: entry.href === currentPath,
  }));
}
