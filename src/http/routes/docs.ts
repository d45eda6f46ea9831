import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance, RouteOptions } from 'fastify';
import type { RouteAccess } from '../route-access.js';

/** Where the API's documentation lives: Swagger UI at `/docs`, the OpenAPI document at `/docs/json` (and `/docs/yaml`). */
export const DOCS_PREFIX = '/docs';

const DOCS_ACCESS: RouteAccess = { public: true, reason: 'the OpenAPI document and its viewer describe the public surface, no data' };

/**
 * Swagger UI's page for our own origin only. Its page loads nothing inline (the plugin's CSP
 * hash lists, `fastify.swaggerCSP`, are empty) and no third-party origin (the validator badge is
 * off), so the policy stays `'self'`; `img-src data:` is for the logo and the icons its
 * stylesheet embeds. It replaces the API's `default-src 'none'` on these routes only.
 */
const DOCS_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

export async function docsRoutes(app: FastifyInstance): Promise<void> {
  await app.register(swaggerUi, {
    routePrefix: DOCS_PREFIX,
    staticCSP: DOCS_CSP,
    uiConfig: { deepLinking: true, validatorUrl: null },
    theme: { title: 'Ciphergate API' },
  });
}

/**
 * The routes @fastify/swagger-ui and @fastify/static add under DOCS_PREFIX declare no access of
 * their own (the plugins take no route config); the app's deny-by-default check
 * (src/http/route-access.ts) calls this first, so exactly those, hidden from the document as the
 * plugins mark them, are public. Any other route still has to declare its access.
 */
export function grantDocsAccess(route: RouteOptions): void {
  const own = route.config as { access?: RouteAccess } | undefined;
  const hidden = (route.schema as { hide?: boolean } | undefined)?.hide === true;
  if (own?.access === undefined && hidden && (route.url === DOCS_PREFIX || route.url.startsWith(`${DOCS_PREFIX}/`))) {
    route.config = { ...route.config, access: DOCS_ACCESS };
  }
}
