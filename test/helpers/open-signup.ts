import { after, before } from 'node:test';
import { SmtpMailer } from '../../src/providers/smtp/mailer.js';
import type { RedisConnection } from '../../src/store/redis.js';
import type { Backend } from './database.js';
import { openIdentityHarness, type IdentityHarness } from './identity.js';
import { captureLogs } from './log-capture.js';
import { startSmtpServer, type SmtpTestServer } from './smtp.js';

/** An identity harness with self-registration open, and the SMTP server its emails go to. */
export interface OpenSignupHarness {
  h: IdentityHarness;
  /** Every verification and notice email the harness sent, as received. */
  smtp: SmtpTestServer;
  /** Closes the harness, then its mailer, then the SMTP server. */
  close(): Promise<void>;
}

/**
 * `CIPHERGATE_SIGNUP=open` needs somewhere for verification emails to go: a real SMTP server
 * of the test's own and the production mailer pointed at it, so a test reads the link a user
 * would click. `env` adds settings (e.g. CIPHERGATE_SIGNUP_PENDING_HOURS); `redis` shares limits.
 */
export async function openSignupHarness(
  backend: Backend,
  options: { env?: Record<string, string>; redis?: RedisConnection; redisKeyPrefix?: string } = {},
): Promise<OpenSignupHarness> {
  const smtp = await startSmtpServer();
  const mailer = new SmtpMailer({ url: smtp.url, from: 'Ciphergate <no-reply@gate.example.test>', logger: captureLogs().logger });
  const h = await openIdentityHarness(backend, {
    env: { CIPHERGATE_SIGNUP: 'open', CIPHERGATE_SMTP_URL: smtp.url, ...options.env },
    mailer,
    ...(options.redis ? { redis: options.redis } : {}),
    ...(options.redisKeyPrefix ? { redisKeyPrefix: options.redisKeyPrefix } : {}),
  });
  return {
    h,
    smtp,
    async close() {
      await h.close();
      await mailer.close();
      await smtp.close();
    },
  };
}

/**
 * One open-signup harness for the enclosing suite: opened in `before` and handed to `opened`
 * (which keeps what its tests use), closed in `after`.
 */
export function useOpenSignupHarness(backend: Backend, opened: (signups: OpenSignupHarness) => void): void {
  let signups: OpenSignupHarness | undefined;
  before(async () => {
    signups = await openSignupHarness(backend);
    opened(signups);
  });
  after(() => signups?.close());
}

/** The `cgv_` token of the verification link in a signup email (it travels in the link's fragment). */
export function verificationTokenIn(text: string): string {
  const match = /#token=(cgv_[A-Za-z0-9_-]{43})(?![A-Za-z0-9_-])/.exec(text);
  if (!match) throw new Error(`no verification link in: ${text}`);
  return match[1]!;
}
