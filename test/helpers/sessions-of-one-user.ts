import type { LightMyRequestResponse } from 'fastify';
import { after, before } from 'node:test';
import { describeEachBackend } from './database.js';
import { openIdentityHarness, type IdentityHarness, type SignedSession, type TestUser } from './identity.js';

/** What a suite of {@link describeSessionsOfOneUser} works with; `h` and `user` are set by its `before` hook. */
export interface SessionsOfOneUser {
  h: IdentityHarness;
  /** An employee with TOTP, signed in once; the device of that sign-in is trusted. */
  user: TestUser;
  /** A new session of `user` through the trusted device, from an address of its own. */
  newSession(): Promise<SignedSession>;
  /** `POST /auth/refresh` with `refreshToken`. */
  refresh(refreshToken: string): Promise<LightMyRequestResponse>;
  /** `GET /auth/sessions` with `accessToken`: 200 while its session lives, 401 once it ended. */
  listSessions(accessToken: string): Promise<LightMyRequestResponse>;
}

/**
 * A suite per backend over one harness and one user who needs many sessions: the user passes
 * TOTP once, in `before`, and every later session comes through that trusted device, so no test
 * spends a TOTP step (each is usable once) and each session has its own address (no test meets
 * the per-address sign-in budget another used up).
 */
export function describeSessionsOfOneUser(title: string, body: (suite: SessionsOfOneUser) => void): Promise<void> {
  return describeEachBackend(title, (backend) => {
    let deviceToken: string;
    let nextAddress = 10;
    const suite = {
      newSession: () => suite.h.signInOnDevice(suite.user, deviceToken, { ip: `198.51.100.${nextAddress++}` }),
      refresh: (refreshToken: string) => suite.h.request({ method: 'POST', url: '/api/v1/auth/refresh', body: { refreshToken } }),
      listSessions: (accessToken: string) => suite.h.request({ method: 'GET', url: '/api/v1/auth/sessions', token: accessToken }),
    } as SessionsOfOneUser;
    before(async () => {
      suite.h = await openIdentityHarness(backend);
      suite.user = await suite.h.createUser({ role: 'employee' });
      ({ deviceToken } = await suite.h.signIn(suite.user));
    });
    after(() => suite.h?.close());
    body(suite);
  });
}
