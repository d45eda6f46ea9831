import { TENANT_SLUG_PATTERN } from '../../domain/ids.js';
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { HttpProblem } from '../problem.js';
import type { Identity } from '../../identity/identity.js';
import { appendAuditEvent } from '../../store/audit-trail.js';
import { auditActorOf, confinedTenant, mayAccessTenant } from '../../identity/principal.js';
import { listTenants, type TenantSummary } from '../../store/repositories/tenants.js';
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
 * secret. Tenant-confined callers (client users, API keys) see only their own tenant; another
 * tenant reads as absent, so they cannot enumerate the agency's clients.
 */
export function tenantRoutes(identity: Identity) {
  return async function register(app: FastifyInstance): Promise<void> {
    app.get(
      '/api/v1/tenants',
      { config: { access: { permission: 'tenants:read' } }, schema: { tags, summary: 'Tenants you may see', response: { 200: Type.Object({ tenants: Type.Array(TenantSchema) }), ...problems } } },
      async (request) => {
        const principal = request.principal!;
        const all = await listTenants(identity.parts.db);
        return { tenants: all.filter((tenant) => mayAccessTenant(principal, tenant.id)).map(tenantView) };
      },
    );

    app.get<{ Params: Static<typeof SlugParams> }>(
      '/api/v1/tenants/:slug',
      { config: { access: { permission: 'tenants:read' } }, schema: { tags, summary: 'One tenant', params: SlugParams, response: { 200: TenantSchema, ...problems } } },
      async (request) => {
        const principal = request.principal!;
        const tenant = (await listTenants(identity.parts.db)).find((candidate) => candidate.slug === request.params.slug);
        if (!tenant || !mayAccessTenant(principal, tenant.id)) {
          // Another tenant's data asked for by a confined caller is a probe worth recording; it
          // still hears 404, exactly as for a tenant that does not exist.
          if (tenant) {
            await appendAuditEvent(identity.parts.db, {
              actor: auditActorOf(principal),
              action: 'access.denied',
              target: { type: 'tenant', id: tenant.id },
              tenantId: confinedTenant(principal) === 'none' ? null : (confinedTenant(principal) as string | null),
              sourceIp: request.ip,
              outcome: 'denied',
              details: { reason: 'other-tenant' },
            });
          }
          throw new HttpProblem(404, 'not-found', 'Not Found', 'no such tenant');
        }
        return tenantView(tenant);
      },
    );
  };
}

function tenantView(tenant: TenantSummary) {
  return { ...tenant, createdAt: tenant.createdAt.toISOString(), updatedAt: tenant.updatedAt.toISOString() };
}
