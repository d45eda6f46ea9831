import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildApp } from '../../src/http/app.js';
import { isSensitiveKey, redactUrl } from '../../src/log/logger.js';
import { captureLogs } from '../helpers/log-capture.js';

const config = { publicUrl: 'http://127.0.0.1:8080', trustProxy: [], bodyLimitBytes: 1024 * 1024 };

// Values that must never appear in a log line, whatever route or field carries them.
const SECRETS = {
  bearer: 'eyJhbGciOiJFZERTQSJ9.canary-bearer-7f3a',
  cookie: 'cg_session=canary-cookie-91bd',
  twilioSignature: 'canary-twilio-sig-0c1e=',
  podiumSignature: 'canary-podium-sig-5d22',
  airtableMac: 'hmac-sha256=canary-airtable-mac-77aa',
  csrf: 'canary-csrf-4410',
  queryToken: 'canary-query-token-3b9f',
  setupToken: 'canary-setup-token-aa01',
  password: 'canary-password-Correct-Horse-8812',
  totpCode: '482913',
  apiKey: 'cgk_canary_api_key_e5c0',
  nestedSecret: 'canary-nested-secret-6b6b',
  refreshToken: 'canary-refresh-19c4',
  recoveryCode: 'canary-recovery-c0de',
};

test('secrets in headers, query strings and bodies never reach the log, even when a handler logs everything', async () => {
  const logs = captureLogs('trace');
  const app = await buildApp({
    config,
    logger: logs.logger,
    routes: [
      (scope) => {
        scope.post('/probe/echo', { config: { access: { public: true, reason: 'test' } } }, async (request) => {
          // A careless handler: logs the whole body and all headers. Redaction must still hold.
          request.log.info({ body: request.body, headers: request.headers, query: request.query }, 'echo');
          return { ok: true };
        });
      },
    ],
  });
  const response = await app.inject({
    method: 'POST',
    url: `/probe/echo?token=${SECRETS.queryToken}&setupToken=${SECRETS.setupToken}&page=2`,
    headers: {
      authorization: `Bearer ${SECRETS.bearer}`,
      cookie: SECRETS.cookie,
      'x-twilio-signature': SECRETS.twilioSignature,
      'podium-signature': SECRETS.podiumSignature,
      'x-airtable-content-mac': SECRETS.airtableMac,
      'x-csrf-token': SECRETS.csrf,
    },
    payload: {
      email: 'someone@example.com',
      password: SECRETS.password,
      code: SECRETS.totpCode,
      credentials: { api_key: SECRETS.apiKey, deeper: { clientSecret: SECRETS.nestedSecret } },
      tokens: [{ refreshToken: SECRETS.refreshToken }],
      recoveryCode: SECRETS.recoveryCode,
    },
  });
  assert.equal(response.statusCode, 200);
  // A direct logger call with sensitive names, as library code might make.
  logs.logger.warn({ apiKey: SECRETS.apiKey, 'API-KEY': SECRETS.apiKey, user: { password: SECRETS.password } }, 'direct');

  const text = logs.text();
  assert.ok(text.includes('"msg":"echo"'), 'the echo line was written');
  assert.ok(text.includes('page=2'), 'harmless query parameters stay visible');
  for (const [name, secret] of Object.entries(SECRETS)) {
    assert.equal(text.includes(secret), false, `${name} leaked into the log`);
  }
  await app.close();
});

test('status codes and ids of secrets stay visible for correlation', () => {
  for (const key of ['statusCode', 'tokenId', 'apiKeyId', 'sessionId', 'errorCode', 'reqId', 'responseTime']) {
    assert.equal(isSensitiveKey(key), false, key);
  }
  for (const key of ['password', 'newPassword', 'accessToken', 'refresh_token', 'client_secret', 'apiKey', 'X-Api-Key', 'code', 'totpCode', 'pin', 'authorization', 'set-cookie', 'masterKey', 'credentials']) {
    assert.equal(isSensitiveKey(key), true, key);
  }
});

test('query strings keep their names and lose sensitive values', () => {
  assert.equal(redactUrl('/a?token=abc&x=1'), '/a?token=[redacted]&x=[redacted]');
  // Deny by default: only known id and paging parameters keep their values.
  assert.equal(redactUrl('/api/v1/conversations?tenant=acme&phone=%2B14155552671&limit=5'), '/api/v1/conversations?tenant=acme&phone=[redacted]&limit=5');
  assert.equal(redactUrl('/webhooks/twilio/acme/sms?Body=my+card+4111&From=%2B14155552671'), '/webhooks/twilio/acme/sms?Body=[redacted]&From=[redacted]');
  assert.equal(redactUrl('/plain'), '/plain');
});
