import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ACCESS_COOKIE } from '../../src/http/guard.js';
import { TokenError, verifyAccessToken } from '../../src/identity/tokens/access-tokens.js';
import { describeEachBackend } from '../helpers/database.js';
import { openIdentityHarness, type IdentityHarness } from '../helpers/identity.js';
import { assertUnauthenticated } from '../helpers/problems.js';

// jose decodes base64url leniently (on Node 20 through atob): `==` after the signature, or a
// last character whose unused bits are not zero, decode to the very same signature bytes. So
// one signed token had many spellings that all verified, and anything keyed on the token
// string (revocation or replay lists, log searches) could be sidestepped with another one.
// Every segment must be canonical base64url (RFC 7515 §2, RFC 4648 §3.5) or the token is refused.

const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** Spellings of `token` that decode to the same bytes as the original, segment by segment. */
function respellings(token: string): Array<{ label: string; token: string }> {
  const [header, payload, signature] = token.split('.') as [string, string, string];
  const last = signature.at(-1)!;
  // An Ed25519 signature is 64 bytes = 86 characters; the last carries 2 bits and 4 unused ones.
  const unusedBits = (6 * signature.length) % 8;
  const dirty = BASE64URL[BASE64URL.indexOf(last) | ((1 << unusedBits) - 1)]!;
  const withSignature = (replacement: string) => `${header}.${payload}.${replacement}`;
  return [
    { label: 'signature with "==" padding', token: withSignature(`${signature}==`) },
    { label: 'signature with "=" padding', token: withSignature(`${signature}=`) },
    { label: 'signature with non-zero unused bits', token: withSignature(`${signature.slice(0, -1)}${dirty}`) },
    { label: 'signature in padded standard base64', token: withSignature(Buffer.from(signature, 'base64url').toString('base64')) },
    { label: 'payload with "=" padding', token: `${header}.${payload}=.${signature}` },
    { label: 'header with "==" padding', token: `${header}==.${payload}.${signature}` },
  ];
}

await describeEachBackend('regression: a JWT must be canonical base64url', (backend) => {
  let h: IdentityHarness;
  before(async () => {
    h = await openIdentityHarness(backend);
  });
  after(() => h?.close());

  test('every respelling of a valid token decodes to the same bytes, and is refused: verify → malformed, HTTP → 401', async () => {
    const user = await h.createUser({ role: 'employee' });
    const { accessToken } = await h.signIn(user);
    const { issuer, audience } = h.identity.parts.settings;
    const verify = (token: string) => verifyAccessToken(h.identity.parts.signingKeys, token, { issuer, audience });
    await verify(accessToken);
    assert.equal((await h.request({ method: 'GET', url: '/api/v1/auth/sessions', token: accessToken })).statusCode, 200);

    for (const variant of respellings(accessToken)) {
      assert.notEqual(variant.token, accessToken, variant.label);
      // The attack is real only when the variant decodes to the same bytes as the original.
      const decoded = (value: string) => value.split('.').map((part) => Buffer.from(part, 'base64').toString('hex'));
      assert.deepEqual(decoded(variant.token), decoded(accessToken), `${variant.label}: same bytes`);

      await assert.rejects(verify(variant.token), (error: unknown) => error instanceof TokenError && error.reason === 'malformed', variant.label);
      assertUnauthenticated(await h.request({ method: 'GET', url: '/api/v1/auth/sessions', token: variant.token }), variant.token);
      const viaCookie = await h.request({ method: 'GET', url: '/api/v1/auth/sessions', cookies: { [ACCESS_COOKIE]: variant.token } });
      assert.equal(viaCookie.statusCode, 401, `${variant.label} as the access cookie: ${viaCookie.body}`);
    }

    // The original still works: refusing the respellings did not cost the real token anything.
    assert.equal((await h.request({ method: 'GET', url: '/api/v1/auth/sessions', token: accessToken })).statusCode, 200);
  });

  test('a tampered signature (other bytes) is still refused as before', async () => {
    const user = await h.createUser({ role: 'employee' });
    const { accessToken } = await h.signIn(user);
    const [header, payload, signature] = accessToken.split('.') as [string, string, string];
    const flipped = `${signature[0] === 'A' ? 'B' : 'A'}${signature.slice(1)}`;
    assertUnauthenticated(await h.request({ method: 'GET', url: '/api/v1/auth/sessions', token: `${header}.${payload}.${flipped}` }));
  });
});
