import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import formbody from '@fastify/formbody';
import fastifyStatic from '@fastify/static';
import fastifyView from '@fastify/view';
import { Type, type Static } from '@sinclair/typebox';
import { Eta } from 'eta';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { IdentityError } from '../identity/errors.js';
import type { Identity } from '../identity/identity.js';
import { SessionControl } from '../identity/sessions/session-control.js';
import type { Relay } from '../relay/relay.js';
import { respondToError } from '../http/error-handler.js';
import { originOf } from '../http/guard.js';
import { HttpProblem } from '../http/problem.js';
import { problemOf } from '../http/problem-codes.js';
import { RelayError } from '../relay/errors.js';
import { endSession, refreshTokenOf, startSession } from './console-session.js';
import { installPageSecurity } from './page-security.js';
import { accountPage } from './pages/account.js';
import { conversationPages } from './pages/conversations.js';
import { dashboardPage } from './pages/dashboard.js';
import { signInPages } from './pages/sign-in.js';
import { usersPage } from './pages/users.js';

/**
 * The staff console under `/console`: server-rendered Eta pages (escaping by default) with
 * htmx, every asset served from our own origin, under its own strict CSP (page-security.ts).
 * It is a front end like src/http: its pages call identity's and the relay's use cases and
 * declare their access as API routes do, so the guard enforces them and docs/permissions.md
 * lists them. Registered from the route table (src/http/routes/index.ts).
 */
export function consoleRoutes(services: { identity: Identity; relay: Relay }) {
  const sessions = new SessionControl(services.identity);

  return async function register(app: FastifyInstance): Promise<void> {
    // Console forms are small; a larger body is refused before it is parsed.
    await app.register(formbody, { bodyLimit: 16 * 1024 });
    await app.register(fastifyView, { engine: { eta: new Eta({ autoEscape: true }) }, root: VIEWS_DIR, production: true });
    // Only `sendFile`: the one asset route below names its files, so nothing else on disk is reachable.
    await app.register(fastifyStatic, { root: ASSETS_DIR, serve: false });
    installPageSecurity(app);

    app.get<{ Params: Static<typeof AssetParams> }>(
      '/console/assets/:name',
      { config: { access: { public: true, reason: 'the console stylesheet and scripts, the same for everyone' } }, schema: { hide: true, params: AssetParams } },
      async (request, reply) => {
        const asset = ASSETS[request.params.name as AssetName];
        return reply.sendFile(asset.file, asset.root, { maxAge: 60 * 60 * 1000 });
      },
    );

    // Errors of console pages (the guard's included) become pages, not problem documents: a
    // person reads them. A page of a signed-out or expired session goes back through sign-in.
    app.setErrorHandler(async (error: FastifyError, request, reply) => {
      const status = statusOf(error);
      if (status === 401) return whenSignedOut(request, reply);
      if (status >= 500 || status < 400) return respondToError(error, request, reply);
      const { title, detail } = describe(error);
      return reply.code(status).view('error', { title, detail, status });
    });

    await app.register(signInPages(services.identity));
    await app.register(dashboardPage(services));
    await app.register(accountPage(services.identity));
    await app.register(conversationPages(services.relay));
    await app.register(usersPage(services.identity));
  };

  /**
   * The access cookie is missing, expired or its session was ended. With a refresh cookie the
   * session is renewed (rotation as the API's refresh) and the page asked again; a refresh that
   * fails (revoked session, reused token) clears the cookies and shows the sign-in page.
   */
  async function whenSignedOut(request: FastifyRequest, reply: FastifyReply) {
    const refreshToken = refreshTokenOf(request);
    if (refreshToken) {
      try {
        startSession(reply, await sessions.refresh(refreshToken, originOf(request)));
        // A form's body is not replayed: the page is shown again and the person submits it again.
        return reply.redirect(request.url, 303);
      } catch (error) {
        if (!(error instanceof IdentityError)) throw error;
      }
    }
    endSession(reply);
    return reply.redirect('/console', 303);
  }
}

const CONSOLE_DIR = path.dirname(fileURLToPath(import.meta.url));
// `npm run build` copies views/ and assets/ beside the compiled modules (dist/console/).
const VIEWS_DIR = path.join(CONSOLE_DIR, 'views');
const ASSETS_DIR = path.join(CONSOLE_DIR, 'assets');
const HTMX_FILE = createRequire(import.meta.url).resolve('htmx.org/dist/htmx.min.js');

const ASSETS = {
  'console.css': { root: ASSETS_DIR, file: 'console.css' },
  'htmx.min.js': { root: path.dirname(HTMX_FILE), file: path.basename(HTMX_FILE) },
} as const;
type AssetName = keyof typeof ASSETS;
const AssetParams = Type.Object({ name: Type.Union(Object.keys(ASSETS).map((name) => Type.Literal(name))) });

function statusOf(error: FastifyError): number {
  if (error instanceof IdentityError || error instanceof HttpProblem) return error.status;
  if (error instanceof RelayError) return problemOf(error.code, error.detail).status;
  if (error.validation) return 400;
  return typeof error.statusCode === 'number' ? error.statusCode : 500;
}

function describe(error: FastifyError): { title: string; detail: string } {
  if (error instanceof IdentityError || error instanceof HttpProblem) return { title: error.title, detail: error.detail };
  if (error instanceof RelayError) return { title: problemOf(error.code, error.detail).title, detail: error.detail };
  if (error.validation) {
    const issue = error.validation[0];
    const field = issue ? [issue.instancePath.replace(/^\//, ''), (issue.params as { missingProperty?: string }).missingProperty].filter(Boolean).join('.') : '';
    return { title: 'The form was not accepted', detail: `${field || 'the form'}: ${issue?.message ?? 'is invalid'}` };
  }
  return { title: 'The request was not accepted', detail: error.code?.startsWith('FST_') ? error.message : 'the request was not accepted' };
}
