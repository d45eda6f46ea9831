import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Identity } from '../identity/identity.js';
import type { Principal } from '../identity/principal.js';
import { ACCESS_COOKIE, authenticateRequest, csrfTokenFor } from '../http/guard.js';
import { navigationFor, type NavLink } from './navigation.js';

/** A page's route schema: pages are HTML for people, so they stay out of the OpenAPI document of /docs. */
export const PAGE = { hide: true } as const;

/** The principal of a request whose access cookie is live, or null: for public pages that change with it. */
export async function signedInPrincipal(identity: Identity, request: FastifyRequest): Promise<Principal | null> {
  if (!request.cookies[ACCESS_COOKIE]) return null;
  try {
    const principal = await authenticateRequest(identity, request);
    return principal.kind === 'user' ? principal : null;
  } catch {
    return null;
  }
}

/** What the signed-in layout needs on every page: the navigation the role may follow and the session's CSRF token for its forms. */
export interface PageFrame {
  title: string;
  nav: NavLink[];
  csrf: string;
  role: string;
}

/** The frame of a page behind the guard (which has set `request.principal`). */
export function pageFrame(request: FastifyRequest, reply: FastifyReply, title: string): PageFrame {
  const principal = request.principal!;
  return {
    title,
    nav: navigationFor(principal, request.routeOptions.url ?? ''),
    csrf: csrfTokenFor(reply, principal),
    role: principal.kind === 'user' ? principal.role : 'machine',
  };
}
