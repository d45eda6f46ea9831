import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { e164OrUndefined } from '../../domain/normalise.js';
import { unauthenticated } from '../../identity/errors.js';
import { SmsSteps } from '../../identity/factors/sms/sms-steps.js';
import { TotpEnrollment } from '../../identity/factors/totp/enrollment.js';
import type { Identity } from '../../identity/identity.js';
import { PASSWORD_MAX_CODE_POINTS } from '../../identity/passwords/passwords.js';
import { optionalPrincipal, originOf } from '../guard.js';
import { HttpProblem } from '../problem.js';
import { ProblemSchema } from '../schemas/problem.js';
import { Opaque, TokenDelivery, TokensSchema, deliver, problems, tags } from './auth-tokens.js';

/**
 * `/api/v1/auth/*` routes of the second factors' own steps: TOTP enrollment, the phone SMS
 * codes go to, and texting a sign-in code. Registered by authRoutes (auth.ts).
 */

/** Confirming from a first sign-in answers tokens too; a signed-in user replacing a factor gets only the codes. */
const ConfirmResponse = Type.Partial(TokensSchema);

const SmsCodeBody = Type.Object({ challengeToken: Opaque }, { additionalProperties: false });
const PhoneBody = Type.Object(
  {
    phone: Type.String({ minLength: 1, maxLength: 32, description: 'a mobile number; E.164 (+14155550100) or a US national number' }),
    currentPassword: Type.String({ minLength: 1, maxLength: PASSWORD_MAX_CODE_POINTS * 2, description: 'step-up: adding a second factor needs the password again' }),
  },
  { additionalProperties: false },
);
const PhoneCodeBody = Type.Object({ code: Type.String({ minLength: 1, maxLength: 16 }) }, { additionalProperties: false });
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
/** Sends answer 503 `sms-unavailable` when Twilio fails: the code is sent in the request, not queued, since a late login code is useless. */
const smsProblems = { ...problems, 409: ProblemSchema, 503: ProblemSchema };

export async function registerFactorRoutes(app: FastifyInstance, identity: Identity): Promise<void> {
  const totp = new TotpEnrollment(identity);
  const sms = new SmsSteps(identity);
  const publicAccess = (reason: string) => ({ access: { public: true as const, reason } });

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
      await sms.sendSignInCode(request.body, originOf(request));
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
      if (phone === undefined) throw HttpProblem.of('validation-failed', 'body phone: not a valid phone number');
      await sms.startPhoneVerification(request.principal!, { phone, currentPassword: request.body.currentPassword }, originOf(request));
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
      await sms.confirmPhone(request.principal!, request.body, originOf(request));
      return reply.code(204).send();
    },
  );

  app.post<{ Body: Static<typeof EnrollBody> }>(
    '/api/v1/auth/totp/enroll',
    {
      config: publicAccess('authenticated by an enrollment challenge token, or by a signed-in caller replacing a factor'),
      schema: {
        tags,
        summary: 'Start TOTP enrollment: returns the otpauth URI, its secret, and the URI as a QR code (an SVG document to show as it is)',
        body: EnrollBody,
        response: {
          200: Type.Object({
            otpauthUri: Type.String(),
            secret: Type.String(),
            qrCodeSvg: Type.String({ description: 'the otpauth URI as a QR code: an SVG document (image/svg+xml), white background and quiet zone included' }),
          }),
          ...problems,
        },
      },
    },
    async (request, reply) => {
      const principal = await optionalPrincipal(identity, request, reply, app);
      if (!principal && !request.body.challengeToken) throw unauthenticated('send the challengeToken from the login answer, or an access token');
      reply.header('cache-control', 'no-store');
      const { challengeToken, currentPassword, currentFactor } = request.body;
      return totp.enroll({ challengeToken, principal: principal ?? undefined, currentPassword, currentFactor }, originOf(request));
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
      const result = await totp.confirm({ challengeToken: request.body.challengeToken, principal: principal ?? undefined, code: request.body.code }, originOf(request));
      reply.header('cache-control', 'no-store');
      if (result.signedIn) return deliver(reply, result.signedIn, request.body.tokenDelivery);
      return { recoveryCodes: result.recoveryCodes };
    },
  );
}
