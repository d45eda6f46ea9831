import type { FastifyInstance } from 'fastify';
import type { MetricsExposition } from '../../metrics/exposition.js';

/**
 * `GET /metrics` on the main port: Prometheus text for a principal with `metrics:read` (an API
 * key made with only that scope is the usual scraper credential). The separate
 * `CIPHERGATE_METRICS_ADDRESS` listener serves the same text without a token.
 */
export function metricsRoutes(exposition: MetricsExposition) {
  return async (app: FastifyInstance): Promise<void> => {
    app.get(
      '/metrics',
      {
        config: { access: { permission: 'metrics:read' } },
        schema: {
          summary: 'Prometheus metrics (text exposition format); docs/metrics.md lists them',
          tags: ['operations'],
          produces: ['text/plain'],
          response: { 200: { type: 'string', description: 'Prometheus text format 0.0.4' } },
        },
      },
      async (_request, reply) => {
        const scrape = await exposition.scrape();
        return reply.type(scrape.contentType).send(scrape.body);
      },
    );
  };
}
