import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { Accounts } from '../../identity/accounts/accounts.js';
import { PasswordChange } from '../../identity/accounts/password-change.js';
import { SECOND_FACTOR_METHODS } from '../../identity/factors/second-factor.js';
import type { Identity } from '../../identity/identity.js';
import { PASSWORD_MAX_CODE_POINTS } from '../../identity/passwords/passwords.js';
import { SessionControl } from '../../identity/sessions/session-control.js';
import { SignIn, type LoginOutcome } from '../../identity/sign-in/sign-in.js';
import { REFRESH_COOKIE, csrfTokenFor, originOf } from '../guard.js';
import { HttpProblem } from '../problem.js';
import { ProblemSchema } from '../schemas/problem.js';
import { registerFactorRoutes } from './auth-factors.js';
import { Email, Opaque, Password, TokenDelivery, TokensSchema, clearCookies, deliver, problems, tags } from './auth-tokens.js';

/**
 * `/api/v1/auth/*`: sign-in with a second factor on new devices, TOTP enrollment, SMS codes
 * and the phone they go to, refresh rotation, sign-out, sessions, setup and (optionally)
 * self-registration. Each route states its access next to its schema; the flows live in
 * src/identity.
 */

const LoginBody = Type.Object({ email: Email, password: Password, deviceToken: Type.Optional(Opaque), tokenDelivery: TokenDelivery }, { additionalProperties: false });
const SecondFactorBody = Type.Object(
  {
    challengeToken: Opaque,
    method: Type.Union(SECOND_FACTOR_METHODS.map((method) => Type.Literal(method))),
    code: Type.String({ minLength: 1, maxLength: 32 }),
    tokenDelivery: TokenDelivery,
  },
  { additionalProperties: false },
);
const RefreshBody = Type.Object({ refreshToken: Type.Optional(Opaque), tokenDelivery: TokenDelivery }, { additionalProperties: false });
const SetupBody = Type.Object({ setupToken: Opaque, password: Password }, { additionalProperties: false });
const SignupBody = Type.Object(
  {
    email: Email,
    password: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: PASSWORD_MAX_CODE_POINTS * 2,
        deprecated: true,
        description: 'ignored, accepted so older clients keep working: the password is chosen at POST /auth/verify-email, by whoever holds the inbox',
      }),
    ),
  },
  { additionalProperties: false },
);
const VerifyEmailBody = Type.Object(
  { token: Opaque, password: Type.String({ minLength: 1, maxLength: PASSWORD_MAX_CODE_POINTS * 2, description: "the account's password, chosen now (the link proves the inbox)" }) },
  { additionalProperties: false },
);
const PasswordBody = Type.Object({ currentPassword: Password, newPassword: Password }, { additionalProperties: false });
const SessionSchema = Type.Object({
  id: Type.String(),
  device: Type.String(),
  ip: Type.Union([Type.String(), Type.Null()]),
  createdAt: Type.String({ format: 'date-time' }),
  lastUsedAt: Type.String({ format: 'date-time' }),
  trustedDevice: Type.Boolean(),
  current: Type.Boolean(),
});
const IdParams = Type.Object({ id: Type.String({ format: 'uuid' }) });

export function authRoutes(identity: Identity) {
  const signIn = new SignIn(identity);
  const sessions = new SessionControl(identity);
  const accounts = new Accounts(identity);
  const passwords = new PasswordChange(identity);

  return async function register(app: FastifyInstance): Promise<void> {
    const publicAccess = (reason: string) => ({ access: { public: true as const, reason } });

    app.post<{ Body: Static<typeof LoginBody> }>(
      '/api/v1/auth/login',
      {
        config: publicAccess('sign-in itself; throttled per IP and per account+IP'),
        schema: { tags, summary: 'Sign in with email and password', body: LoginBody, response: { 200: TokensSchema, ...problems } },
      },
      async (request, reply) => {
        const outcome = await signIn.login(request.body, originOf(request));
        if (outcome.kind !== 'signed-in') throw nextStepProblem(outcome);
        return deliver(reply, outcome.signedIn, request.body.tokenDelivery);
      },
    );

    app.post<{ Body: Static<typeof SecondFactorBody> }>(
      '/api/v1/auth/second-factor',
      {
        config: publicAccess('authenticated by the challenge token of a correct password'),
        schema: { tags, summary: 'Complete a sign-in with a TOTP, recovery or SMS code', body: SecondFactorBody, response: { 200: TokensSchema, ...problems } },
      },
      async (request, reply) => {
        const signedIn = await signIn.secondFactor(request.body, originOf(request));
        return deliver(reply, signedIn, request.body.tokenDelivery);
      },
    );

    await registerFactorRoutes(app, identity);

    app.post<{ Body: Static<typeof RefreshBody> }>(
      '/api/v1/auth/refresh',
      {
        config: publicAccess('authenticated by the refresh token itself'),
        schema: { tags, summary: 'Exchange a refresh token for a new pair (rotation; reuse ends the session)', body: RefreshBody, response: { 200: TokensSchema, ...problems } },
      },
      async (request, reply) => {
        const fromCookie = request.body.refreshToken === undefined;
        const token = request.body.refreshToken ?? request.cookies[REFRESH_COOKIE];
        if (!token) throw HttpProblem.of('validation-failed', 'body refreshToken: is required (or the refresh cookie)');
        const pair = await sessions.refresh(token, originOf(request));
        return deliver(reply, pair, fromCookie ? 'cookie' : request.body.tokenDelivery);
      },
    );

    app.post(
      '/api/v1/auth/logout',
      { config: { access: { permission: 'auth:self' } }, schema: { tags, summary: 'End this session', response: { 204: Type.Null(), ...problems } } },
      async (request, reply) => {
        await sessions.logout(request.principal!, originOf(request));
        clearCookies(reply);
        return reply.code(204).send();
      },
    );

    app.post(
      '/api/v1/auth/logout-all',
      {
        config: { access: { permission: 'auth:self' } },
        schema: { tags, summary: 'End every session of the caller, this one included', response: { 200: Type.Object({ revoked: Type.Integer() }), ...problems } },
      },
      async (request, reply) => {
        const revoked = await sessions.logoutAll(request.principal!, originOf(request));
        clearCookies(reply);
        return { revoked };
      },
    );

    app.get(
      '/api/v1/auth/sessions',
      {
        config: { access: { permission: 'auth:self' } },
        schema: { tags, summary: "The caller's live sessions", response: { 200: Type.Object({ sessions: Type.Array(SessionSchema) }), ...problems } },
      },
      async (request) => {
        const principal = request.principal!;
        const own = await sessions.ownSessions(principal);
        return { sessions: own.map((session) => sessionView(session, principal.sessionId)) };
      },
    );

    app.delete<{ Params: Static<typeof IdParams> }>(
      '/api/v1/auth/sessions/:id',
      {
        config: { access: { permission: 'auth:self' } },
        schema: { tags, summary: 'End one of your sessions (admins: any session of a user they manage)', params: IdParams, response: { 204: Type.Null(), 404: ProblemSchema, ...problems } },
      },
      async (request, reply) => {
        const principal = request.principal!;
        const asAdmin = principal.kind === 'user' && (principal.role === 'admin' || principal.role === 'manager');
        await sessions.revokeSession(principal, request.params.id, originOf(request), { asAdmin });
        return reply.code(204).send();
      },
    );

    app.post<{ Body: Static<typeof PasswordBody> }>(
      '/api/v1/auth/password',
      {
        config: { access: { permission: 'auth:self' } },
        schema: { tags, summary: 'Change your password; every other session and every trusted device (this one too) ends', body: PasswordBody, response: { 200: Type.Object({ revokedSessions: Type.Integer() }), ...problems } },
      },
      async (request) => passwords.change(request.principal!, request.body, originOf(request)),
    );

    app.post<{ Body: Static<typeof SetupBody> }>(
      '/api/v1/auth/setup',
      {
        config: publicAccess('authenticated by the single-use setup token an admin handed over'),
        schema: { tags, summary: 'Set the password of a user made by an admin', body: SetupBody, response: { 200: Type.Object({ userId: Type.String() }), ...problems } },
      },
      async (request) => accounts.setup(request.body, originOf(request)),
    );

    // With signup closed both routes are absent, whatever the body: 404 before the schema speaks.
    const onlyWithOpenSignup = async () => {
      if (!accounts.signupOpen()) throw HttpProblem.of('not-found', 'self-registration is not enabled');
    };

    app.post<{ Body: Static<typeof SignupBody> }>(
      '/api/v1/auth/signup',
      {
        preValidation: onlyWithOpenSignup,
        config: publicAccess('self-registration, only with CIPHERGATE_SIGNUP=open; the account has no access until verified and granted'),
        schema: {
          tags,
          summary: 'Register an address (CIPHERGATE_SIGNUP=open only); a verification link follows by email, where the password is chosen',
          body: SignupBody,
          response: { 202: Type.Object({ status: Type.Literal('verification-sent') }), 404: ProblemSchema, ...problems },
        },
      },
      async (request, reply) => {
        await accounts.signup({ email: request.body.email }, originOf(request));
        return reply.code(202).send({ status: 'verification-sent' as const });
      },
    );

    app.post<{ Body: Static<typeof VerifyEmailBody> }>(
      '/api/v1/auth/verify-email',
      {
        preValidation: onlyWithOpenSignup,
        config: publicAccess('authenticated by the single-use token from the verification email'),
        schema: { tags, summary: 'Confirm the email of a self-registered account and choose its password', body: VerifyEmailBody, response: { 204: Type.Null(), 404: ProblemSchema, ...problems } },
      },
      async (request, reply) => {
        await accounts.verifyEmail(request.body, originOf(request));
        return reply.code(204).send();
      },
    );

    app.get(
      '/api/v1/csrf',
      {
        config: { access: { permission: 'auth:self' } },
        schema: {
          tags,
          summary: "A CSRF token for cookie-authenticated requests, valid only in the caller's session",
          response: { 200: Type.Object({ token: Type.String() }), ...problems },
        },
      },
      async (request, reply) => {
        reply.header('cache-control', 'no-store');
        return { token: csrfTokenFor(reply, request.principal!) };
      },
    );
  };
}

function sessionView(session: { id: string; deviceLabel: string; ip: string | null; createdAt: Date; lastUsedAt: Date; trustedDeviceId: string | null }, currentSessionId: string | null) {
  return {
    id: session.id,
    device: session.deviceLabel,
    ip: session.ip,
    createdAt: session.createdAt.toISOString(),
    lastUsedAt: session.lastUsedAt.toISOString(),
    trustedDevice: session.trustedDeviceId !== null,
    current: session.id === currentSessionId,
  };
}

/**
 * A correct password that signs nobody in yet, answered as the 401 problem that names the next
 * step: its challenge token, when that expires, and the methods it can be completed with.
 */
function nextStepProblem(outcome: Exclude<LoginOutcome, { kind: 'signed-in' }>): HttpProblem {
  const extensions = { challengeToken: outcome.challengeToken, challengeExpiresAt: outcome.challengeExpiresAt.toISOString(), methods: outcome.methods };
  if (outcome.kind === 'enrollment-required') {
    return HttpProblem.of('second-factor-enrollment-required', 'set up an authenticator app with POST /api/v1/auth/totp/enroll and /auth/totp/confirm before any token is issued', extensions);
  }
  return HttpProblem.of('second-factor-required', 'this device is new: complete the sign-in with POST /api/v1/auth/second-factor', extensions);
}

