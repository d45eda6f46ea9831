import { randomBytes } from 'node:crypto';
import { after } from 'node:test';
import { startOpenAiFake, type OpenAiFake } from '../fakes/openai.js';
import { startTwilioFake, type TwilioFake } from '../fakes/twilio.js';
import { stopChildren } from './cli.js';
import { createTestDatabase, type TestDatabase } from './database.js';

/**
 * What the suites that run the relay as child processes (`ciphergate serve`, `worker`) over
 * PostgreSQL share: a fresh database, the Twilio and OpenAI fakes, and the environment that
 * points a child at them.
 */
export interface ChildRelayResources {
  database: TestDatabase;
  twilio: TwilioFake;
  openai: OpenAiFake;
}

/**
 * Registers the suite's clean-up (children first, so none is left writing to a dropped
 * database) and returns the function that starts the resources, to be called inside the test
 * so a suite skipped for a missing PostgreSQL starts nothing.
 */
export function childRelayResources(): () => Promise<ChildRelayResources> {
  const held: Partial<ChildRelayResources> = {};
  after(async () => {
    await stopChildren();
    await held.database?.cleanup();
    await held.twilio?.close();
    await held.openai?.close();
  });
  return async () => {
    [held.twilio, held.openai] = await Promise.all([startTwilioFake(), startOpenAiFake()]);
    held.database = await createTestDatabase('postgres');
    return held as ChildRelayResources;
  };
}

/** A child's environment: its database, a fresh master key, its public URL and the fakes. */
export function childRelayEnv(options: {
  databaseUrl: string;
  publicUrl: string;
  twilioUrl: string;
  openaiUrl: string;
  logLevel?: string;
}): Record<string, string> {
  return {
    CIPHERGATE_DATABASE_URL: options.databaseUrl,
    CIPHERGATE_MASTER_KEY: randomBytes(32).toString('base64'),
    CIPHERGATE_PUBLIC_URL: options.publicUrl,
    CIPHERGATE_TWILIO_API_URL: options.twilioUrl,
    CIPHERGATE_OPENAI_BASE_URL: `${options.openaiUrl}/v1`,
    CIPHERGATE_LOG_LEVEL: options.logLevel ?? 'warn',
  };
}
