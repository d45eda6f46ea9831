import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { AccountLocks } from '../../identity/accounts/account-locks.js';
import { Accounts, type UserView } from '../../identity/accounts/accounts.js';
import { forbidden } from '../../identity/errors.js';
import { FactorReset } from '../../identity/factors/factor-reset.js';
import type { Identity } from '../../identity/identity.js';
import { ROLES } from '../../identity/permissions.js';
import { confinedTenant } from '../../identity/principal.js';
import { SessionControl } from '../../identity/sessions/session-control.js';
import { originOf } from '../guard.js';
import { ProblemSchema } from '../schemas/problem.js';

const RoleSchema = Type.Union(ROLES.map((role) => Type.Literal(role)));
const UserSchema = Type.Object({
  id: Type.String(),
  email: Type.String(),
  role: RoleSchema,
  tenantId: Type.Union([Type.String(), Type.Null()]),
  status: Type.String(),
  hasPassword: Type.Boolean(),
  createdAt: Type.String({ format: 'date-time' }),
  updatedAt: Type.String({ format: 'date-time' }),
});
const CreateBody = Type.Object(
  { email: Type.String({ format: 'email', maxLength: 254 }), role: RoleSchema, tenantId: Type.Optional(Type.Union([Type.String({ format: 'uuid' }), Type.Null()])) },
  { additionalProperties: false },
);
const PatchBody = Type.Object(
  {
    role: Type.Optional(RoleSchema),
    tenantId: Type.Optional(Type.Union([Type.String({ format: 'uuid' }), Type.Null()])),
    status: Type.Optional(Type.Union([Type.Literal('active'), Type.Literal('disabled')])),
  },
  { additionalProperties: false, minProperties: 1 },
);
const IdParams = Type.Object({ id: Type.String({ format: 'uuid' }) });
const SessionParams = Type.Object({ id: Type.String({ format: 'uuid' }), sessionId: Type.String({ format: 'uuid' }) });
const ListQuery = Type.Object({ tenant: Type.Optional(Type.String({ format: 'uuid' })) }, { additionalProperties: false });
const problems = { 400: ProblemSchema, 401: ProblemSchema, 403: ProblemSchema, 404: ProblemSchema, 409: ProblemSchema };
const tags = ['users'];

/** `/api/v1/users`: admins and managers manage people, within the role rules of permissions.ts. */
export function userRoutes(identity: Identity) {
  const accounts = new Accounts(identity);
  const factorReset = new FactorReset(identity);
  const sessions = new SessionControl(identity);
  const locks = new AccountLocks(identity);
  return async function register(app: FastifyInstance): Promise<void> {
    app.get<{ Querystring: Static<typeof ListQuery> }>(
      '/api/v1/users',
      {
        config: { access: { permission: 'users:read' } },
        schema: { tags, summary: 'List users (emails opened for display)', querystring: ListQuery, response: { 200: Type.Object({ users: Type.Array(UserSchema) }), ...problems } },
      },
      async (request) => {
        const confined = confinedTenant(request.principal!);
        if (confined !== null && request.query.tenant !== undefined && request.query.tenant !== confined) throw forbidden('you may only list users of your own tenant');
        const tenantId = confined === null ? request.query.tenant : confined === 'none' ? undefined : confined;
        const users = await accounts.listUsers(request.principal!, tenantId ? { tenantId } : {});
        return { users: users.map(userView) };
      },
    );

    app.get<{ Params: Static<typeof IdParams> }>(
      '/api/v1/users/:id',
      {
        config: { access: { permission: 'users:read' } },
        schema: { tags, summary: 'One user (email opened for display); a user the caller may not see reads as 404', params: IdParams, response: { 200: UserSchema, ...problems } },
      },
      async (request) => userView(await accounts.viewUser(request.principal!, request.params.id)),
    );

    app.post<{ Body: Static<typeof CreateBody> }>(
      '/api/v1/users',
      {
        config: { access: { permission: 'users:write' } },
        schema: {
          tags,
          summary: 'Create a pending user; the setup token is returned once',
          body: CreateBody,
          response: { 201: Type.Object({ user: UserSchema, setupToken: Type.String(), setupExpiresAt: Type.String({ format: 'date-time' }) }), ...problems },
        },
      },
      async (request, reply) => {
        const created = await accounts.createPendingUser(request.principal!, { email: request.body.email, role: request.body.role, tenantId: request.body.tenantId ?? null }, originOf(request));
        reply.header('cache-control', 'no-store');
        return reply.code(201).send({ user: userView(created.user), setupToken: created.setupToken, setupExpiresAt: created.setupExpiresAt.toISOString() });
      },
    );

    app.patch<{ Params: Static<typeof IdParams>; Body: Static<typeof PatchBody> }>(
      '/api/v1/users/:id',
      {
        config: { access: { permission: 'users:write' } },
        schema: { tags, summary: "Change a user's role, tenant or status (disabling ends every session and API key; a demotion, the keys the new role could not make)", params: IdParams, body: PatchBody, response: { 200: UserSchema, ...problems } },
      },
      async (request) => {
        const { role, tenantId, status } = request.body;
        const patch = { ...(role !== undefined ? { role } : {}), ...(tenantId !== undefined ? { tenantId } : {}), ...(status !== undefined ? { status } : {}) };
        return userView(await accounts.updateUser(request.principal!, request.params.id, patch, originOf(request)));
      },
    );

    app.delete<{ Params: Static<typeof IdParams> }>(
      '/api/v1/users/:id',
      {
        config: { access: { permission: 'users:write' } },
        schema: { tags, summary: 'Delete a user after ending all of its sessions and API keys', params: IdParams, response: { 204: Type.Null(), ...problems } },
      },
      async (request, reply) => {
        await accounts.deleteUser(request.principal!, request.params.id, originOf(request));
        return reply.code(204).send();
      },
    );

    app.post<{ Params: Static<typeof IdParams> }>(
      '/api/v1/users/:id/reset-factors',
      {
        config: { access: { permission: 'users:write' } },
        schema: {
          tags,
          summary: "Remove a user's second factors (authenticator, recovery codes, phone) and end their sessions; they enroll again at the next sign-in",
          params: IdParams,
          response: {
            200: Type.Object({
              authenticators: Type.Integer({ description: 'confirmed authenticators removed' }),
              recoveryCodes: Type.Integer({ description: 'unused recovery codes removed' }),
              phone: Type.Boolean({ description: 'a verified phone was removed' }),
              sessions: Type.Integer({ description: 'sessions ended' }),
              devices: Type.Integer({ description: 'trusted devices forgotten' }),
            }),
            ...problems,
          },
        },
      },
      async (request) => factorReset.reset(request.principal!, request.params.id, originOf(request)),
    );

    app.get<{ Params: Static<typeof IdParams> }>(
      '/api/v1/users/:id/sessions',
      {
        config: { access: { permission: 'sessions:manage' } },
        schema: {
          tags,
          summary: "A user's live sessions (end one with DELETE /api/v1/users/{id}/sessions/{sessionId}, all with DELETE /api/v1/users/{id}/sessions)",
          params: IdParams,
          response: { 200: Type.Object({ sessions: Type.Array(Type.Object({ id: Type.String(), device: Type.String(), ip: Type.Union([Type.String(), Type.Null()]), createdAt: Type.String(), lastUsedAt: Type.String() })) }), ...problems },
        },
      },
      async (request) => {
        const listed = await sessions.sessionsOf(request.principal!, request.params.id);
        return { sessions: listed.map((s) => ({ id: s.id, device: s.deviceLabel, ip: s.ip, createdAt: s.createdAt.toISOString(), lastUsedAt: s.lastUsedAt.toISOString() })) };
      },
    );

    app.delete<{ Params: Static<typeof SessionParams> }>(
      '/api/v1/users/:id/sessions/:sessionId',
      {
        config: { access: { permission: 'sessions:manage' } },
        schema: {
          tags,
          summary: "End one session of a user at once, on every instance; another user's session, or one already ended, is 404",
          params: SessionParams,
          response: { 204: Type.Null(), ...problems },
        },
      },
      async (request, reply) => {
        await sessions.revokeSessionOf(request.principal!, request.params.id, request.params.sessionId, originOf(request));
        return reply.code(204).send();
      },
    );

    app.delete<{ Params: Static<typeof IdParams> }>(
      '/api/v1/users/:id/sessions',
      {
        config: { access: { permission: 'sessions:manage' } },
        schema: {
          tags,
          summary: 'Sign a user out everywhere: every session ends and every trusted device is forgotten, at once, on every instance',
          params: IdParams,
          response: { 200: Type.Object({ sessions: Type.Integer({ description: 'sessions ended' }), devices: Type.Integer({ description: 'trusted devices forgotten' }) }), ...problems },
        },
      },
      async (request) => sessions.revokeAllOf(request.principal!, request.params.id, originOf(request)),
    );

    app.post<{ Params: Static<typeof IdParams> }>(
      '/api/v1/users/:id/lock',
      {
        config: { access: { permission: 'users:write' } },
        schema: {
          tags,
          summary: 'Lock an active user until unlocked: sign-in refused, every session, trusted device and login challenge ended; password, factors and API keys kept',
          params: IdParams,
          response: {
            200: Type.Object({ user: UserSchema, sessions: Type.Integer({ description: 'sessions ended' }), devices: Type.Integer({ description: 'trusted devices forgotten' }) }),
            ...problems,
          },
        },
      },
      async (request) => {
        const locked = await locks.lock(request.principal!, request.params.id, originOf(request));
        return { ...locked, user: userView(locked.user) };
      },
    );

    app.post<{ Params: Static<typeof IdParams> }>(
      '/api/v1/users/:id/unlock',
      {
        config: { access: { permission: 'users:write' } },
        schema: {
          tags,
          summary: "Unlock a locked user, and clear the sign-in throttle's failed-attempt locks of an active or locked user",
          params: IdParams,
          response: {
            200: Type.Object({
              user: UserSchema,
              wasLocked: Type.Boolean({ description: 'the user was locked by an admin' }),
              failedAttemptLocks: Type.Integer({ description: 'runs of failed sign-in attempts cleared (per address), the locks among them included' }),
            }),
            ...problems,
          },
        },
      },
      async (request) => {
        const unlocked = await locks.unlock(request.principal!, request.params.id, originOf(request));
        return { ...unlocked, user: userView(unlocked.user) };
      },
    );
  };
}

function userView(user: UserView) {
  return { ...user, createdAt: user.createdAt.toISOString(), updatedAt: user.updatedAt.toISOString() };
}
