import type { FastifyRequest } from 'fastify';
import { auditActorOf, confinedTenant, mayAccessTenant } from '../identity/principal.js';
import type { Caller } from '../relay/caller.js';

/** The relay's view of the principal the guard established for this request (a route with a permission). */
export function callerOf(request: FastifyRequest): Caller {
  const principal = request.principal!;
  const confined = confinedTenant(principal);
  return {
    actor: auditActorOf(principal),
    mayAccessTenant: (tenantId) => mayAccessTenant(principal, tenantId),
    tenantId: confined === 'none' ? null : confined,
    sourceIp: request.ip,
  };
}
