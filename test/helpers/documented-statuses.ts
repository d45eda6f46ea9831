import type { FastifyReply, FastifyRequest } from 'fastify';

/**
 * Every status a test observes for a route must be in the OpenAPI document for that route. The
 * test app helpers pass `observe` to buildApp (`observeResponse`); it records each (route, status)
 * the route's response schema does not list, and `assertAllDocumented` (called when the helper's
 * app closes) fails the suite naming them. A status nobody documented therefore fails the first
 * test run that produces it, wherever in the suite that is: the check cannot pass by not running.
 *
 * Requests that match no route (404 `not-found`, 405) have no route schema and are left out, as
 * are the hidden routes of Swagger UI, which the document does not list.
 */
export class DocumentedStatuses {
  private readonly undocumented = new Set<string>();

  readonly observe = (request: FastifyRequest, reply: FastifyReply): void => {
    const url = request.routeOptions.url;
    if (url === undefined) return;
    const schema = request.routeOptions.schema as { response?: Record<string, unknown>; hide?: boolean } | undefined;
    // Swagger UI's own routes are not in the document (hidden), so there is nothing to hold them to.
    if (schema?.hide) return;
    const responses = schema?.response ?? {};
    const status = String(reply.statusCode);
    if (Object.hasOwn(responses, status) || Object.hasOwn(responses, `${status[0]}XX`) || Object.hasOwn(responses, 'default')) return;
    this.undocumented.add(`${request.method} ${url} → ${status}`);
  };

  /** The pairs seen so far, for a test that asserts them itself. */
  seen(): string[] {
    return [...this.undocumented].sort();
  }

  assertAllDocumented(): void {
    if (this.undocumented.size === 0) return;
    throw new Error(`answers with statuses the OpenAPI document does not list for their route (declare them in the route's schema.response, src/http/openapi.ts adds the plumbing's):\n  ${this.seen().join('\n  ')}`);
  }
}
