import type { FastifyInstance, FastifyRequest } from 'fastify';
import { HttpProblem } from '../http/problem.js';

/**
 * The console's own policy, set on every /console answer (pages, assets, errors) over the
 * API's `default-src 'none'`: scripts, styles and images only from our origin, no inline code
 * (htmx 2 is told not to inject its indicator styles, see views/layout.eta), no framing.
 */
export const CONSOLE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/**
 * Installs the console's headers in its plugin scope. Every page answer is `no-store`: most of
 * them show personal data (sessions, names, numbers), and a page that does not is cheap to
 * render again, so there is no list of exceptions to keep right. Assets set their own caching.
 */
export function installPageSecurity(app: FastifyInstance): void {
  app.addHook('onSend', async (request, reply, payload) => {
    reply.header('content-security-policy', CONSOLE_CSP);
    if (!isAsset(request)) reply.header('cache-control', 'no-store');
    return payload;
  });
  // A state change must come from a page of ours. Browsers send Sec-Fetch-Site on every
  // request; a cross-site form post (login CSRF, a forged sign-out) is refused before it is
  // read. The CSRF token still guards every signed-in form: this covers the public ones too.
  app.addHook('onRequest', async (request) => {
    if (request.method === 'GET' || request.method === 'HEAD') return;
    const site = request.headers['sec-fetch-site'];
    if (site !== undefined && site !== 'same-origin') {
      throw new HttpProblem(403, 'cross-site-request', 'Cross-site request refused', 'console forms are accepted only from console pages of this origin');
    }
  });
}

function isAsset(request: FastifyRequest): boolean {
  return request.routeOptions.url?.startsWith('/console/assets/') === true;
}
