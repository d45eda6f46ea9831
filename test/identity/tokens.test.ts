import assert from 'node:assert/strict';
import { createHmac, createPrivateKey, createPublicKey, generateKeyPairSync, sign, type JsonWebKey, type KeyObject } from 'node:crypto';
import { describe, test } from 'node:test';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { InMemorySigningKeyStore, SigningKeys, type StoredSigningKey } from '../../src/identity/tokens/signing-keys.js';
import { ACCESS_TOKEN_TTL_SECONDS, TokenError, issueAccessToken, verifyAccessToken, type TokenFailure } from '../../src/identity/tokens/access-tokens.js';

const ISSUER = 'https://gateway.example.test';
const AUDIENCE = 'ciphergate-api';
const T0 = new Date('2026-03-01T12:00:00Z');
const T0_SECONDS = T0.getTime() / 1000;

const subjectInput = {
  issuer: ISSUER,
  audience: AUDIENCE,
  subject: '7d1c5a0e-3d8e-4a44-9d55-0b8f1f6f6a01',
  sessionId: 'a3b1f9c2-6b4e-4f0e-8f3a-2c9d7e5b1a00',
  grant: { role: 'employee' as const },
  tenantId: null,
};

/** A store we can read back, to sign hand-made tokens with the real private key. */
class InspectableStore extends InMemorySigningKeyStore {
  inserted: StoredSigningKey[] = [];
  override async insert(key: StoredSigningKey): Promise<void> {
    this.inserted.push(structuredClone(key));
    await super.insert(key);
  }
}

async function setup() {
  const store = new InspectableStore();
  const keys = await SigningKeys.open(store, { now: () => T0 });
  const stored = store.inserted[0]!;
  const privateKey = createPrivateKey({ key: stored.privateJwk as JsonWebKey, format: 'jwk' });
  return { keys, kid: stored.kid, stored, privateKey };
}

const segment = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');

function validClaims(overrides: Record<string, unknown> = {}) {
  return {
    iss: ISSUER,
    aud: AUDIENCE,
    sub: subjectInput.subject,
    sid: subjectInput.sessionId,
    role: 'employee',
    client_id: 'ciphergate',
    tenant: null,
    jti: 'b6d1e8f0-1c2d-4e5f-8a9b-0c1d2e3f4a5b',
    iat: T0_SECONDS,
    exp: T0_SECONDS + ACCESS_TOKEN_TTL_SECONDS,
    ...overrides,
  };
}

/** A compact JWS built by hand, so the tests do not rely on jose to produce the attacks. */
function craftEdDSA(header: object, claims: object, privateKey: KeyObject): string {
  const signingInput = `${segment(header)}.${segment(claims)}`;
  return `${signingInput}.${sign(null, Buffer.from(signingInput), privateKey).toString('base64url')}`;
}

async function assertRefused(keys: SigningKeys, token: string, reason: TokenFailure, now: Date = T0) {
  await assert.rejects(verifyAccessToken(keys, token, { issuer: ISSUER, audience: AUDIENCE, now }), (error: unknown) => {
    assert.ok(error instanceof TokenError, `expected TokenError, got ${String(error)}`);
    assert.equal(error.reason, reason);
    return true;
  });
}

describe('issueAccessToken', () => {
  test('carries exactly the documented header and claims, and no personal data', async () => {
    const { keys, kid } = await setup();
    const issued = await issueAccessToken(keys, { ...subjectInput, now: T0 });

    assert.deepEqual(decodeProtectedHeader(issued.token), { alg: 'EdDSA', typ: 'at+jwt', kid });
    const claims = decodeJwt(issued.token);
    assert.deepEqual(Object.keys(claims).sort(), ['aud', 'client_id', 'exp', 'iat', 'iss', 'jti', 'role', 'sid', 'sub', 'tenant']);
    assert.equal(claims.exp! - claims.iat!, 600);
    assert.equal(claims.jti, issued.jti);
    assert.match(issued.jti, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(issued.expiresAt.getTime(), T0.getTime() + 600_000);
  });

  test('each token gets its own jti', async () => {
    const { keys } = await setup();
    const first = await issueAccessToken(keys, { ...subjectInput, now: T0 });
    const second = await issueAccessToken(keys, { ...subjectInput, now: T0 });
    assert.notEqual(first.jti, second.jti);
  });
});

describe('verifyAccessToken', () => {
  test('returns the typed claims of a token it issued', async () => {
    const { keys } = await setup();
    const issued = await issueAccessToken(keys, { ...subjectInput, grant: { role: 'client' }, tenantId: 'tenant-1', now: T0 });
    const claims = await verifyAccessToken(keys, issued.token, { issuer: ISSUER, audience: AUDIENCE, now: new Date(T0.getTime() + 599_000) });
    assert.deepEqual(claims, {
      iss: ISSUER,
      aud: AUDIENCE,
      sub: subjectInput.subject,
      sid: subjectInput.sessionId,
      role: 'client',
      scope: null,
      client_id: 'ciphergate',
      tenant: 'tenant-1',
      jti: issued.jti,
      iat: T0_SECONDS,
      exp: T0_SECONDS + 600,
    });
  });

  test('accepts a hand-made token with the same shape, so the abuse tests below differ in one thing only', async () => {
    const { keys, kid, privateKey } = await setup();
    const token = craftEdDSA({ alg: 'EdDSA', typ: 'at+jwt', kid }, validClaims(), privateKey);
    const claims = await verifyAccessToken(keys, token, { issuer: ISSUER, audience: AUDIENCE, now: T0 });
    assert.equal(claims.sid, subjectInput.sessionId);
  });
});

describe('verifyAccessToken refuses', () => {
  // Decision: alg "none" is a well-formed JWS naming a refused algorithm, so the reason is
  // algorithm-not-allowed (checked from the header before any key is chosen), not malformed.
  test('alg none with an empty signature → algorithm-not-allowed', async () => {
    const { keys, kid } = await setup();
    const token = `${segment({ alg: 'none', typ: 'at+jwt', kid })}.${segment(validClaims())}.`;
    await assertRefused(keys, token, 'algorithm-not-allowed');
  });

  test('alg "None" / "NONE" spellings → algorithm-not-allowed', async () => {
    const { keys, kid } = await setup();
    for (const alg of ['None', 'NONE', 'nOnE']) {
      await assertRefused(keys, `${segment({ alg, typ: 'at+jwt', kid })}.${segment(validClaims())}.`, 'algorithm-not-allowed');
    }
  });

  test('HS256 signed with the public key as the HMAC secret (key confusion) → algorithm-not-allowed', async () => {
    const { keys, kid, stored } = await setup();
    const publicKey = createPublicKey({ key: stored.publicJwk as JsonWebKey, format: 'jwk' });
    const secrets = [
      publicKey.export({ format: 'pem', type: 'spki' }),
      publicKey.export({ format: 'der', type: 'spki' }),
      Buffer.from(stored.publicJwk.x!, 'base64url'),
      JSON.stringify(stored.publicJwk),
    ];
    for (const secret of secrets) {
      const signingInput = `${segment({ alg: 'HS256', typ: 'at+jwt', kid })}.${segment(validClaims())}`;
      const token = `${signingInput}.${createHmac('sha256', secret).update(signingInput).digest('base64url')}`;
      await assertRefused(keys, token, 'algorithm-not-allowed');
    }
  });

  test('the fully specified "Ed25519" alg is not on the allow-list either', async () => {
    const { keys, kid, privateKey } = await setup();
    await assertRefused(keys, craftEdDSA({ alg: 'Ed25519', typ: 'at+jwt', kid }, validClaims(), privateKey), 'algorithm-not-allowed');
  });

  test('wrong audience → wrong-audience', async () => {
    const { keys } = await setup();
    const issued = await issueAccessToken(keys, { ...subjectInput, audience: 'some-other-service', now: T0 });
    await assertRefused(keys, issued.token, 'wrong-audience');
  });

  test('wrong issuer → wrong-issuer', async () => {
    const { keys } = await setup();
    const issued = await issueAccessToken(keys, { ...subjectInput, issuer: 'https://evil.example.test', now: T0 });
    await assertRefused(keys, issued.token, 'wrong-issuer');
  });

  test('expired → expired, with at most 5 s of clock tolerance', async () => {
    const { keys } = await setup();
    const issued = await issueAccessToken(keys, { ...subjectInput, now: T0 });
    const justInside = new Date(T0.getTime() + (600 + 4) * 1000);
    await verifyAccessToken(keys, issued.token, { issuer: ISSUER, audience: AUDIENCE, now: justInside });
    await assertRefused(keys, issued.token, 'expired', new Date(T0.getTime() + (600 + 5) * 1000));
    await assertRefused(keys, issued.token, 'expired', new Date(T0.getTime() + 3600 * 1000));
  });

  test('a token minted with a long exp still dies 10 minutes after iat → expired', async () => {
    const { keys, kid, privateKey } = await setup();
    const token = craftEdDSA({ alg: 'EdDSA', typ: 'at+jwt', kid }, validClaims({ exp: T0_SECONDS + 86_400 }), privateKey);
    await assertRefused(keys, token, 'expired', new Date(T0.getTime() + 700_000));
  });

  test('tampered payload with the original signature → bad-signature', async () => {
    const { keys } = await setup();
    const issued = await issueAccessToken(keys, { ...subjectInput, now: T0 });
    const [header, payload, signature] = issued.token.split('.') as [string, string, string];
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
    claims.role = 'admin';
    await assertRefused(keys, `${header}.${segment(claims)}.${signature}`, 'bad-signature');
  });

  test('signature from another key under our kid → bad-signature', async () => {
    const { keys, kid } = await setup();
    const attackerKey = generateKeyPairSync('ed25519').privateKey;
    await assertRefused(keys, craftEdDSA({ alg: 'EdDSA', typ: 'at+jwt', kid }, validClaims(), attackerKey), 'bad-signature');
  });

  test('unknown kid → unknown-key', async () => {
    const { keys } = await setup();
    const attackerKey = generateKeyPairSync('ed25519').privateKey;
    await assertRefused(keys, craftEdDSA({ alg: 'EdDSA', typ: 'at+jwt', kid: 'not-a-kid-we-know' }, validClaims(), attackerKey), 'unknown-key');
  });

  test('no kid → malformed (every token we issue names its key)', async () => {
    const { keys, privateKey } = await setup();
    await assertRefused(keys, craftEdDSA({ alg: 'EdDSA', typ: 'at+jwt' }, validClaims(), privateKey), 'malformed');
  });

  test('typ JWT instead of at+jwt → wrong-type', async () => {
    const { keys, kid, privateKey } = await setup();
    await assertRefused(keys, craftEdDSA({ alg: 'EdDSA', typ: 'JWT', kid }, validClaims(), privateKey), 'wrong-type');
    await assertRefused(keys, craftEdDSA({ alg: 'EdDSA', kid }, validClaims(), privateKey), 'wrong-type');
  });

  test('RFC 9068 media type form application/at+jwt is accepted', async () => {
    const { keys, kid, privateKey } = await setup();
    await verifyAccessToken(keys, craftEdDSA({ alg: 'EdDSA', typ: 'application/at+jwt', kid }, validClaims(), privateKey), {
      issuer: ISSUER,
      audience: AUDIENCE,
      now: T0,
    });
  });

  test('missing sid → missing-claim', async () => {
    const { keys, kid, privateKey } = await setup();
    const { sid: _sid, ...withoutSid } = validClaims();
    await assertRefused(keys, craftEdDSA({ alg: 'EdDSA', typ: 'at+jwt', kid }, withoutSid, privateKey), 'missing-claim');
  });

  test('each other required claim missing → missing-claim', async () => {
    const { keys, kid, privateKey } = await setup();
    for (const claim of ['iss', 'aud', 'sub', 'role', 'tenant', 'jti', 'iat', 'exp', 'client_id']) {
      const claims: Record<string, unknown> = validClaims();
      delete claims[claim];
      await assertRefused(keys, craftEdDSA({ alg: 'EdDSA', typ: 'at+jwt', kid }, claims, privateKey), 'missing-claim');
    }
  });

  test('claims of the wrong type or an unknown role → malformed', async () => {
    const { keys, kid, privateKey } = await setup();
    for (const overrides of [{ sid: 42 }, { role: 'superuser' }, { tenant: 7 }, { iat: 'yesterday' }, { sub: '' }, { client_id: 3 }, { role: undefined, scope: 42 }]) {
      await assertRefused(keys, craftEdDSA({ alg: 'EdDSA', typ: 'at+jwt', kid }, validClaims(overrides), privateKey), 'malformed');
    }
  });

  test('a machine token carries scope and client_id instead of a role', async () => {
    const { keys } = await setup();
    const issued = await issueAccessToken(keys, { ...subjectInput, grant: { scopes: ['messages:send', 'conversations:read'], clientId: 'key-1' }, tenantId: 'tenant-1', now: T0 });
    assert.equal(decodeJwt(issued.token).scope, 'messages:send conversations:read');
    const claims = await verifyAccessToken(keys, issued.token, { issuer: ISSUER, audience: AUDIENCE, now: T0 });
    assert.equal(claims.role, null);
    assert.deepEqual(claims.scope, ['messages:send', 'conversations:read']);
    assert.equal(claims.client_id, 'key-1');
  });

  test('a token with both role and scope, or neither → missing-claim', async () => {
    const { keys, kid, privateKey } = await setup();
    await assertRefused(keys, craftEdDSA({ alg: 'EdDSA', typ: 'at+jwt', kid }, validClaims({ scope: 'metrics:read' }), privateKey), 'missing-claim');
    const { role: _role, ...neither } = validClaims();
    await assertRefused(keys, craftEdDSA({ alg: 'EdDSA', typ: 'at+jwt', kid }, neither, privateKey), 'missing-claim');
  });

  test('garbage → malformed', async () => {
    const { keys } = await setup();
    for (const token of ['', 'abc', 'a.b', 'a.b.c', '...', `${'a'.repeat(5000)}.b.c`, `${segment({ alg: 'EdDSA' })}.%%%.`]) {
      await assertRefused(keys, token, 'malformed');
    }
  });
});
