import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { AUDIT_ACTION_NAMES, type AuditAction } from '../../domain/audit-actions.js';
import type { AuditLog } from '../../audit/audit-log.js';
import { TENANT_SLUG_PATTERN } from '../../domain/ids.js';
import { callerOf } from '../caller.js';

const Query = Type.Object(
  {
    // `seq` is a bigint read as a JavaScript number: a larger value is no seq we gave out, and one
    // past 2^63 - 1 made PostgreSQL fail the query.
    after: Type.Optional(Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'the `seq` of the last entry of the previous page' })),
    // Exactly the actions the code writes (src/domain/audit-actions.ts), so every one can be filtered
    // for and a typo is a 400 instead of an empty page.
    action: Type.Optional(Type.Unsafe<AuditAction>({ type: 'string', enum: AUDIT_ACTION_NAMES, description: 'one of the audit actions (docs/audit.md)' })),
    tenant: Type.Optional(Type.String({ pattern: TENANT_SLUG_PATTERN.source, description: 'tenant slug' })),
    actor: Type.Optional(Type.String({ maxLength: 64 })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 100 })),
  },
  { additionalProperties: false },
);
const EntrySchema = Type.Object({
  seq: Type.Integer(),
  id: Type.String(),
  occurredAt: Type.String({ format: 'date-time' }),
  actorType: Type.String(),
  actorId: Type.Union([Type.String(), Type.Null()]),
  action: Type.String(),
  targetType: Type.Union([Type.String(), Type.Null()]),
  targetId: Type.Union([Type.String(), Type.Null()]),
  tenantId: Type.Union([Type.String(), Type.Null()]),
  tenant: Type.Union([Type.String(), Type.Null()], { description: "the entry's tenant by slug" }),
  actorEmail: Type.Union([Type.String(), Type.Null()], { description: "the acting user's email, opened; null for a machine or the system" }),
  target: Type.Union([Type.String(), Type.Null()], { description: "the target as a person names it: a user's email, a tenant's slug, a conversation's id" }),
  sourceIp: Type.Union([Type.String(), Type.Null()]),
  outcome: Type.String(),
  details: Type.Record(Type.String(), Type.Union([Type.String(), Type.Number(), Type.Boolean(), Type.Null()])),
  hash: Type.String(),
});

/**
 * `GET /api/v1/audit`: the trail in chain order, paged by `seq`, readable (src/audit/audit-log.ts):
 * the users' emails and the tenants' slugs beside their ids. The emails are opened, so a person's
 * read of a page is itself audited (`audit.read`).
 */
export function auditRoutes(audit: AuditLog) {
  return async function register(app: FastifyInstance): Promise<void> {
    app.get<{ Querystring: Static<typeof Query> }>(
      '/api/v1/audit',
      {
        config: { access: { permission: 'audit:read' } },
        schema: {
          tags: ['audit'],
          summary: 'Audit entries in chain order; page with `after` = the last `seq` seen',
          querystring: Query,
          response: { 200: Type.Object({ entries: Type.Array(EntrySchema), next: Type.Union([Type.Integer(), Type.Null()]) }) },
        },
      },
      async (request) => {
        const limit = request.query.limit ?? 100;
        const { actor, sourceIp } = callerOf(request);
        const rows = await audit.readable(
          { actor, sourceIp },
          {
            limit,
            ...(request.query.after !== undefined ? { afterSeq: request.query.after } : {}),
            ...(request.query.action ? { action: request.query.action } : {}),
            ...(request.query.tenant ? { tenantSlug: request.query.tenant } : {}),
            ...(request.query.actor ? { actorId: request.query.actor } : {}),
          },
        );
        const entries = rows.map(({ prevHash: _prev, ...row }) => ({ ...row, occurredAt: row.occurredAt.toISOString() }));
        return { entries, next: rows.length === limit ? rows.at(-1)!.seq : null };
      },
    );
  };
}
