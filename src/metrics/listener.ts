import { createServer, type Server } from 'node:http';
import type { Logger } from '../log/logger.js';
import type { MetricsExposition } from './exposition.js';

export interface MetricsListener {
  /** The port actually bound (differs from the configured one only for port 0 in tests). */
  port: number;
  close(): Promise<void>;
}

/** The separate address could not be bound; the CLI prints `message` as its one line. */
export class MetricsListenError extends Error {
  override readonly name = 'MetricsListenError';
}

/**
 * `CIPHERGATE_METRICS_ADDRESS`: `/metrics` without a token, for a scraper on a private network.
 * A bare node:http server rather than a second Fastify app: it answers one path, and nothing
 * else of the API (routes, cookies, parsers) is reachable through it.
 */
export async function startMetricsListener(address: { host: string; port: number }, exposition: MetricsExposition, logger: Logger): Promise<MetricsListener> {
  const server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    if (path !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found: only /metrics is served here\n');
      return;
    }
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('method not allowed\n');
      return;
    }
    exposition.scrape().then(
      (scrape) => response.writeHead(200, { 'content-type': scrape.contentType }).end(request.method === 'HEAD' ? undefined : scrape.body),
      (error: unknown) => {
        // The queue gauges read the database; while it is away the scrape fails, and says so.
        logger.warn({ err: error }, 'metrics scrape failed');
        response.writeHead(503, { 'content-type': 'text/plain; charset=utf-8' }).end('metrics unavailable\n');
      },
    );
  });
  await listen(server, address);
  const bound = server.address();
  const port = typeof bound === 'object' && bound ? bound.port : address.port;
  logger.info({ host: address.host, port }, 'metrics listening');
  return {
    port,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}

function listen(server: Server, address: { host: string; port: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => {
      const where = `${address.host}:${address.port}`;
      const why = error.code === 'EADDRINUSE' ? 'the port is already in use' : error.code === 'EADDRNOTAVAIL' ? 'the address is not on this machine' : error.code === 'EACCES' ? 'permission denied' : (error.code ?? error.message);
      reject(new MetricsListenError(`CIPHERGATE_METRICS_ADDRESS: cannot listen on ${where}: ${why}`));
    };
    server.once('error', onError);
    server.listen(address.port, address.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}
