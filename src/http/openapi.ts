import swagger from '@fastify/swagger';
import type { FastifyInstance, RouteOptions } from 'fastify';
import { API_KEY_SCOPES } from '../identity/permissions.js';
import { ACCESS_COOKIE, CSRF_HEADER } from './guard.js';
import { PROBLEM_CODES } from './problem-codes.js';
import { RATE_LIMITED_PATH_PREFIXES } from './rate-limit.js';
import type { RouteAccess } from './route-access.js';
import { PROBLEM_SCHEMA_ID, ProblemSchema } from './schemas/problem.js';

/**
 * The OpenAPI document (`GET /docs/json`, Swagger UI at `/docs`) as a client generator needs it:
 * every route with its request schema, every status it can answer with its body, the problem
 * types behind each error status, and the credentials each route takes.
 *
 * A route module declares what only it knows (its own success and refusal statuses). What the
 * plumbing answers on every route of a kind is added here, once, by an `onRoute` hook, so no
 * route can forget it: a schema's 400, a body's 400/413/415, a permission's 401/403, the rate
 * limit's 429, and 500/503 everywhere. The same hook sets each route's security requirement from
 * its declared access, and turns every problem response into `application/problem+json` with the
 * one shared `Problem` schema (components.schemas.Problem).
 */
export async function installOpenApi(app: FastifyInstance, options: { publicUrl: string }): Promise<void> {
  app.addSchema(ProblemSchema);
  app.addHook('onRoute', (route) => documentResponses(route));
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Ciphergate',
        version: '0.1.0',
        description:
          'Security gateway for conversation data. Errors are application/problem+json (RFC 9457); the `type` member names the problem (docs/http.md). ' +
          'Ids: tenants are named by slug everywhere, conversations, users, API keys and sessions by UUID.',
      },
      servers: [{ url: options.publicUrl }],
      components: { securitySchemes: SECURITY_SCHEMES },
    },
    // Shared schemas keep their names (components.schemas.Problem) instead of `def-0`.
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, index) => (typeof json.$id === 'string' ? json.$id : `def-${index}`) },
    transform: ({ schema, url, route }) => {
      const documented = route.config?.documentedRequest;
      if (!documented) return { schema, url };
      // A body the route reads raw (a webhook's signed bytes) is described here, never validated by Fastify.
      return { schema: { ...schema, consumes: [documented.contentType], body: documented.schema }, url };
    },
  });
}

/**
 * What a route that reads its body raw (webhooks: the signature covers the exact bytes) receives,
 * for the document only: Fastify validates nothing of it, the relay does.
 */
export interface DocumentedRequest {
  contentType: string;
  schema: Record<string, unknown>;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    documentedRequest?: DocumentedRequest;
    /** Set by the rate-limit plugins' owners: this route may answer 429 `rate-limited`. */
    rateLimited?: boolean;
  }
}

/** A response of problem+json naming the problem types it carries. */
export function problemResponse(types: readonly string[]) {
  return {
    description: `Problem (RFC 9457) of type ${types.map((type) => `\`${type}\``).join(', ')}`,
    content: { 'application/problem+json': { schema: { $ref: `${PROBLEM_SCHEMA_ID}#` } } },
  };
}

/** The credentials the API takes (src/http/guard.ts); a route lists those its permission accepts. */
export const SECURITY_SCHEMES = {
  accessToken: {
    type: 'http',
    scheme: 'bearer',
    bearerFormat: 'JWT',
    description: 'An access token from POST /api/v1/auth/login and the second factor (or /oauth/token).',
  },
  apiKey: {
    type: 'http',
    scheme: 'bearer',
    description: 'An API key (shown once at creation) as the bearer token; only for routes whose permission is an API-key scope, confined to the key\'s tenant.',
  },
  sessionCookie: {
    type: 'apiKey',
    in: 'cookie',
    name: ACCESS_COOKIE,
    description: `The console's session cookie; a state-changing request also needs the ${CSRF_HEADER} header from GET /api/v1/csrf.`,
  },
} as const;

/** The problem types the plumbing answers with, by status, on the routes it applies to. */
const PLUMBING_PROBLEMS = {
  schema: { 400: ['validation-failed'] },
  body: { 400: ['validation-failed', 'malformed-body'], 413: ['payload-too-large'], 415: ['unsupported-media-type'] },
  permission: { 401: ['unauthenticated'], 403: ['forbidden', 'csrf-token-invalid'] },
  rateLimited: { 429: ['rate-limited'] },
  everywhere: { 500: ['internal-error'], 503: ['service-unavailable'] },
} as const satisfies Record<string, Record<number, readonly string[]>>;

const METHODS_WITH_BODY = new Set(['POST', 'PUT', 'PATCH']);

function documentResponses(route: RouteOptions): void {
  const schema = (route.schema ??= {}) as Record<string, unknown> & { response?: Record<string, unknown> };
  const access = route.config?.access as RouteAccess | undefined;
  const methods = (Array.isArray(route.method) ? route.method : [route.method]).map(String);
  const declared = schema.response ?? {};
  const response: Record<string, unknown> = {};
  const add = (problems: Record<number, readonly string[]>) => {
    for (const [status, types] of Object.entries(problems)) {
      const current = response[status];
      response[status] = isProblemResponse(current) ? problemResponse([...new Set([...typesOf(current), ...types])]) : (current ?? problemResponse(types));
    }
  };
  // A route's own declaration first: a problem schema becomes problem+json naming every type of its status.
  for (const [status, value] of Object.entries(declared)) {
    response[status] = value === ProblemSchema ? problemResponse(typesWithStatus(Number(status))) : described(status, value);
  }
  if (schema.querystring || schema.params || schema.headers || schema.body) add(PLUMBING_PROBLEMS.schema);
  if (methods.some((method) => METHODS_WITH_BODY.has(method))) add(PLUMBING_PROBLEMS.body);
  if (access && 'permission' in access) {
    add(PLUMBING_PROBLEMS.permission);
    schema.security = API_KEY_SCOPES.includes(access.permission as never)
      ? [{ accessToken: [] }, { apiKey: [] }, { sessionCookie: [] }]
      : [{ accessToken: [] }, { sessionCookie: [] }];
  }
  if (route.config?.rateLimited || RATE_LIMITED_PATH_PREFIXES.some((prefix) => route.url.startsWith(prefix))) add(PLUMBING_PROBLEMS.rateLimited);
  add(PLUMBING_PROBLEMS.everywhere);
  schema.response = response;
}

/** A success without a description of its own gets its status's name, not the generator's "Default Response". */
function described(status: string, value: unknown): unknown {
  if (typeof value !== 'object' || value === null || typeof (value as { description?: unknown }).description === 'string') return value;
  return { ...value, description: STATUS_NAMES[status] ?? `HTTP ${status}` };
}

const STATUS_NAMES: Record<string, string> = { 200: 'OK', 201: 'Created', 202: 'Accepted', 204: 'No Content', 302: 'Found' };

const TYPES_MARK = 'Problem (RFC 9457) of type ';

function isProblemResponse(value: unknown): value is { description: string } {
  return typeof value === 'object' && value !== null && typeof (value as { description?: unknown }).description === 'string' && (value as { description: string }).description.startsWith(TYPES_MARK);
}

function typesOf(value: { description: string }): string[] {
  return [...value.description.slice(TYPES_MARK.length).matchAll(/`([^`]+)`/g)].map((match) => match[1]!);
}

/** Every problem type the table of codes answers with this status. */
function typesWithStatus(status: number): string[] {
  const types = Object.entries(PROBLEM_CODES)
    .filter(([, spec]) => spec.status === status)
    .map(([code, spec]) => ('type' in spec && spec.type ? spec.type : code));
  return [...new Set(types)].sort();
}
