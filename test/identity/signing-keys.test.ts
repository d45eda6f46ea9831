import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { calculateJwkThumbprint } from 'jose';
import {
  InMemorySigningKeyStore,
  RETIRED_KEY_VERIFICATION_WINDOW_MS,
  SigningKeyIntegrityError,
  SigningKeys,
  generateSigningKey,
  type StoredSigningKey,
} from '../../src/identity/tokens/signing-keys.js';
import { TokenError, issueAccessToken, verifyAccessToken } from '../../src/identity/tokens/access-tokens.js';

const ISSUER = 'https://gateway.example.test';
const AUDIENCE = 'ciphergate-api';
const T0 = new Date('2026-03-01T12:00:00Z');
const tokenInput = { issuer: ISSUER, audience: AUDIENCE, subject: 'user-1', sessionId: 'session-1', grant: { role: 'admin' as const }, tenantId: null };

/** A clock the test moves by hand. */
function manualClock(start: Date) {
  let current = start.getTime();
  return {
    now: () => new Date(current),
    advance(ms: number) {
      current += ms;
    },
  };
}

const seconds = (count: number) => count * 1000;

describe('SigningKeys.open', () => {
  test('creates the first key in an empty store, and reuses it afterwards', async () => {
    const store = new InMemorySigningKeyStore();
    const first = await SigningKeys.open(store, { now: () => T0 });
    assert.equal((await store.list()).length, 1);
    const again = await SigningKeys.open(store, { now: () => T0 });
    assert.equal((await store.list()).length, 1);
    assert.equal(again.current().kid, first.current().kid);
  });

  test('the kid is the RFC 7638 thumbprint of the public key', async () => {
    const store = new InMemorySigningKeyStore();
    const keys = await SigningKeys.open(store, { now: () => T0 });
    const [stored] = await store.list();
    assert.equal(keys.current().kid, await calculateJwkThumbprint({ kty: 'OKP', crv: 'Ed25519', x: stored!.publicJwk.x! }, 'sha256'));
    assert.equal(stored!.publicJwk.crv, 'Ed25519');
  });

  test('hands the store a private JWK to seal, and keeps d out of the public one', async () => {
    const store = new InMemorySigningKeyStore();
    await SigningKeys.open(store, { now: () => T0 });
    const [stored] = await store.list();
    assert.equal(typeof stored!.privateJwk.d, 'string');
    assert.equal(stored!.publicJwk.d, undefined);
  });
});

describe('jwks', () => {
  test('publishes public members only, with kid, alg EdDSA and use sig', async () => {
    const keys = await SigningKeys.open(new InMemorySigningKeyStore(), { now: () => T0 });
    const jwks = keys.jwks();
    assert.equal(jwks.keys.length, 1);
    const [jwk] = jwks.keys;
    assert.deepEqual(Object.keys(jwk!).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x']);
    assert.equal(jwk!.alg, 'EdDSA');
    assert.equal(jwk!.use, 'sig');
    assert.equal(jwk!.kid, keys.current().kid);
    assert.doesNotMatch(JSON.stringify(jwks), /"d"/);
  });

  test('never contains d, even when the store put private members into publicJwk', async () => {
    const store = new InMemorySigningKeyStore();
    const leaky = await generateSigningKey(T0);
    await store.insert({ ...leaky, publicJwk: { ...leaky.publicJwk, d: leaky.privateJwk.d! } });
    const keys = await SigningKeys.open(store, { now: () => T0 });
    assert.doesNotMatch(JSON.stringify(keys.jwks()), /"d"/);
  });
});

describe('rotation', () => {
  test('the new key signs; the old one verifies during its window, then leaves verification and the JWKS', async () => {
    const clock = manualClock(T0);
    const keys = await SigningKeys.open(new InMemorySigningKeyStore(), { now: clock.now });
    const oldKid = keys.current().kid;
    const oldToken = await issueAccessToken(keys, { ...tokenInput, now: clock.now() });

    clock.advance(seconds(30));
    const rotatedAt = clock.now();
    const newKid = (await keys.rotate()).kid;
    assert.notEqual(newKid, oldKid);
    assert.equal(keys.current().kid, newKid);

    const newToken = await issueAccessToken(keys, { ...tokenInput, now: clock.now() });
    assert.equal(JSON.parse(Buffer.from(newToken.token.split('.')[0]!, 'base64url').toString()).kid, newKid);

    // Right after rotation both verify and both are published, newest first.
    await verifyAccessToken(keys, oldToken.token, { issuer: ISSUER, audience: AUDIENCE, now: clock.now() });
    await verifyAccessToken(keys, newToken.token, { issuer: ISSUER, audience: AUDIENCE, now: clock.now() });
    assert.deepEqual(keys.jwks().keys.map((key) => key.kid), [newKid, oldKid]);

    // Last moment of the window: still published.
    const lastMoment = new Date(rotatedAt.getTime() + RETIRED_KEY_VERIFICATION_WINDOW_MS - 1);
    assert.deepEqual(keys.jwks(lastMoment).keys.map((key) => key.kid), [newKid, oldKid]);

    // After the window: the old key is gone from both.
    clock.advance(RETIRED_KEY_VERIFICATION_WINDOW_MS);
    assert.deepEqual(keys.jwks().keys.map((key) => key.kid), [newKid]);
    assert.equal(await keys.verificationKey(oldKid), undefined);
    await assert.rejects(
      verifyAccessToken(keys, oldToken.token, { issuer: ISSUER, audience: AUDIENCE, now: clock.now() }),
      (error: unknown) => error instanceof TokenError && error.reason === 'unknown-key',
    );
    assert.doesNotMatch(JSON.stringify(keys.jwks()), /"d"/);
  });

  test('the window is the token lifetime plus clock tolerance plus the reload interval, so no still-valid token loses its key', async () => {
    assert.equal(RETIRED_KEY_VERIFICATION_WINDOW_MS, (600 + 5 + 10) * 1000);
    const clock = manualClock(T0);
    const keys = await SigningKeys.open(new InMemorySigningKeyStore(), { now: clock.now });
    // Issued at the last instant before rotation: valid until +600 s, +5 s tolerance.
    const token = await issueAccessToken(keys, { ...tokenInput, now: clock.now() });
    await keys.rotate();
    clock.advance(seconds(604));
    await verifyAccessToken(keys, token.token, { issuer: ISSUER, audience: AUDIENCE, now: clock.now() });
  });

  test('retires in the store, and a reopened instance sees the same current key', async () => {
    const clock = manualClock(T0);
    const store = new InMemorySigningKeyStore();
    const keys = await SigningKeys.open(store, { now: clock.now });
    const oldKid = keys.current().kid;
    clock.advance(seconds(10));
    const newKid = (await keys.rotate()).kid;

    const rows = await store.list();
    assert.deepEqual(rows.find((row) => row.kid === oldKid)!.retiredAt, clock.now());
    assert.equal(rows.find((row) => row.kid === newKid)!.retiredAt, null);
    assert.equal((await SigningKeys.open(store, { now: clock.now })).current().kid, newKid);
  });

  test('another instance verifies a key rotated in elsewhere after reloading on the unknown kid', async () => {
    const clock = manualClock(T0);
    const store = new InMemorySigningKeyStore();
    const instanceA = await SigningKeys.open(store, { now: clock.now });
    const instanceB = await SigningKeys.open(store, { now: clock.now });
    clock.advance(seconds(60));
    await instanceA.rotate();
    const token = await issueAccessToken(instanceA, { ...tokenInput, now: clock.now() });
    const claims = await verifyAccessToken(instanceB, token.token, { issuer: ISSUER, audience: AUDIENCE, now: clock.now() });
    assert.equal(claims.sub, 'user-1');
  });

  test('unknown kids reload the store at most once per interval', async () => {
    const clock = manualClock(T0);
    const store = new CountingStore();
    const keys = await SigningKeys.open(store, { now: clock.now });
    const before = store.listCalls;
    clock.advance(seconds(60));
    for (let attempt = 0; attempt < 50; attempt += 1) assert.equal(await keys.verificationKey(`garbage-${attempt}`), undefined);
    assert.equal(store.listCalls - before, 1);
  });

  test('after two instances rotate at once, the newest key signs and rotate() retires every other', async () => {
    const clock = manualClock(T0);
    const store = new InMemorySigningKeyStore();
    await SigningKeys.open(store, { now: clock.now });
    clock.advance(seconds(1));
    await store.insert(await generateSigningKey(clock.now()));
    clock.advance(seconds(1));
    const newest = await generateSigningKey(clock.now());
    await store.insert(newest);
    const keys = await SigningKeys.open(store, { now: clock.now });
    assert.equal(keys.current().kid, newest.kid);

    clock.advance(seconds(1));
    const rotated = await keys.rotate();
    const active = (await store.list()).filter((row) => row.retiredAt === null);
    assert.deepEqual(active.map((row) => row.kid), [rotated.kid]);
  });
});

describe('integrity of stored keys', () => {
  test('a public key swapped in the clear column is refused, so it cannot verify forged tokens', async () => {
    const store = new InMemorySigningKeyStore();
    const genuine = await generateSigningKey(T0);
    const attacker = await generateSigningKey(T0);
    await store.insert({ ...genuine, publicJwk: attacker.publicJwk });
    await assert.rejects(SigningKeys.open(store, { now: () => T0 }), SigningKeyIntegrityError);
  });

  test('a kid that is not the thumbprint of the key is refused', async () => {
    const store = new InMemorySigningKeyStore();
    const genuine = await generateSigningKey(T0);
    await store.insert({ ...genuine, kid: 'chosen-by-attacker' });
    await assert.rejects(SigningKeys.open(store, { now: () => T0 }), SigningKeyIntegrityError);
  });
});

class CountingStore extends InMemorySigningKeyStore {
  listCalls = 0;
  override async list(): Promise<StoredSigningKey[]> {
    this.listCalls += 1;
    return super.list();
  }
}
