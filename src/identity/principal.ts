import type { Permission, Role } from './permissions.js';
import { roleHasPermission } from './permissions.js';

/** Who is calling, as established by the guard; handlers receive it, never raw credentials. */
export type Principal =
  | {
      kind: 'user';
      userId: string;
      sessionId: string;
      role: Role;
      /** A client user's tenant; null for staff. */
      tenantId: string | null;
      /** Cookie-authenticated requests are the ones CSRF protection applies to. */
      via: 'bearer' | 'cookie';
    }
  | {
      kind: 'machine';
      apiKeyId: string;
      /** The client-credentials session, or null when the API key itself was the bearer. */
      sessionId: string | null;
      scopes: string[];
      tenantId: string | null;
      via: 'api-key' | 'bearer';
    };

/** The audit actor for a principal: ids only. */
export function auditActorOf(principal: Principal): { type: 'user' | 'api_key'; id: string } {
  return principal.kind === 'user' ? { type: 'user', id: principal.userId } : { type: 'api_key', id: principal.apiKeyId };
}

export function principalHas(principal: Principal, permission: Permission): boolean {
  if (principal.kind === 'user') return roleHasPermission(principal.role, permission);
  return principal.scopes.includes(permission);
}

/**
 * The tenant a principal is confined to, or null when it may see every tenant. Client users
 * and API keys are confined; staff are not. Handlers that take a tenant from the request
 * compare it with this before reading anything.
 */
export function confinedTenant(principal: Principal): string | null | 'none' {
  if (principal.kind === 'machine') return principal.tenantId ?? 'none';
  if (principal.role === 'client') return principal.tenantId ?? 'none';
  return null;
}

/** True when the principal may act on data of `tenantId`. */
export function mayAccessTenant(principal: Principal, tenantId: string): boolean {
  const confined = confinedTenant(principal);
  return confined === null || confined === tenantId;
}
