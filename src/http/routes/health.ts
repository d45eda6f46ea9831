import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { isServiceUnavailable } from '../../relay/errors.js';
import { sendProblem } from '../problem.js';
import { problemResponse } from '../openapi.js';

export interface ReadinessCheck {
  /** Named in the 503 body, e.g. `database`, `keys`. */
  name: string;
  /** Throws when the dependency is not usable; may answer figures for the `details` member (queue depth). */
  check(): Promise<void | Record<string, number>>;
}

/** A check that hangs (a database behind a dead network) must not hang the probe with it. */
const CHECK_TIMEOUT_MS = 2_000;

const ChecksSchema = Type.Record(Type.String(), Type.Union([Type.Literal('ok'), Type.Literal('failed')]));

export async function healthRoutes(app: FastifyInstance, options: { checks: ReadinessCheck[] }): Promise<void> {
  app.get(
    '/healthz',
    {
      config: { access: { public: true, reason: 'liveness probe; says nothing but "the process runs"' } },
      schema: {
        summary: 'Liveness: 200 while the process runs',
        tags: ['operations'],
        response: { 200: Type.Object({ status: Type.Literal('ok') }) },
      },
    },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/readyz',
    {
      config: { access: { public: true, reason: 'readiness probe for load balancers; names dependencies, never errors' } },
      schema: {
        summary: 'Readiness: 200 when the database and keys are usable, else 503',
        tags: ['operations'],
        response: {
          200: Type.Object({
            status: Type.Literal('ready'),
            checks: ChecksSchema,
            details: Type.Optional(Type.Record(Type.String(), Type.Record(Type.String(), Type.Number()), { description: 'Figures some checks report, e.g. queue: {pending, running, dead, oldestDueSeconds}' })),
          }),
          503: problemResponse(['not-ready', 'service-unavailable']),
        },
      },
    },
    async (request, reply) => {
      const results = await Promise.all(
        options.checks.map(async ({ name, check }) => {
          try {
            const figures = await withTimeout(check(), CHECK_TIMEOUT_MS);
            return { name, ok: true as const, figures: figures ?? undefined };
          } catch (error) {
            // The reason goes to the log only: the probe is public and must not describe internals.
            // A database outage is logged once by the connection, not by every probe.
            if (isServiceUnavailable(error)) request.log.debug({ check: name }, 'readiness check failed: database unavailable');
            else request.log.warn({ err: error, check: name }, 'readiness check failed');
            return { name, ok: false as const };
          }
        }),
      );
      const checks = Object.fromEntries(results.map((result) => [result.name, result.ok ? 'ok' : 'failed'] as const));
      const failed = results.filter((result) => !result.ok).map((result) => result.name);
      const details = Object.fromEntries(results.flatMap((result) => (result.ok && result.figures ? [[result.name, result.figures] as const] : [])));
      if (failed.length === 0) return { status: 'ready' as const, checks, ...(Object.keys(details).length > 0 ? { details } : {}) };
      return sendProblem(reply, {
        type: 'not-ready',
        title: 'Not ready',
        status: 503,
        detail: `${failed.join(', ')} ${failed.length === 1 ? 'is' : 'are'} not usable`,
        checks,
      });
    },
  );
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
