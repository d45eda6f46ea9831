import type { FastifyInstance } from 'fastify';
import { Accounts } from '../../identity/accounts/accounts.js';
import type { Identity } from '../../identity/identity.js';
import { PAGE, pageFrame } from '../signed-in.js';

/**
 * `GET /console/users`: the users the caller's role may see (a manager's list has no admins),
 * with role and status. Inviting, role changes and locks are the next steps of issue 16.
 */
export function usersPage(identity: Identity) {
  const accounts = new Accounts(identity);
  return async function register(app: FastifyInstance): Promise<void> {
    app.get('/console/users', { config: { access: { permission: 'users:read' } }, schema: PAGE }, async (request, reply) => {
      const users = await accounts.listUsers(request.principal!, {});
      const rows = users.map((user) => ({ email: user.email, role: user.role, status: user.status }));
      return reply.view('users', { ...pageFrame(request, reply, 'Users'), users: rows });
    });
  };
}
