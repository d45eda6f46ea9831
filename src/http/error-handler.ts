import { randomUUID } from 'node:crypto';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import FindMyWay, { type HTTPVersion } from 'find-my-way';
import { IdentityError } from '../identity/errors.js';
import { isServiceUnavailable, RelayError } from '../relay/errors.js';
import { HttpProblem, sendProblem } from './problem.js';
import { problemHeaders, problemOf, type ProblemCode } from './problem-codes.js';

/** A restart takes seconds; providers and clients that honour Retry-After come back then. */
export const DATABASE_RETRY_AFTER_SECONDS = 5;

/**
 * The one place where errors become responses. Handlers throw typed errors (`IdentityError`,
 * `RelayError`, `HttpProblem`), answered through the one table of codes (problem-codes.ts); nothing else
 * writes an error body, so every client sees RFC 9457 problem+json and never a stack trace,
 * SQL or an internal message.
 */
export function installErrorHandling(app: FastifyInstance): void {
  // A shadow router of every registered route tells "no such path" (404) from "no such
  // method on this path" (405, with Allow) without reaching into Fastify's private router.
  const shadowRouter = FindMyWay<HTTPVersion.V1>({ ignoreTrailingSlash: false });
  const methodsByRoute = new Map<string, Set<string>>();
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const method of methods) {
      let known = methodsByRoute.get(route.url);
      if (!known) {
        known = new Set();
        methodsByRoute.set(route.url, known);
      }
      if (!known.has(method)) {
        known.add(method);
        shadowRouter.on(method as 'GET', route.url, () => undefined, { url: route.url });
      }
    }
  });

  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0] ?? '/';
    const allowed = new Set<string>();
    for (const method of ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']) {
      if (method !== request.method && shadowRouter.find(method as 'GET', path)) allowed.add(method);
    }
    if (allowed.size > 0) {
      const allow = [...allowed].sort().join(', ');
      return sendProblem(reply, problemOf('method-not-allowed', `${request.method} is not allowed on ${path}; allowed: ${allow}`), { allow });
    }
    return sendProblem(reply, problemOf('no-route', `no route for ${request.method} ${path}`));
  });

  app.setErrorHandler((error: FastifyError, request, reply) => respondToError(error, request, reply));
}

/**
 * Also Fastify's `frameworkErrors` hook (src/http/app.ts): a URL the router cannot decode never
 * reaches a route or the error handler, and would otherwise get Fastify's own JSON.
 */
export function respondToError(error: FastifyError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  if (error instanceof IdentityError) {
    const answer = problemOf(error.code, error.detail, error.extensions);
    if (answer.status >= 500) request.log.error({ err: error }, 'request failed');
    return sendProblem(reply, answer, problemHeaders(error.code, error.retryAfterSeconds));
  }
  if (error instanceof RelayError) {
    // An input error names the member as the request sent it: in the query of a read, the body of a write.
    const detail = error.field === undefined ? error.detail : `${request.method === 'GET' ? 'querystring' : 'body'} ${error.field}: ${error.detail}`;
    return sendProblem(reply, problemOf(error.code, detail));
  }
  if (error instanceof HttpProblem) {
    if (error.status >= 500) request.log.error({ err: error }, 'request failed');
    return sendProblem(reply, error.toProblem(), error.headers);
  }
  if (error.validation) {
    const where = error.validationContext ?? 'request';
    const errors = error.validation.map((issue) => {
      // A missing or an unknown property is reported at its parent; name the property itself.
      const params = issue.params as { missingProperty?: string; additionalProperty?: string } | undefined;
      const named = params?.missingProperty ?? params?.additionalProperty;
      const field = [issue.instancePath.replace(/^\//, '').replaceAll('/', '.'), named].filter(Boolean).join('.');
      return { in: where, field: field || '(root)', message: issue.message ?? 'is invalid' };
    });
    const first = errors[0]!;
    return sendProblem(reply, {
      ...problemOf('validation-failed', `${first.in} ${first.field}: ${first.message}`),
      errors,
    });
  }
  const known = FASTIFY_CLIENT_ERRORS[error.code];
  if (known) {
    return sendProblem(reply, problemOf(known.code, known.detail(request)));
  }
  if (typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 500) {
    // Another 4xx raised by Fastify or one of its plugins (their messages describe the request,
    // not our internals); anything else that claims a 4xx is not trusted with its message.
    const detail = error.code?.startsWith('FST_') ? error.message : 'the request was not accepted';
    return sendProblem(reply, { ...problemOf('bad-request', detail), status: error.statusCode });
  }
  if (isServiceUnavailable(error)) {
    // The outage itself is logged once by the connection (src/store/connection-errors.ts), not
    // per request. 503 + Retry-After is what makes Twilio and Podium deliver again later,
    // and nothing was committed, so nothing may be acknowledged.
    request.log.debug({ errorCode: (error as { code?: unknown }).code }, 'database unavailable');
    return sendProblem(
      reply,
      problemOf('service-unavailable', `the database cannot be reached; retry in ${DATABASE_RETRY_AFTER_SECONDS} s`),
      problemHeaders('service-unavailable', DATABASE_RETRY_AFTER_SECONDS),
    );
  }
  const errorId = randomUUID();
  request.log.error({ err: error, errorId }, 'unexpected error');
  return sendProblem(reply, {
    ...problemOf('internal-error', `something went wrong on our side; quote errorId ${errorId} when reporting it`),
    errorId,
  });
}

/** Fastify's own client errors, by its error code: the problem code each is answered with and its detail. */
const FASTIFY_CLIENT_ERRORS: Record<string, { code: ProblemCode; detail: (request: FastifyRequest) => string }> = {
  FST_ERR_CTP_BODY_TOO_LARGE: {
    code: 'payload-too-large',
    detail: (request) => `the body is larger than the ${request.routeOptions.bodyLimit ?? 0} bytes this endpoint accepts`,
  },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: {
    code: 'unsupported-media-type',
    detail: (request) => `content-type ${JSON.stringify(request.headers['content-type'] ?? '')} is not accepted here`,
  },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { code: 'malformed-body', detail: () => 'the body length does not match the content-length header' },
  FST_ERR_CTP_EMPTY_JSON_BODY: { code: 'malformed-body', detail: () => 'the body is empty but content-type says JSON' },
  FST_ERR_CTP_INVALID_JSON_BODY: { code: 'malformed-body', detail: () => 'the body is not valid JSON' },
  FST_ERR_BAD_URL: { code: 'bad-url', detail: () => 'the request URL cannot be decoded' },
  FST_ERR_MAX_PARAM_LENGTH: { code: 'url-too-long', detail: () => 'a path segment is longer than any route accepts' },
};
