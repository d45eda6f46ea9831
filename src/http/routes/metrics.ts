import type { FastifyInstance } from 'fastify';
import type { MetricsExposition } from '../../metrics/exposition.js';
import { sendProblem } from '../problem.js';
import { problemResponse } from '../openapi.js';

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
          response: { 200: { type: 'string', description: 'Prometheus text format 0.0.4' }, 503: problemResponse(['metrics-unavailable', 'service-unavailable']) },
        },
      },
      async (request, reply) => {
        let scrape;
        try {
          scrape = await exposition.scrape();
        } catch (error) {
          // The queue gauges read the database; while it is away the scraper hears "try later",
          // like /readyz says, rather than a 500 that reads as a bug.
          request.log.warn({ err: error }, 'metrics scrape failed');
          return sendProblem(reply, { type: 'metrics-unavailable', title: 'Metrics unavailable', status: 503, detail: 'the metrics could not be read; see /readyz' });
        }
        return reply.type(scrape.contentType).send(scrape.body);
      },
    );
  };
}
