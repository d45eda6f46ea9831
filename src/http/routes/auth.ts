import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { Accounts } from '../../identity/accounts.js';
import { AuthError, unauthenticated } from '../../identity/errors.js';
import type { Identity } from '../../identity/identity.js';
import { PASSWORD_MAX_CODE_POINTS } from '../../identity/passwords.js';
import { e164OrUndefined } from '../../domain/normalise.js';
import { SignIn, type SignedIn, type TokenPair } from '../../identity/sign-in.js';
import { ACCESS_TOKEN_TTL_SECONDS } from '../../identity/tokens.js';
import { ACCESS_COOKIE, REFRESH_COOKIE, csrfTokenFor, optionalPrincipal, originOf } from '../guard.js';
import { ProblemSchema } from '../schemas/problem.js';

/**
 * `/api/v1/auth/*`: sign-in with a second factor on new devices, TOTP enrollment, SMS codes
 * and the phone they go to, refresh rotation, sign-out, sessions, setup and (optionally)
 * self-registration. Each route states its access next to its schema; the flows live in
 * src/identity.
 */

// Passwords are bounded in UTF-16 units well above the 128-code-point policy, so the policy
// (not the schema) says what is wrong with a long one, and argon2 never sees megabytes.
const Password = Type.String({ minLength: 1, maxLength: PASSWORD_MAX_CODE_POINTS * 2 });
const Email = Type.String({ format: 'email', maxLength: 254 });
const Opaque = Type.String({ minLength: 1, maxLength: 256 });
const TokenDelivery = Type.Optional(
  Type.Union([Type.Literal('body'), Type.Literal('cookie')], {
    description: '`cookie` (browser mode) sets httpOnly __Host- cookies instead of returning tokens in the body',
  }),
);

const TokensSchema = Type.Object({
  accessToken: Type.Optional(Type.String()),
  refreshToken: Type.Optional(Type.String()),
  tokenType: Type.Literal('Bearer'),
  expiresIn: Type.Integer({ description: 'seconds until the access token expires' }),
  deviceToken: Type.Optional(Type.String({ description: 'send on later logins to skip the second factor on this device' })),
  recoveryCodes: Type.Optional(Type.Array(Type.String(), { description: 'shown once' })),
});

/** Confirming from a first sign-in answers tokens too; a signed-in user replacing a factor gets only the codes. */
const ConfirmResponse = Type.Partial(TokensSchema);

const LoginBody = Type.Object({ email: Email, password: Password, deviceToken: Type.Optional(Opaque), tokenDelivery: TokenDelivery }, { additionalProperties: false });
const SecondFactorBody = Type.Object(
  {
    challengeToken: Opaque,
    method: Type.Union([Type.Literal('totp'), Type.Literal('recovery'), Type.Literal('sms')]),
    code: Type.String({ minLength: 1, maxLength: 32 }),
    tokenDelivery: TokenDelivery,
  },
  { additionalProperties: false },
);
const SmsCodeBody = Type.Object({ challengeToken: Opaque }, { additionalProperties: false });
const PhoneBody = Type.Object(
  {
    phone: Type.String({ minLength: 1, maxLength: 32, description: 'a mobile number; E.164 (+14155550100) or a US national number' }),
    currentPassword: Type.String({ minLength: 1, maxLength: PASSWORD_MAX_CODE_POINTS * 2, description: 'step-up: adding a second factor needs the password again' }),
  },
  { additionalProperties: false },
);
const PhoneCodeBody = Type.Object({ code: Type.String({ minLength: 1, maxLength: 16 }) }, { additionalProperties: false });
const RefreshBody = Type.Object({ refreshToken: Type.Optional(Opaque), tokenDelivery: TokenDelivery }, { additionalProperties: false });
const EnrollBody = Type.Object(
  {
    challengeToken: Type.Optional(Opaque),
    currentPassword: Type.Optional(Type.String({ minLength: 1, maxLength: PASSWORD_MAX_CODE_POINTS * 2, description: 'required when a signed-in caller replaces their factor (bearer instead of challengeToken)' })),
    currentFactor: Type.Optional(
      Type.Object(
        {
          method: Type.Union([Type.Literal('totp'), Type.Literal('recovery')]),
          code: Type.String({ minLength: 1, maxLength: 32 }),
        },
        { additionalProperties: false, description: 'required with currentPassword: a code of the authenticator being replaced, or a recovery code' },
      ),
    ),
  },
  { additionalProperties: false },
);
const ConfirmBody = Type.Object({ challengeToken: Type.Optional(Opaque), code: Type.String({ minLength: 1, maxLength: 16 }), tokenDelivery: TokenDelivery }, { additionalProperties: false });
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

const problems = { 400: ProblemSchema, 401: ProblemSchema, 403: ProblemSchema, 429: ProblemSchema };
/** Sends answer 503 `sms-unavailable` when Twilio fails: the code is sent in the request, not queued, since a late login code is useless. */
const smsProblems = { ...problems, 409: ProblemSchema, 503: ProblemSchema };
const tags = ['auth'];

export function authRoutes(identity: Identity) {
  const signIn = new SignIn(identity);
  const accounts = new Accounts(identity);

  return async function register(app: FastifyInstance): Promise<void> {
    const publicAccess = (reason: string) => ({ access: { public: true as const, reason } });

    app.post<{ Body: Static<typeof LoginBody> }>(
      '/api/v1/auth/login',
      {
        config: publicAccess('sign-in itself; throttled per IP and per account+IP'),
        schema: { tags, summary: 'Sign in with email and password', body: LoginBody, response: { 200: TokensSchema, ...problems } },
      },
      async (request, reply) => {
        const signedIn = await signIn.login(request.body, originOf(request));
        return deliver(reply, signedIn, request.body.tokenDelivery);
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

    app.post<{ Body: Static<typeof SmsCodeBody> }>(
      '/api/v1/auth/second-factor/sms',
      {
        config: publicAccess('authenticated by the challenge token of a correct password; throttled per user and per IP'),
        schema: {
          tags,
          summary: 'Text a sign-in code to the verified phone (only when `sms` is among the offered methods)',
          body: SmsCodeBody,
          response: { 204: Type.Null(), ...smsProblems },
        },
      },
      async (request, reply) => {
        await signIn.sendSmsCode(request.body, originOf(request));
        return reply.code(204).send();
      },
    );

    app.post<{ Body: Static<typeof PhoneBody> }>(
      '/api/v1/auth/phone',
      {
        config: { access: { permission: 'auth:self' } },
        schema: {
          tags,
          summary: 'Set the phone for SMS codes: sends a verification code; the phone is offered at sign-in once confirmed',
          body: PhoneBody,
          response: { 204: Type.Null(), ...smsProblems },
        },
      },
      async (request, reply) => {
        const phone = e164OrUndefined(request.body.phone);
        if (phone === undefined) throw new AuthError(400, 'validation-failed', 'Invalid request', 'body phone: not a valid phone number');
        await signIn.startPhoneVerification(request.principal!, { phone, currentPassword: request.body.currentPassword }, originOf(request));
        return reply.code(204).send();
      },
    );

    app.post<{ Body: Static<typeof PhoneCodeBody> }>(
      '/api/v1/auth/phone/verify',
      {
        config: { access: { permission: 'auth:self' } },
        schema: { tags, summary: 'Confirm the phone with the code texted to it', body: PhoneCodeBody, response: { 204: Type.Null(), ...problems } },
      },
      async (request, reply) => {
        await signIn.confirmPhone(request.principal!, request.body, originOf(request));
        return reply.code(204).send();
      },
    );

    app.post<{ Body: Static<typeof EnrollBody> }>(
      '/api/v1/auth/totp/enroll',
      {
        config: publicAccess('authenticated by an enrollment challenge token, or by a signed-in caller replacing a factor'),
        schema: {
          tags,
          summary: 'Start TOTP enrollment: returns the otpauth URI (show it as a QR code)',
          body: EnrollBody,
          response: { 200: Type.Object({ otpauthUri: Type.String(), secret: Type.String() }), ...problems },
        },
      },
      async (request, reply) => {
        const principal = await optionalPrincipal(identity, request, reply, app);
        if (!principal && !request.body.challengeToken) throw unauthenticated('send the challengeToken from the login answer, or an access token');
        reply.header('cache-control', 'no-store');
        const { challengeToken, currentPassword, currentFactor } = request.body;
        return signIn.enrollTotp({ challengeToken, principal: principal ?? undefined, currentPassword, currentFactor }, originOf(request));
      },
    );

    app.post<{ Body: Static<typeof ConfirmBody> }>(
      '/api/v1/auth/totp/confirm',
      {
        config: publicAccess('authenticated by an enrollment challenge token, or by a signed-in caller replacing a factor'),
        schema: {
          tags,
          summary: 'Confirm the new authenticator with one code; returns the recovery codes once (and tokens on a first sign-in)',
          body: ConfirmBody,
          response: { 200: ConfirmResponse, ...problems },
        },
      },
      async (request, reply) => {
        const principal = await optionalPrincipal(identity, request, reply, app);
        if (!principal && !request.body.challengeToken) throw unauthenticated('send the challengeToken from the login answer, or an access token');
        const result = await signIn.confirmTotp({ challengeToken: request.body.challengeToken, principal: principal ?? undefined, code: request.body.code }, originOf(request));
        reply.header('cache-control', 'no-store');
        if (result.signedIn) return deliver(reply, result.signedIn, request.body.tokenDelivery);
        return { recoveryCodes: result.recoveryCodes };
      },
    );

    app.post<{ Body: Static<typeof RefreshBody> }>(
      '/api/v1/auth/refresh',
      {
        config: publicAccess('authenticated by the refresh token itself'),
        schema: { tags, summary: 'Exchange a refresh token for a new pair (rotation; reuse ends the session)', body: RefreshBody, response: { 200: TokensSchema, ...problems } },
      },
      async (request, reply) => {
        const fromCookie = request.body.refreshToken === undefined;
        const token = request.body.refreshToken ?? request.cookies[REFRESH_COOKIE];
        if (!token) throw new AuthError(400, 'validation-failed', 'Invalid request', 'body refreshToken: is required (or the refresh cookie)');
        const pair = await signIn.refresh(token, originOf(request));
        return deliver(reply, pair, fromCookie ? 'cookie' : request.body.tokenDelivery);
      },
    );

    app.post(
      '/api/v1/auth/logout',
      { config: { access: { permission: 'auth:self' } }, schema: { tags, summary: 'End this session', response: { 204: Type.Null(), ...problems } } },
      async (request, reply) => {
        await signIn.logout(request.principal!, originOf(request));
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
        const revoked = await signIn.logoutAll(request.principal!, originOf(request));
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
        if (principal.kind !== 'user') return { sessions: [] };
        const sessions = await identity.parts.sessions.listForUser(principal.userId);
        return { sessions: sessions.map((session) => sessionView(session, principal.sessionId)) };
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
        await accounts.revokeSession(principal, request.params.id, originOf(request), { asAdmin });
        return reply.code(204).send();
      },
    );

    app.post<{ Body: Static<typeof PasswordBody> }>(
      '/api/v1/auth/password',
      {
        config: { access: { permission: 'auth:self' } },
        schema: { tags, summary: 'Change your password; every other session and every trusted device (this one too) ends', body: PasswordBody, response: { 200: Type.Object({ revokedSessions: Type.Integer() }), ...problems } },
      },
      async (request) => accounts.changePassword(request.principal!, request.body, originOf(request)),
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
      if (identity.parts.settings.signup !== 'open') throw new AuthError(404, 'not-found', 'Not Found', 'self-registration is not enabled');
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
 * Tokens in the body (API clients) or in httpOnly cookies (browsers: script never sees
 * them, so an XSS cannot exfiltrate them). The device token stays in the body either way:
 * the client keeps it across sign-ins.
 */
function deliver(reply: FastifyReply, tokens: TokenPair & Partial<Pick<SignedIn, 'deviceToken' | 'recoveryCodes'>>, mode: 'body' | 'cookie' | undefined) {
  reply.header('cache-control', 'no-store');
  const extras = { ...(tokens.deviceToken ? { deviceToken: tokens.deviceToken } : {}), ...(tokens.recoveryCodes ? { recoveryCodes: tokens.recoveryCodes } : {}) };
  if (mode !== 'cookie') {
    return { accessToken: tokens.accessToken, refreshToken: tokens.refreshToken, tokenType: tokens.tokenType, expiresIn: tokens.expiresIn, ...extras };
  }
  const cookie = { path: '/', secure: true, httpOnly: true, sameSite: 'strict' as const };
  reply.setCookie(ACCESS_COOKIE, tokens.accessToken, { ...cookie, maxAge: ACCESS_TOKEN_TTL_SECONDS });
  reply.setCookie(REFRESH_COOKIE, tokens.refreshToken, cookie);
  return { tokenType: tokens.tokenType, expiresIn: tokens.expiresIn, ...extras };
}

function clearCookies(reply: FastifyReply): void {
  const cookie = { path: '/', secure: true, httpOnly: true, sameSite: 'strict' as const };
  reply.clearCookie(ACCESS_COOKIE, cookie);
  reply.clearCookie(REFRESH_COOKIE, cookie);
}
