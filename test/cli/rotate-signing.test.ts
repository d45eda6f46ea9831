import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { decodeProtectedHeader } from 'jose';
import { Accounts } from '../../src/identity/accounts/accounts.js';
import { SigningKeysRepository as DatabaseSigningKeyStore } from '../../src/store/repositories/signing-keys.js';
import { RETIRED_KEY_VERIFICATION_WINDOW_MS, SigningKeys } from '../../src/identity/tokens/signing-keys.js';
import { queryRows } from '../../src/store/connection.js';
import { logLines, spawnCli, stopChildren, waitForOutput } from '../helpers/cli.js';
import { openCliWorkspace, type CliServer, type CliWorkspace } from '../helpers/cli-identity.js';
import { describeEachBackend, postgresUnavailableReason } from '../helpers/database.js';
import { PASSWORD } from '../helpers/identity.js';
import { serviceGate } from '../helpers/services.js';

after(stopChildren);

const KID_LINE = /^[A-Za-z0-9_-]{43}\n$/;

/** A signed-in admin's session, made directly (the sign-in flow has its own tests): its access and refresh tokens. */
async function signedInAdmin(server: CliServer): Promise<{ accessToken: string; refreshToken: string }> {
  const user = await new Accounts(server.identity).createUserWithPassword({ email: `admin-${randomBytes(3).toString('hex')}@example.test`, role: 'admin', tenantId: null, password: PASSWORD });
  const session = await server.identity.parts.sessions.start({ userId: user.id, deviceLabel: 'test', ip: '127.0.0.1' });
  const access = await server.identity.accessTokenFor(user, session.sessionId);
  return { accessToken: access.token, refreshToken: session.refreshToken! };
}

function kidOf(token: string): string {
  return decodeProtectedHeader(token).kid!;
}

function jwksKids(body: { keys: Array<{ kid: string }> }): string[] {
  return body.keys.map((key) => key.kid);
}

await describeEachBackend('keys rotate-signing', (backend) => {
  let space: CliWorkspace;

  before(async () => {
    space = await openCliWorkspace(backend, 'rotate');
  });
  after(() => space?.cleanup());

  test('prints the new kid; tokens signed before keep verifying, new ones carry the new kid, the JWKS lists both, until the window ends', async () => {
    let server = await space.openServer();
    let issuedBefore: { accessToken: string; refreshToken: string };
    let oldKid: string;
    try {
      issuedBefore = await signedInAdmin(server);
      oldKid = kidOf(issuedBefore.accessToken);
      assert.deepEqual(jwksKids((await server.request('GET', '/.well-known/jwks.json')).json()), [oldKid]);
    } finally {
      await server.close();
    }

    const rotated = await space.run(['keys', 'rotate-signing']);
    assert.equal(rotated.code, 0, rotated.stderr);
    assert.match(rotated.stdout, KID_LINE);
    const newKid = rotated.stdout.trim();
    assert.notEqual(newKid, oldKid);
    assert.equal(rotated.stderr, `ciphergate: note: retired ${oldKid}; it verifies tokens for ${RETIRED_KEY_VERIFICATION_WINDOW_MS / 1000} s more\n`);

    server = await space.openServer();
    try {
      // A server started after the rotation: the old token still works, through the guard and directly.
      const sessions = await server.request('GET', '/api/v1/auth/sessions', { token: issuedBefore.accessToken });
      assert.equal(sessions.statusCode, 200, sessions.body);
      const principal = await server.identity.authenticate(issuedBefore.accessToken, 'bearer');
      assert.equal(principal.kind, 'user');
      const jwks = await server.request('GET', '/.well-known/jwks.json');
      assert.deepEqual(jwksKids(jwks.json()), [newKid, oldKid], 'the new key first, the retired one still published');

      const refreshed = await server.request('POST', '/api/v1/auth/refresh', { body: { refreshToken: issuedBefore.refreshToken } });
      assert.equal(refreshed.statusCode, 200, refreshed.body);
      assert.equal(kidOf(refreshed.json().accessToken), newKid, 'new tokens are signed with the new key');
      assert.equal((await server.request('GET', '/api/v1/auth/sessions', { token: refreshed.json().accessToken })).statusCode, 200);

      const audit = await queryRows<{ actor_type: string; actor_id: string; target_type: string; target_id: string; outcome: string; details: Record<string, unknown> }>(
        server.runtime.database.db,
        sql`select actor_type, actor_id, target_type, target_id, outcome, details from audit_events where action = 'keys.rotate-signing'`,
      );
      assert.deepEqual(audit, [{ actor_type: 'system', actor_id: 'cli', target_type: 'signing_key', target_id: newKid, outcome: 'success', details: { kid: newKid, retired: oldKid } }]);

      // Once every token the old key signed has expired, it is no longer published or accepted.
      const later = await SigningKeys.open(new DatabaseSigningKeyStore(server.runtime.database.db, server.runtime.sealing.fields), {
        now: () => new Date(Date.now() + RETIRED_KEY_VERIFICATION_WINDOW_MS + 1_000),
      });
      assert.deepEqual(jwksKids(later.jwks()), [newKid]);
      assert.equal(await later.verificationKey(oldKid), undefined);
      assert.ok(await later.verificationKey(newKid));
    } finally {
      await server.close();
    }
  });
});

describe('keys rotate-signing against a running server (PostgreSQL)', async () => {
  const gate = serviceGate('PostgreSQL', await postgresUnavailableReason());

  test('the server keeps accepting the old token, then publishes and signs with the new key at its next refresh', { skip: gate.skip }, async () => {
    const space = await openCliWorkspace('postgres', 'rotate');
    const child = spawnCli(['serve'], { env: { ...space.env, CIPHERGATE_PORT: '0' }, cwd: space.cwd });
    try {
      await waitForOutput(child, (output) => output.stdout.includes('"msg":"ciphergate listening"'), 240_000);
      const port = logLines(child.output.stdout).find((line) => line.msg === 'ciphergate listening')!.port as number;
      const base = `http://127.0.0.1:${port}`;
      const sessionsWith = (token: string) => fetch(`${base}/api/v1/auth/sessions`, { headers: { authorization: `Bearer ${token}` } });
      const kidsPublished = async () => jwksKids((await (await fetch(`${base}/.well-known/jwks.json`)).json()) as { keys: Array<{ kid: string }> });

      // Tokens made on the same database and keys are the server's own: it signs with the same key.
      const local = await space.openServer();
      const issuedBefore = await signedInAdmin(local);
      await local.close();
      const oldKid = kidOf(issuedBefore.accessToken);
      assert.equal((await sessionsWith(issuedBefore.accessToken)).status, 200);
      assert.deepEqual(await kidsPublished(), [oldKid]);

      const rotated = await space.run(['keys', 'rotate-signing']);
      assert.equal(rotated.code, 0, rotated.stderr);
      const newKid = rotated.stdout.trim();
      assert.equal((await sessionsWith(issuedBefore.accessToken)).status, 200, 'the token signed before the rotation still works');

      // The server re-reads its keys every 10 s; wait for it rather than for a fixed time.
      const deadline = Date.now() + 60_000;
      while (!(await kidsPublished()).includes(newKid)) {
        assert.ok(Date.now() < deadline, 'the server did not pick up the new signing key within 60 s');
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
      assert.deepEqual(await kidsPublished(), [newKid, oldKid]);
      const refreshed = await fetch(`${base}/api/v1/auth/refresh`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ refreshToken: issuedBefore.refreshToken }) });
      assert.equal(refreshed.status, 200);
      const { accessToken } = (await refreshed.json()) as { accessToken: string };
      assert.equal(kidOf(accessToken), newKid);
      assert.equal((await sessionsWith(accessToken)).status, 200);
      assert.equal((await sessionsWith(issuedBefore.accessToken)).status, 200, 'the old key still verifies within its window');

      child.kill('SIGTERM');
      assert.equal(((await once(child, 'exit')) as [number])[0], 0);
    } finally {
      await stopChildren();
      await space.cleanup();
    }
  });
});
