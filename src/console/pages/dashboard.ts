import type { FastifyInstance } from 'fastify';
import type { Identity } from '../../identity/identity.js';
import { principalHas } from '../../identity/principal.js';
import { SessionControl } from '../../identity/sessions/session-control.js';
import type { Relay } from '../../relay/relay.js';
import { callerOf } from '../../http/caller.js';
import { PAGE, pageFrame } from '../signed-in.js';

/**
 * `GET /console/dashboard`: for now the counts a signed-in person can already see elsewhere
 * (the tenants their role may read, their own live sessions). The charts of issue 16 come later.
 */
export function dashboardPage(services: { identity: Identity; relay: Relay }) {
  const sessions = new SessionControl(services.identity);
  return async function register(app: FastifyInstance): Promise<void> {
    app.get('/console/dashboard', { config: { access: { permission: 'auth:self' } }, schema: PAGE }, async (request, reply) => {
      const principal = request.principal!;
      const tenants = principalHas(principal, 'tenants:read') ? await services.relay.listTenants(callerOf(request)) : null;
      const ownSessions = await sessions.ownSessions(principal);
      return reply.view('dashboard', { ...pageFrame(request, reply, 'Dashboard'), tenantCount: tenants?.length ?? null, sessionCount: ownSessions.length });
    });
  };
}
