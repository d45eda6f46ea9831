import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { ApiKeyRecord } from '../../identity/api-keys.js';
import { AuthError } from '../../identity/errors.js';
import type { Identity } from '../../identity/identity.js';
import { MachineAuth } from '../../identity/machine-auth.js';
import { API_KEY_SCOPES } from '../../identity/permissions.js';
import { confinedTenant } from '../../identity/principal.js';
import { originOf } from '../guard.js';
import { ProblemSchema } from '../schemas/problem.js';

const KeySchema = Type.Object({
  id: Type.String({ description: 'also the OAuth client id' }),
  name: Type.String(),
  hint: Type.String({ description: 'the first characters of the key, to tell keys apart' }),
  tenantId: Type.Union([Type.String(), Type.Null()]),
  scopes: Type.Array(Type.String()),
  createdAt: Type.String({ format: 'date-time' }),
  expiresAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  lastUsedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  revokedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
});
const CreateBody = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 100 }),
    tenantId: Type.Union([Type.String({ format: 'uuid' }), Type.Null()]),
    scopes: Type.Array(Type.Union(API_KEY_SCOPES.map((scope) => Type.Literal(scope))), { minItems: 1, maxItems: API_KEY_SCOPES.length, uniqueItems: true }),
    expiresAt: Type.Optional(Type.String({ format: 'date-time' })),
  },
  { additionalProperties: false },
);
const IdParams = Type.Object({ id: Type.String({ format: 'uuid' }) });
const problems = { 400: ProblemSchema, 401: ProblemSchema, 403: ProblemSchema, 404: ProblemSchema };
const tags = ['api-keys'];

/** `/api/v1/api-keys`: machine credentials, shown once, stored hashed, revocable at once. */
export function apiKeyRoutes(identity: Identity, tenants: { exists(tenantId: string): Promise<boolean> }) {
  const machines = new MachineAuth(identity);
  return async function register(app: FastifyInstance): Promise<void> {
    app.get(
      '/api/v1/api-keys',
      { config: { access: { permission: 'api-keys:read' } }, schema: { tags, summary: 'List API keys (never the keys themselves)', response: { 200: Type.Object({ apiKeys: Type.Array(KeySchema) }), ...problems } } },
      async (request) => {
        const confined = confinedTenant(request.principal!);
        if (confined === 'none') return { apiKeys: [] };
        const keys = await identity.parts.apiKeys.list(confined === null ? {} : { tenantId: confined });
        return { apiKeys: keys.map(keyView) };
      },
    );

    app.post<{ Body: Static<typeof CreateBody> }>(
      '/api/v1/api-keys',
      {
        config: { access: { permission: 'api-keys:write' } },
        schema: { tags, summary: 'Create an API key; the key is in this answer only', body: CreateBody, response: { 201: Type.Object({ apiKey: KeySchema, key: Type.String() }), ...problems } },
      },
      async (request, reply) => {
        if (request.body.tenantId && !(await tenants.exists(request.body.tenantId))) throw new AuthError(400, 'validation-failed', 'Invalid request', 'body tenantId: no such tenant');
        const created = await machines.createKey(
          request.principal!,
          { name: request.body.name, tenantId: request.body.tenantId, scopes: request.body.scopes, expiresAt: request.body.expiresAt ? new Date(request.body.expiresAt) : null },
          originOf(request),
        );
        reply.header('cache-control', 'no-store');
        return reply.code(201).send({ apiKey: keyView(created.record), key: created.key });
      },
    );

    app.delete<{ Params: Static<typeof IdParams> }>(
      '/api/v1/api-keys/:id',
      { config: { access: { permission: 'api-keys:write' } }, schema: { tags, summary: 'Revoke an API key and every token issued from it', params: IdParams, response: { 204: Type.Null(), ...problems } } },
      async (request, reply) => {
        await machines.revokeKey(request.principal!, request.params.id, originOf(request));
        return reply.code(204).send();
      },
    );
  };
}

export function keyView(key: ApiKeyRecord) {
  const iso = (date: Date | null) => (date ? date.toISOString() : null);
  return {
    id: key.id,
    name: key.name,
    hint: key.hint,
    tenantId: key.tenantId,
    scopes: key.scopes,
    createdAt: key.createdAt.toISOString(),
    expiresAt: iso(key.expiresAt),
    lastUsedAt: iso(key.lastUsedAt),
    revokedAt: iso(key.revokedAt),
  };
}
