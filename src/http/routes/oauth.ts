import formbody from '@fastify/formbody';
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Identity } from '../../identity/identity.js';
import { OAuth, oauthError } from '../../identity/machines/oauth.js';
import { originOf } from '../guard.js';
import { ProblemSchema } from '../schemas/problem.js';

/**
 * OAuth 2.0 for machines: the client-credentials grant (RFC 6749 §4.4; client id = API key
 * id, client secret = the key) and token revocation (RFC 7009), form-encoded as the RFCs
 * require; plus the JWKS other services verify our access tokens with.
 */
const TokenBody = Type.Object(
  {
    grant_type: Type.String({ maxLength: 64 }),
    scope: Type.Optional(Type.String({ maxLength: 512 })),
    client_id: Type.Optional(Type.String({ maxLength: 64 })),
    client_secret: Type.Optional(Type.String({ maxLength: 128 })),
  },
  { additionalProperties: false },
);
const RevokeBody = Type.Object(
  {
    token: Type.String({ minLength: 1, maxLength: 4096 }),
    token_type_hint: Type.Optional(Type.String({ maxLength: 64 })),
    client_id: Type.Optional(Type.String({ maxLength: 64 })),
    client_secret: Type.Optional(Type.String({ maxLength: 128 })),
  },
  { additionalProperties: false },
);
const tags = ['oauth'];

export function oauthRoutes(identity: Identity) {
  const oauth = new OAuth(identity);
  return async function register(app: FastifyInstance): Promise<void> {
    await app.register(formbody, { bodyLimit: 16 * 1024 });

    app.post<{ Body: Static<typeof TokenBody> }>(
      '/oauth/token',
      {
        config: { access: { public: true, reason: 'the token endpoint authenticates the client itself (HTTP Basic or client_secret_post)' } },
        schema: {
          tags,
          summary: 'Client credentials grant: API key id + key → a short-lived access JWT',
          consumes: ['application/x-www-form-urlencoded'],
          body: TokenBody,
          response: {
            200: Type.Object({ access_token: Type.String(), token_type: Type.Literal('Bearer'), expires_in: Type.Integer(), scope: Type.String() }),
            400: ProblemSchema,
            401: ProblemSchema,
          },
        },
      },
      async (request, reply) => {
        if (request.body.grant_type !== 'client_credentials') throw oauthError('unsupported_grant_type', 'only grant_type=client_credentials is supported here');
        const client = clientCredentialsOf(request);
        const token = await oauth.clientCredentials({ ...client, scope: request.body.scope }, originOf(request));
        reply.header('cache-control', 'no-store').header('pragma', 'no-cache');
        return token;
      },
    );

    app.post<{ Body: Static<typeof RevokeBody> }>(
      '/oauth/revoke',
      {
        config: { access: { public: true, reason: 'RFC 7009: holding a token is the authority to revoke it; the answer is the same for unknown tokens' } },
        schema: { tags, summary: 'Revoke a refresh token, access token or API key (RFC 7009)', consumes: ['application/x-www-form-urlencoded'], body: RevokeBody, response: { 200: Type.Null(), 400: ProblemSchema } },
      },
      async (request, reply) => {
        await oauth.revokeToken(request.body.token, originOf(request));
        return reply.code(200).send();
      },
    );

    app.get(
      '/.well-known/jwks.json',
      {
        config: { access: { public: true, reason: 'public keys that verify our access tokens; publishing them is the point' } },
        schema: {
          tags,
          summary: 'The public keys that verify access tokens (current and recently retired)',
          response: { 200: Type.Object({ keys: Type.Array(Type.Object({ kty: Type.String(), crv: Type.String(), x: Type.String(), kid: Type.String(), alg: Type.String(), use: Type.String() })) }) },
        },
      },
      async (_request, reply) => {
        // Short cache: verifiers must see a rotated-in key within a token lifetime.
        reply.header('cache-control', 'public, max-age=60');
        return identity.jwks();
      },
    );
  };
}

/** client_secret_basic (RFC 6749 §2.3.1, form-urlencoded inside Basic) or client_secret_post; never both. */
function clientCredentialsOf(request: FastifyRequest<{ Body: Static<typeof TokenBody> }>): { clientId: string; clientSecret: string } {
  const header = request.headers.authorization;
  const inBody = request.body.client_id !== undefined || request.body.client_secret !== undefined;
  if (header !== undefined) {
    if (inBody) throw oauthError('invalid_request', 'send client credentials in the Authorization header or in the body, not both');
    const match = /^Basic ([A-Za-z0-9+/=]{1,1024})$/.exec(header);
    const decoded = match ? Buffer.from(match[1]!, 'base64').toString('utf8') : '';
    const colon = decoded.indexOf(':');
    if (colon < 1) throw oauthError('invalid_client', 'malformed Basic credentials');
    try {
      return { clientId: decodeURIComponent(decoded.slice(0, colon)), clientSecret: decodeURIComponent(decoded.slice(colon + 1)) };
    } catch {
      throw oauthError('invalid_client', 'malformed Basic credentials');
    }
  }
  if (!request.body.client_id || !request.body.client_secret) throw oauthError('invalid_client', 'client authentication is required');
  return { clientId: request.body.client_id, clientSecret: request.body.client_secret };
}
