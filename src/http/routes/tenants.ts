import { TENANT_SLUG_PATTERN } from '../../domain/ids.js';
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { TenantSummary } from '../../domain/tenant.js';
import type { Relay } from '../../relay/relay.js';
import { callerOf } from '../caller.js';
import { ProblemSchema } from '../schemas/problem.js';

const TenantSchema = Type.Object({
  id: Type.String(),
  slug: Type.String(),
  name: Type.String(),
  providers: Type.Array(Type.String()),
  createdAt: Type.String({ format: 'date-time' }),
  updatedAt: Type.String({ format: 'date-time' }),
});
const SlugParams = Type.Object({ slug: Type.String({ pattern: TENANT_SLUG_PATTERN.source }) });
const problems = { 401: ProblemSchema, 403: ProblemSchema, 404: ProblemSchema };
const tags = ['tenants'];

/**
 * `/api/v1/tenants`: which clients exist and which providers each has configured, never a
 * secret (src/relay/tenant-catalogue.ts). Tenant-confined callers (client users, API keys) see
 * only their own tenant; another tenant reads as absent, so they cannot enumerate the agency's
 * clients.
 */
export function tenantRoutes(options: { relay: Relay }) {
  const { relay } = options;
  return async function register(app: FastifyInstance): Promise<void> {
    app.get(
      '/api/v1/tenants',
      { config: { access: { permission: 'tenants:read' } }, schema: { tags, summary: 'Tenants you may see', response: { 200: Type.Object({ tenants: Type.Array(TenantSchema) }), ...problems } } },
      async (request) => ({ tenants: (await relay.listTenants(callerOf(request))).map(tenantView) }),
    );

    app.get<{ Params: Static<typeof SlugParams> }>(
      '/api/v1/tenants/:slug',
      { config: { access: { permission: 'tenants:read' } }, schema: { tags, summary: 'One tenant', params: SlugParams, response: { 200: TenantSchema, ...problems } } },
      async (request) => tenantView(await relay.showTenant(callerOf(request), request.params.slug)),
    );
  };
}

function tenantView(tenant: TenantSummary) {
  return { ...tenant, createdAt: tenant.createdAt.toISOString(), updatedAt: tenant.updatedAt.toISOString() };
}
