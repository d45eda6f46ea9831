import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { queryRows } from '../../src/store/connection.js';
import { DEFAULT_OPENAI_KEY } from '../fakes/openai.js';
import { DEFAULT_TWILIO_ACCOUNT, signTwilioRequest } from '../fakes/twilio.js';
import { childRelayEnv, childRelayResources } from '../helpers/child-relay.js';
import { startChildServe } from '../helpers/child-serve.js';
import { freePort } from '../helpers/ports.js';
import { runCliProcess, spawnCli } from '../helpers/cli.js';
import { postgresUnavailableReason } from '../helpers/database.js';
import { messageSid, randomPhone, TENANT_FROM_NUMBER } from '../helpers/relay.js';
import { serviceGate } from '../helpers/services.js';

/**
 * `serve --no-workers` and `ciphergate worker` split the HTTP side from the job side (CONTRACT
 * "scale them apart"): the server stores and acknowledges, a separate worker process answers.
 */
describe('serve --no-workers with a separate ciphergate worker', async () => {
  const gate = serviceGate('PostgreSQL', await postgresUnavailableReason());
  const startResources = childRelayResources();

  test('the server only stores; the worker process sends the answer, then stops on SIGTERM', { skip: gate.skip, timeout: 240_000 }, async () => {
    const { database, twilio, openai } = await startResources();
    const port = await freePort();
    const publicUrl = `http://127.0.0.1:${port}`;
    const cwd = mkdtempSync(join(tmpdir(), 'cg-worker-'));
    const env = childRelayEnv({ databaseUrl: database.url!, publicUrl, twilioUrl: twilio.url, openaiUrl: openai.url });
    const tenant = {
      name: 'Split Clinic',
      twilio: { accountSid: DEFAULT_TWILIO_ACCOUNT.accountSid, authToken: DEFAULT_TWILIO_ACCOUNT.authToken, fromNumber: TENANT_FROM_NUMBER },
      openai: { apiKey: DEFAULT_OPENAI_KEY, model: 'gpt-4o-mini' },
    };
    const put = await runCliProcess(['tenants', 'put', 'split'], { env, cwd, stdin: JSON.stringify(tenant), timeoutMs: 120_000 });
    assert.equal(put.code, 0, put.stderr);

    const server = await startChildServe({ env, cwd, port, args: ['--no-workers'] });
    const from = randomPhone();
    const sid = messageSid();
    const params = { MessageSid: sid, AccountSid: DEFAULT_TWILIO_ACCOUNT.accountSid, From: from, To: TENANT_FROM_NUMBER, Body: 'Is parking free?' };
    const response = await fetch(`${publicUrl}/webhooks/twilio/split/sms`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': signTwilioRequest(DEFAULT_TWILIO_ACCOUNT.authToken, `${publicUrl}/webhooks/twilio/split/sms`, params) },
      body: new URLSearchParams(params).toString(),
    });
    assert.equal(response.status, 200);

    // Nobody works the queue yet: the answer waits, durable.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const pending = await queryRows<{ kind: string; state: string }>(database.database.db, sql`select kind, state from jobs`);
    assert.deepEqual(pending, [{ kind: 'ai-reply', state: 'pending' }]);
    assert.equal(twilio.messages.length, 0);

    const worker = spawnCli(['worker'], { env, cwd });
    const deadline = Date.now() + 120_000;
    while (twilio.messages.length === 0 || (await queryRows(database.database.db, sql`select 1 from jobs`)).length > 0) {
      assert.ok(Date.now() < deadline, `the worker did not answer in time\n${worker.output.stdout.slice(-2000)}\n${worker.output.stderr.slice(-2000)}`);
      assert.equal(worker.exitCode, null, `the worker exited early\n${worker.output.stderr.slice(-2000)}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    assert.equal(twilio.messages.length, 1);
    assert.equal(twilio.messages[0]!.to, from);

    worker.kill('SIGTERM');
    const code = await new Promise<number | null>((resolve) => worker.once('exit', (exitCode) => resolve(exitCode)));
    assert.equal(code, 0, worker.output.stderr);
    assert.equal(await server.stop(), 0);
  });
});
