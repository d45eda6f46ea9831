import { randomBytes } from 'node:crypto';
import fastifyCookie from '@fastify/cookie';
import fastifyCsrf from '@fastify/csrf-protection';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { AuditLog } from '../audit/audit-log.js';
import { forbidden, unauthenticated } from '../identity/errors.js';
import type { Identity } from '../identity/identity.js';
import type { Permission } from '../identity/permissions.js';
import { auditActorOf, principalHas, type Principal } from '../identity/principal.js';
import type { RequestOrigin } from '../identity/request-origin.js';
import { HttpProblem } from './problem.js';
import type { ApiRateLimit } from './rate-limit.js';
import type { RouteAccess } from './route-access.js';

/** Browser-mode cookies. `__Host-` pins them to our origin: Secure, Path=/, no Domain. */
export const ACCESS_COOKIE = '__Host-cg_access';
export const REFRESH_COOKIE = '__Host-cg_refresh';
export const CSRF_COOKIE = '__Host-cg_csrf';
export const CSRF_HEADER = 'x-csrf-token';
/** The form field that carries the CSRF token on routes declaring `csrfToken: 'form-field'` (the console's forms). */
export const CSRF_FORM_FIELD = '_csrf';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the guard before the handler of every non-public route. */
    principal: Principal | null;
  }
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** The session a CSRF token of this request must have been issued in; read by the plugin's `getUserInfo`. */
const csrfSessions = new WeakMap<FastifyRequest, string>();

/** A CSRF token for the caller's session: what GET /api/v1/csrf hands out. */
export function csrfTokenFor(reply: FastifyReply, principal: Principal): string {
  if (principal.sessionId === null) throw forbidden('only a signed-in session has CSRF tokens');
  return reply.generateCsrf({ userInfo: principal.sessionId });
}

/**
 * Enforces each route's declared access before its handler: deny by default. A permission
 * route needs a credential (bearer header, else the access cookie), a live session and the
 * permission in the matrix; cookie-authenticated state changes also need the CSRF header.
 * Bearer requests are exempt from CSRF: a browser never attaches an Authorization header on
 * its own, which is the whole attack.
 *
 * With `rateLimit`, a request whose credential verifies is moved from its address's budget to
 * its principal's, before the permission check (a denied request is the principal's too).
 * Without `authority` (an app built for a test with no identity) every permission route is 401.
 */
export async function installGuard(app: FastifyInstance, authority: { identity: Identity; audit: AuditLog } | undefined, rateLimit?: ApiRateLimit): Promise<void> {
  await app.register(fastifyCookie);
  await app.register(fastifyCsrf, {
    cookieKey: CSRF_COOKIE,
    cookieOpts: { path: '/', secure: true, httpOnly: true, sameSite: 'strict' },
    getToken: (request) => (request.headers[CSRF_HEADER] as string | undefined) ?? formFieldToken(request),
    // A token carries a MAC of the session it was issued in (GET /api/v1/csrf) and is checked
    // against the session of the request, so a token from another session (another user of
    // this browser, a sign-in before a logout) is refused although the CSRF cookie is the same.
    getUserInfo: (request) => csrfSessions.get(request) ?? '',
    // Without an identity no request is ever cookie-authenticated, so no token is ever checked.
    csrfOpts: { hmacKey: authority ? authority.identity.csrfKey() : randomBytes(32) },
  });
  app.decorateRequest('principal', null);

  app.addHook('onRequest', async (request, reply) => {
    const access = request.routeOptions.config?.access as RouteAccess | undefined;
    // Unmatched requests (404/405) have no access declaration and reach no handler.
    if (!access || 'public' in access) return;
    if (!authority) throw unauthenticated();
    const principal = await authenticateRequest(authority.identity, request);
    await rateLimit?.chargePrincipal(request, principal);
    if (principal.via === 'cookie' && !SAFE_METHODS.has(request.method) && access.csrfToken !== 'form-field') await verifyCsrf(app, request, reply, principal);
    if (!principalHas(principal, access.permission as Permission)) {
      await authority.audit.record({
        actor: auditActorOf(principal),
        action: 'access.denied',
        target: { type: 'route', id: `${request.method} ${request.routeOptions.url}` },
        sourceIp: request.ip,
        outcome: 'denied',
        details: { permission: access.permission },
      });
      throw forbidden(`this needs the "${access.permission}" permission`);
    }
    request.principal = principal;
  });

  // A form's token is in its body, which exists only after parsing: checked here, before the
  // body is validated or any handler runs, so a forged form changes nothing either way.
  app.addHook('preValidation', async (request, reply) => {
    const access = request.routeOptions.config?.access as RouteAccess | undefined;
    if (!access || 'public' in access || access.csrfToken !== 'form-field') return;
    const principal = request.principal;
    if (principal?.via === 'cookie' && !SAFE_METHODS.has(request.method)) await verifyCsrf(app, request, reply, principal);
  });
}

/** The `_csrf` field of a parsed form body, on routes that take their token from the form. */
function formFieldToken(request: FastifyRequest): string | undefined {
  const access = request.routeOptions.config?.access as RouteAccess | undefined;
  if (!access || 'public' in access || access.csrfToken !== 'form-field') return undefined;
  const field = (request.body as Record<string, unknown> | undefined)?.[CSRF_FORM_FIELD];
  return typeof field === 'string' ? field : undefined;
}

/** The principal of a request that carries a credential, or throws `unauthenticated`. */
export async function authenticateRequest(identity: Identity, request: FastifyRequest): Promise<Principal> {
  const header = request.headers.authorization;
  if (header !== undefined) {
    const match = /^Bearer ([\x21-\x7e]{1,4096})$/.exec(header);
    if (!match) throw unauthenticated('the Authorization header must be "Bearer <token>"');
    return identity.authenticate(match[1]!, 'bearer');
  }
  const cookie = request.cookies[ACCESS_COOKIE];
  if (cookie) return identity.authenticate(cookie, 'cookie');
  throw unauthenticated();
}

/** For routes that accept either a challenge token or a signed-in caller: the principal, or null when no credential was sent. */
export async function optionalPrincipal(identity: Identity, request: FastifyRequest, reply: FastifyReply, app: FastifyInstance): Promise<Principal | null> {
  if (request.headers.authorization === undefined && !request.cookies[ACCESS_COOKIE]) return null;
  const principal = await authenticateRequest(identity, request);
  if (principal.via === 'cookie' && !SAFE_METHODS.has(request.method)) await verifyCsrf(app, request, reply, principal);
  return principal;
}

export function originOf(request: FastifyRequest): RequestOrigin {
  return { ip: request.ip, userAgent: request.headers['user-agent'] };
}

/**
 * Runs @fastify/csrf-protection's check; its failure becomes our problem answer. The plugin
 * never calls back with an error: it answers a failure itself (`reply.send` of its own 403,
 * which would reach clients as type `bad-request` and leave this promise pending). So it gets
 * a view of the reply whose `send` rejects instead; everything else is the real reply.
 */
function verifyCsrf(app: FastifyInstance, request: FastifyRequest, reply: FastifyReply, principal: Principal): Promise<void> {
  if (principal.sessionId !== null) csrfSessions.set(request, principal.sessionId);
  return new Promise((resolve, reject) => {
    const refuse = () => reject(new HttpProblem(403, 'csrf-token-invalid', 'CSRF token missing or invalid', `a cookie-authenticated ${request.method} needs the ${CSRF_HEADER} header from GET /api/v1/csrf (console forms: the ${CSRF_FORM_FIELD} field of the page)`));
    const refusingReply = Object.create(reply, { send: { value: refuse } }) as FastifyReply;
    app.csrfProtection.call(app, request, refusingReply, () => resolve());
  });
}
