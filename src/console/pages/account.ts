import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { PasswordChange } from '../../identity/accounts/password-change.js';
import { IdentityError } from '../../identity/errors.js';
import type { Identity } from '../../identity/identity.js';
import { SessionControl } from '../../identity/sessions/session-control.js';
import { CSRF_FORM_FIELD, originOf } from '../../http/guard.js';
import { Password } from '../../http/routes/auth-tokens.js';
import { PAGE, pageFrame } from '../signed-in.js';

/**
 * `/console/account`: the caller's sessions (where and when, the current one marked; end one or
 * every other) and their password. Ending a session is identity's revocation, so it takes effect
 * at that session's next request on every instance, as DELETE /api/v1/auth/sessions/{id} does.
 * The forms post back to this page with an `action`.
 */

const AccountForm = Type.Union([
  Type.Object({ [CSRF_FORM_FIELD]: Type.String(), action: Type.Literal('revoke-session'), session: Type.String({ format: 'uuid' }) }, { additionalProperties: false }),
  Type.Object({ [CSRF_FORM_FIELD]: Type.String(), action: Type.Literal('revoke-others') }, { additionalProperties: false }),
  Type.Object({ [CSRF_FORM_FIELD]: Type.String(), action: Type.Literal('change-password'), currentPassword: Password, newPassword: Password }, { additionalProperties: false }),
]);

export function accountPage(identity: Identity) {
  const sessions = new SessionControl(identity);
  const passwords = new PasswordChange(identity);

  return async function register(app: FastifyInstance): Promise<void> {
    app.get('/console/account', { config: { access: { permission: 'auth:self' } }, schema: PAGE }, async (request, reply) => render(request, reply, 200, {}));

    app.post<{ Body: Static<typeof AccountForm> }>(
      '/console/account',
      { config: { access: { permission: 'auth:self', csrfToken: 'form-field' as const } }, schema: { hide: true, body: AccountForm } },
      async (request, reply) => {
        const principal = request.principal!;
        const body = request.body;
        if (body.action === 'revoke-session') {
          // The current session is ended by signing out, which also clears the cookies.
          if (body.session === principal.sessionId) return render(request, reply, 400, { error: 'This is the session you are using: sign out instead.' });
          await sessions.revokeSession(principal, body.session, originOf(request), { asAdmin: false });
          return render(request, reply, 200, { notice: 'The session has been ended.' });
        }
        if (body.action === 'revoke-others') {
          const others = (await sessions.ownSessions(principal)).filter((session) => session.id !== principal.sessionId);
          for (const session of others) await sessions.revokeSession(principal, session.id, originOf(request), { asAdmin: false });
          return render(request, reply, 200, { notice: `${others.length} other session${others.length === 1 ? '' : 's'} ended.` });
        }
        try {
          const { revokedSessions } = await passwords.change(principal, { currentPassword: body.currentPassword, newPassword: body.newPassword }, originOf(request));
          return render(request, reply, 200, { notice: `Password changed. ${revokedSessions} other session${revokedSessions === 1 ? '' : 's'} ended.` });
        } catch (error) {
          if (!(error instanceof IdentityError) || error.status >= 500) throw error;
          return render(request, reply, error.status, { error: error.code === 'wrong-current-password' ? 'The current password is wrong.' : error.detail });
        }
      },
    );

    async function render(request: FastifyRequest, reply: FastifyReply, status: number, messages: { notice?: string; error?: string }) {
      const principal = request.principal!;
      const own = await sessions.ownSessions(principal);
      const rows = own.map((session) => ({
        id: session.id,
        device: session.deviceLabel,
        ip: session.ip ?? 'unknown',
        createdAt: session.createdAt.toISOString(),
        lastUsedAt: session.lastUsedAt.toISOString(),
        current: session.id === principal.sessionId,
      }));
      return reply.code(status).view('account', { ...pageFrame(request, reply, 'My account'), sessions: rows, ...messages });
    }
  };
}
