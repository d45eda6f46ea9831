import assert from 'node:assert/strict';
import { createHmac, createPrivateKey, createPublicKey, generateKeyPairSync, randomUUID, sign, type JsonWebKey, type KeyObject } from 'node:crypto';
import { after, before, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { SigningKeysRepository as DatabaseSigningKeyStore } from '../../src/store/repositories/signing-keys.js';
import { queryRows } from '../../src/store/connection.js';
import { describeEachBackend } from '../helpers/database.js';
import { openIdentityHarness, type IdentityHarness, type TestUser } from '../helpers/identity.js';
import { tokenClaims } from '../helpers/token-claims.js';
import { assertUnauthenticated } from '../helpers/problems.js';

/**
 * Forged, expired and misdirected access tokens at a protected route, through HTTP: each is
 * the same 401 `unauthenticated` with a WWW-Authenticate challenge, and none of them gets a
 * state-changing request through. The verifier's reasons are unit-tested in tokens.test.ts;
 * this proves the guard wires it in front of every permission route.
 */

const PROTECTED_GET = '/api/v1/auth/sessions';
const PROTECTED_POST = '/api/v1/auth/logout-all';

const segment = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
const nowSeconds = () => Math.floor(Date.now() / 1000);

/** A compact JWS built by hand, so the attacks do not depend on jose agreeing to produce them. */
function craftEdDSA(header: object, claims: object, privateKey: KeyObject): string {
  const signingInput = `${segment(header)}.${segment(claims)}`;
  return `${signingInput}.${sign(null, Buffer.from(signingInput), privateKey).toString('base64url')}`;
}

await describeEachBackend('access tokens at a protected route', (backend) => {
  let h: IdentityHarness;
  let employee: TestUser;
  let genuine: { accessToken: string; sessionId: string };
  let signingKey: { kid: string; privateKey: KeyObject };

  before(async () => {
    h = await openIdentityHarness(backend);
    employee = await h.createUser({ role: 'employee' });
    genuine = await h.signIn(employee);
    // The real private key, opened through the sealing like the server does: only a
    // key holder could mint these tokens, so each one isolates one check of the verifier.
    const stored = (await new DatabaseSigningKeyStore(h.identity.parts.db, h.identity.parts.fields).list()).find((key) => key.retiredAt === null)!;
    signingKey = { kid: stored.kid, privateKey: createPrivateKey({ key: stored.privateJwk as JsonWebKey, format: 'jwk' }) };
  });
  after(() => h?.close());

  /** The genuine token's claims with `overrides`: a token that differs in one thing only. */
  const claims = (overrides: Record<string, unknown> = {}) => ({ ...tokenClaims(genuine.accessToken), jti: randomUUID(), ...overrides });
  const header = (overrides: Record<string, unknown> = {}) => ({ alg: 'EdDSA', typ: 'at+jwt', kid: signingKey.kid, ...overrides });

  /** Refused on a read and on a state change; the session it names is untouched afterwards. */
  async function assertRefusedEverywhere(token: string): Promise<void> {
    assertUnauthenticated(await h.request({ method: 'GET', url: PROTECTED_GET, token }), token);
    assertUnauthenticated(await h.request({ method: 'POST', url: PROTECTED_POST, token }), token);
    const rows = await queryRows<{ revoked_at: Date | null }>(h.db, sql`select revoked_at from sessions where user_id = ${employee.id}`);
    assert.ok(rows.length > 0 && rows.every((row) => row.revoked_at === null), 'the refused logout-all ended no session');
    const stillWorks = await h.request({ method: 'GET', url: PROTECTED_GET, token: genuine.accessToken });
    assert.equal(stillWorks.statusCode, 200, stillWorks.body);
  }

  test('control: the genuine token, and a hand-made one with the same claims, are accepted', async () => {
    const response = await h.request({ method: 'GET', url: PROTECTED_GET, token: genuine.accessToken });
    assert.equal(response.statusCode, 200, response.body);
    const handMade = craftEdDSA(header(), claims(), signingKey.privateKey);
    assert.equal((await h.request({ method: 'GET', url: PROTECTED_GET, token: handMade })).statusCode, 200);
  });

  test('expired: signed with the real key, issued an hour ago → 401', async () => {
    const issuedAt = nowSeconds() - 3600;
    const token = craftEdDSA(header(), claims({ iat: issuedAt, exp: issuedAt + 600 }), signingKey.privateKey);
    await assertRefusedEverywhere(token);
    const answer = await h.request({ method: 'GET', url: PROTECTED_GET, token });
    assert.match(answer.json().detail, /expired/);
  });

  test('a long exp does not outlive ten minutes after iat → 401', async () => {
    const issuedAt = nowSeconds() - 700;
    await assertRefusedEverywhere(craftEdDSA(header(), claims({ iat: issuedAt, exp: issuedAt + 86_400 }), signingKey.privateKey));
  });

  test('alg none with an empty signature → 401', async () => {
    for (const alg of ['none', 'None', 'NONE']) {
      await assertRefusedEverywhere(`${segment(header({ alg }))}.${segment(claims())}.`);
    }
  });

  test('HS256 signed with the published public key as the HMAC secret → 401', async () => {
    const jwks = (await h.request({ method: 'GET', url: '/.well-known/jwks.json' })).json() as { keys: Array<{ kid: string; x: string }> };
    const published = jwks.keys.find((key) => key.kid === signingKey.kid)!;
    const publicKey = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: published.x }, format: 'jwk' });
    const secrets = [Buffer.from(published.x, 'base64url'), publicKey.export({ format: 'pem', type: 'spki' }), publicKey.export({ format: 'der', type: 'spki' }), JSON.stringify(published)];
    for (const secret of secrets) {
      const signingInput = `${segment(header({ alg: 'HS256' }))}.${segment(claims())}`;
      await assertRefusedEverywhere(`${signingInput}.${createHmac('sha256', secret).update(signingInput).digest('base64url')}`);
    }
  });

  test('wrong audience: signed with the real key for another service of ours → 401', async () => {
    await assertRefusedEverywhere(craftEdDSA(header(), claims({ aud: 'https://gate.example.test/other-service' }), signingKey.privateKey));
    await assertRefusedEverywhere(craftEdDSA(header(), claims({ aud: ['https://elsewhere.example.test/api'] }), signingKey.privateKey));
  });

  test('wrong issuer: signed with the real key, naming another issuer → 401', async () => {
    await assertRefusedEverywhere(craftEdDSA(header(), claims({ iss: 'https://evil.example.test' }), signingKey.privateKey));
  });

  test('tampered payload: role flipped to admin under the original signature → 401, not an admin', async () => {
    const [headerPart, , signature] = genuine.accessToken.split('.') as [string, string, string];
    const tampered = `${headerPart}.${segment({ ...tokenClaims(genuine.accessToken), role: 'admin' })}.${signature}`;
    await assertRefusedEverywhere(tampered);
    // The admin-only route says 401 (no credential), not 200: the flip bought nothing.
    assertUnauthenticated(await h.request({ method: 'GET', url: '/api/v1/users', token: tampered }));
    const honest = await h.request({ method: 'GET', url: '/api/v1/users', token: genuine.accessToken });
    assert.equal(honest.statusCode, 403, 'control: the genuine employee token is refused there by permission');
  });

  test('unknown kid: signed by an attacker key under a kid we never issued → 401', async () => {
    const attackerKey = generateKeyPairSync('ed25519').privateKey;
    await assertRefusedEverywhere(craftEdDSA(header({ kid: 'attacker-key-1' }), claims(), attackerKey));
    // Our kid with the attacker's signature is no better.
    await assertRefusedEverywhere(craftEdDSA(header(), claims(), attackerKey));
  });

  test('a well-signed token whose session does not exist, or is not its subject’s → 401', async () => {
    await assertRefusedEverywhere(craftEdDSA(header(), claims({ sid: randomUUID() }), signingKey.privateKey));
    await assertRefusedEverywhere(craftEdDSA(header(), claims({ sub: randomUUID() }), signingKey.privateKey));
  });

  test('a malformed Authorization header → 401, even next to a valid token', async () => {
    const headers = [
      `Basic ${Buffer.from('user:pass').toString('base64')}`,
      'Bearer',
      'Bearer ',
      `Bearer  ${genuine.accessToken}`,
      `Bearer ${genuine.accessToken} extra`,
      `Token ${genuine.accessToken}`,
      `Bearer ${'a'.repeat(5000)}`,
      'Bearer not-a-jwt',
    ];
    for (const authorization of headers) {
      assertUnauthenticated(await h.request({ method: 'GET', url: PROTECTED_GET, headers: { authorization } }));
      assertUnauthenticated(await h.request({ method: 'POST', url: PROTECTED_POST, headers: { authorization } }));
    }
    assertUnauthenticated(await h.request({ method: 'GET', url: PROTECTED_GET }));
    const live = await h.request({ method: 'GET', url: PROTECTED_GET, token: genuine.accessToken });
    assert.equal(live.statusCode, 200);
  });

  test('a refresh token or device token presented as a bearer token → 401', async () => {
    const other = await h.signIn(employee);
    await assertRefusedEverywhere(other.refreshToken);
    await assertRefusedEverywhere(other.deviceToken);
  });
});
