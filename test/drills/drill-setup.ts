import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_OPENAI_KEY } from '../fakes/openai.js';
import { DEFAULT_TWILIO_ACCOUNT, signTwilioRequest } from '../fakes/twilio.js';
import { childRelayEnv } from '../helpers/child-relay.js';
import { runCliProcess } from '../helpers/cli.js';

/** What the fault drills share: a tenant on the Twilio and OpenAI fakes, and signed deliveries. */

export const DRILL_FROM_NUMBER = '+14155550100';

export interface Delivery {
  sid: string;
  form: string;
  signature: string;
}

export interface DrillEnvironment {
  env: Record<string, string>;
  cwd: string;
  webhookUrl: string;
  /** A signed inbound SMS for message number `index`, from its own valid US number. */
  delivery(index: number): Delivery;
  /** POSTs it once; the status, or undefined when the connection failed. */
  post(delivery: Delivery): Promise<{ status: number | undefined; body: string; headers: Headers | undefined }>;
}

export async function prepareDrill(options: { slug: string; databaseUrl: string; port: number; twilioUrl: string; openaiUrl: string; extraEnv?: Record<string, string> }): Promise<DrillEnvironment> {
  const publicUrl = `http://127.0.0.1:${options.port}`;
  const cwd = mkdtempSync(join(tmpdir(), `cg-drill-${options.slug}-`));
  const env = {
    ...childRelayEnv({ databaseUrl: options.databaseUrl, publicUrl, twilioUrl: options.twilioUrl, openaiUrl: options.openaiUrl, logLevel: 'info' }),
    ...options.extraEnv,
  };
  const tenantJson = {
    name: `Drill ${options.slug}`,
    twilio: { accountSid: DEFAULT_TWILIO_ACCOUNT.accountSid, authToken: DEFAULT_TWILIO_ACCOUNT.authToken, fromNumber: DRILL_FROM_NUMBER },
    openai: { apiKey: DEFAULT_OPENAI_KEY, model: 'gpt-4o-mini' },
  };
  const put = await runCliProcess(['tenants', 'put', options.slug], { env, cwd, stdin: JSON.stringify(tenantJson), timeoutMs: 120_000 });
  assert.equal(put.code, 0, put.stderr);
  const webhookUrl = `${publicUrl}/webhooks/twilio/${options.slug}/sms`;
  return {
    env,
    cwd,
    webhookUrl,
    delivery(index) {
      const sid = `SM${randomBytes(16).toString('hex')}`;
      const params = {
        MessageSid: sid,
        SmsSid: sid,
        AccountSid: DEFAULT_TWILIO_ACCOUNT.accountSid,
        From: `+1415${200 + (index % 800)}${String(1000 + Math.floor(index / 800)).padStart(4, '0')}`,
        To: DRILL_FROM_NUMBER,
        Body: `Drill message number ${index}`,
        NumMedia: '0',
      };
      return { sid, form: new URLSearchParams(params).toString(), signature: signTwilioRequest(DEFAULT_TWILIO_ACCOUNT.authToken, webhookUrl, params) };
    },
    async post(delivery) {
      try {
        const response = await fetch(webhookUrl, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': delivery.signature },
          body: delivery.form,
          signal: AbortSignal.timeout(30_000),
        });
        return { status: response.status, body: await response.text(), headers: response.headers };
      } catch {
        return { status: undefined, body: '', headers: undefined };
      }
    },
  };
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
