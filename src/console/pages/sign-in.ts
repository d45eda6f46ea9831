import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { IdentityError } from '../../identity/errors.js';
import { SECOND_FACTOR_METHODS, type SecondFactorMethod } from '../../identity/factors/second-factor.js';
import { SmsSteps } from '../../identity/factors/sms/sms-steps.js';
import type { Identity } from '../../identity/identity.js';
import { SessionControl } from '../../identity/sessions/session-control.js';
import { SignIn } from '../../identity/sign-in/sign-in.js';
import { CSRF_FORM_FIELD, originOf } from '../../http/guard.js';
import { Email, Password } from '../../http/routes/auth-tokens.js';
import { challengeOf, deviceTokenOf, endSession, holdChallenge, startSession } from '../console-session.js';
import { PAGE, signedInPrincipal } from '../signed-in.js';

/**
 * Signing in and out of the console: `GET /console` (the password form, or the dashboard when
 * signed in), `/console/second-factor` (the code of a new device) and `POST /console/sign-out`.
 * Each step is a call of the same identity use cases as `/api/v1/auth/*`, so throttles,
 * lockouts, trusted devices and audit entries are the API's.
 *
 * What a refusal says leaks nothing: a wrong email and a wrong password read the same, and a
 * locked account reads like a busy address ("too many attempts"), never whose account it is.
 */

const SignInForm = Type.Object({ email: Email, password: Password }, { additionalProperties: false });
const SecondFactorForm = Type.Object(
  {
    method: Type.Union(SECOND_FACTOR_METHODS.map((method) => Type.Literal(method))),
    code: Type.Optional(Type.String({ maxLength: 32 })),
    // "Text me a code" is the same form's other button: it asks for an SMS instead of checking one.
    send: Type.Optional(Type.Literal('sms')),
  },
  { additionalProperties: false },
);
const SignOutForm = Type.Object({ [CSRF_FORM_FIELD]: Type.String({ maxLength: 256 }) }, { additionalProperties: false });

const METHOD_LABELS: Record<SecondFactorMethod, string> = { totp: 'Authenticator app', recovery: 'Recovery code', sms: 'Text message (SMS)' };

export function signInPages(identity: Identity) {
  const signIn = new SignIn(identity);
  const sessions = new SessionControl(identity);
  const sms = new SmsSteps(identity);

  return async function register(app: FastifyInstance): Promise<void> {
    const publicPage = (reason: string) => ({ access: { public: true as const, reason } });

    app.get('/console', { config: publicPage('the sign-in page; a signed-in visitor is sent to the dashboard'), schema: PAGE }, async (request, reply) => {
      if (await signedInPrincipal(identity, request)) return reply.redirect('/console/dashboard', 303);
      return renderSignIn(reply, 200, {});
    });

    app.post<{ Body: Static<typeof SignInForm> }>(
      '/console',
      { config: publicPage('sign-in itself; throttled per address and per account+address as the API is'), schema: { hide: true, body: SignInForm } },
      async (request, reply) => {
        try {
          const outcome = await signIn.login({ ...request.body, deviceToken: deviceTokenOf(request) }, originOf(request));
          if (outcome.kind === 'signed-in') {
            startSession(reply, outcome.signedIn);
            return reply.redirect('/console/dashboard', 303);
          }
          if (outcome.kind === 'enrollment-required') {
            return renderSignIn(reply, 403, { email: request.body.email, error: 'Your account has no second factor yet. Finish the setup from your invitation link first.' });
          }
          holdChallenge(reply, outcome.challengeToken);
          return reply.redirect('/console/second-factor', 303);
        } catch (error) {
          const refusal = refusalOf(error);
          if (!refusal) throw error;
          if (refusal.retryAfterSeconds) reply.header('retry-after', String(refusal.retryAfterSeconds));
          return renderSignIn(reply, refusal.status, { email: request.body.email, error: refusal.message });
        }
      },
    );

    app.get('/console/second-factor', { config: publicPage('the second step of a sign-in; needs the challenge cookie of a correct password'), schema: PAGE }, async (request, reply) => {
      if (!challengeOf(request)) return reply.redirect('/console', 303);
      return renderSecondFactor(reply, 200, {});
    });

    app.post<{ Body: Static<typeof SecondFactorForm> }>(
      '/console/second-factor',
      { config: publicPage('authenticated by the challenge cookie of a correct password'), schema: { hide: true, body: SecondFactorForm } },
      async (request, reply) => {
        const challengeToken = challengeOf(request);
        if (!challengeToken) return reply.redirect('/console', 303);
        const { method, code, send } = request.body;
        try {
          if (send === 'sms') {
            await sms.sendSignInCode({ challengeToken }, originOf(request));
            return renderSecondFactor(reply, 200, { method: 'sms', notice: 'A code is on its way to your phone.' });
          }
          if (!code) return renderSecondFactor(reply, 400, { method, error: 'Enter the code.' });
          const signedIn = await signIn.secondFactor({ challengeToken, method, code }, originOf(request));
          startSession(reply, signedIn);
          return reply.redirect('/console/dashboard', 303);
        } catch (error) {
          const refusal = refusalOf(error);
          if (!refusal) throw error;
          if (refusal.restart) {
            endSession(reply);
            return renderSignIn(reply, refusal.status, { error: refusal.message });
          }
          if (refusal.retryAfterSeconds) reply.header('retry-after', String(refusal.retryAfterSeconds));
          return renderSecondFactor(reply, refusal.status, { method, error: refusal.message });
        }
      },
    );

    app.post(
      '/console/sign-out',
      { config: { access: { permission: 'auth:self', csrfToken: 'form-field' as const } }, schema: { hide: true, body: SignOutForm } },
      async (request, reply) => {
        await sessions.logout(request.principal!, originOf(request));
        endSession(reply);
        return reply.redirect('/console', 303);
      },
    );
  };
}

function renderSignIn(reply: FastifyReply, status: number, view: { email?: string; error?: string }) {
  return reply.code(status).view('sign-in', { title: 'Sign in', email: view.email ?? '', error: view.error });
}

function renderSecondFactor(reply: FastifyReply, status: number, view: { method?: SecondFactorMethod; error?: string; notice?: string }) {
  const methods = SECOND_FACTOR_METHODS.map((method) => ({ value: method, label: METHOD_LABELS[method], checked: method === (view.method ?? 'totp') }));
  return reply.code(status).view('second-factor', { title: 'Second factor', methods, error: view.error, notice: view.notice });
}

/**
 * What a sign-in page says about a refused step: one sentence per kind of refusal, none of
 * which tells whether the email exists, which limit was hit, or whose account is locked.
 * Anything that is not an identity refusal is not handled here (null).
 */
function refusalOf(error: unknown): { status: number; message: string; retryAfterSeconds?: number; restart?: boolean } | null {
  if (!(error instanceof IdentityError)) return null;
  switch (error.code) {
    case 'invalid-credentials':
      return { status: 401, message: 'The email or the password is wrong.' };
    case 'account-locked':
    case 'ip-limit':
      return { status: 429, message: 'Too many attempts. Wait a few minutes, then try again.', ...(error.retryAfterSeconds ? { retryAfterSeconds: error.retryAfterSeconds } : {}) };
    case 'invalid-second-factor':
      return { status: 401, message: 'That code is wrong, expired or was already used.' };
    case 'invalid-challenge':
      return { status: 401, message: 'This sign-in took too long or was already completed. Sign in again.', restart: true };
    default:
      if (error.status >= 500) return null;
      return { status: error.status, message: error.detail };
  }
}
