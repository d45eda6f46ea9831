import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { HOTP, Secret, TOTP, URI } from 'otpauth';
import {
  TotpSecretError,
  consumeTotpCode,
  createTotpEnrollment,
  verifyTotp,
  type TotpStepStore,
} from '../../src/identity/factors/totp/totp-codes.js';

const PERIOD_MS = 30_000;
// Mid-step, so ±1 step never crosses into a neighbour by rounding.
const NOW = 1_790_000_015_000;
const NOW_STEP = Math.floor(NOW / PERIOD_MS);

function codeAt(secretBase32: string, step: number): string {
  return HOTP.generate({ secret: Secret.fromBase32(secretBase32), counter: step, algorithm: 'SHA1', digits: 6 });
}

describe('TOTP enrollment', () => {
  test('a 20-byte random secret in a standard otpauth URI', () => {
    const { secretBase32, otpauthUri } = createTotpEnrollment({ issuer: 'Ciphergate', label: 'alice@example.com' });
    assert.equal(Secret.fromBase32(secretBase32).bytes.length, 20);
    const parsed = URI.parse(otpauthUri);
    assert.ok(parsed instanceof TOTP);
    assert.equal(parsed.issuer, 'Ciphergate');
    assert.equal(parsed.label, 'alice@example.com');
    assert.equal(parsed.algorithm, 'SHA1');
    assert.equal(parsed.digits, 6);
    assert.equal(parsed.period, 30);
    assert.equal(parsed.secret.base32, secretBase32);
    assert.notEqual(createTotpEnrollment({ label: 'a' }).secretBase32, secretBase32);
  });

  test('RFC 6238 appendix B vector (SHA-1, T = 59 s)', () => {
    const secret = Secret.fromLatin1('12345678901234567890').base32;
    // The RFC's 8-digit value is 94287082; the 6-digit code is its last six digits.
    assert.deepEqual(verifyTotp({ secretBase32: secret, code: '287082', lastUsedStep: null, now: 59_000 }), { ok: true, step: 1 });
  });
});

describe('TOTP verification', () => {
  const { secretBase32 } = createTotpEnrollment({ label: 'alice' });
  const verify = (code: string, lastUsedStep: number | null = null, now: number | Date = NOW) =>
    verifyTotp({ secretBase32, code, lastUsedStep, now });

  test('the code for now is accepted and reports its step', () => {
    assert.deepEqual(verify(codeAt(secretBase32, NOW_STEP)), { ok: true, step: NOW_STEP });
    assert.deepEqual(verify(codeAt(secretBase32, NOW_STEP), null, new Date(NOW)), { ok: true, step: NOW_STEP });
  });

  test('the previous and next steps are accepted', () => {
    assert.deepEqual(verify(codeAt(secretBase32, NOW_STEP - 1)), { ok: true, step: NOW_STEP - 1 });
    assert.deepEqual(verify(codeAt(secretBase32, NOW_STEP + 1)), { ok: true, step: NOW_STEP + 1 });
  });

  test('two steps away is refused', () => {
    assert.deepEqual(verify(codeAt(secretBase32, NOW_STEP - 2)), { ok: false, reason: 'wrong-code' });
    assert.deepEqual(verify(codeAt(secretBase32, NOW_STEP + 2)), { ok: false, reason: 'wrong-code' });
  });

  test('replaying the same code is refused', () => {
    const code = codeAt(secretBase32, NOW_STEP);
    const first = verify(code);
    assert.ok(first.ok);
    assert.deepEqual(verify(code, first.step), { ok: false, reason: 'replayed' });
    // Still refused 20 s later, while the code is inside the window.
    assert.deepEqual(verify(code, first.step, NOW + 20_000), { ok: false, reason: 'replayed' });
  });

  test('an older code after a newer one is refused as replayed', () => {
    assert.deepEqual(verify(codeAt(secretBase32, NOW_STEP - 1), NOW_STEP), { ok: false, reason: 'replayed' });
  });

  test('a later code is accepted after an earlier one', () => {
    const first = verify(codeAt(secretBase32, NOW_STEP - 1));
    assert.ok(first.ok);
    assert.deepEqual(verify(codeAt(secretBase32, NOW_STEP), first.step), { ok: true, step: NOW_STEP });
    assert.deepEqual(verify(codeAt(secretBase32, NOW_STEP + 1), NOW_STEP, NOW + PERIOD_MS), { ok: true, step: NOW_STEP + 1 });
  });

  test('a wrong code is refused', () => {
    const right = codeAt(secretBase32, NOW_STEP);
    const wrong = String((Number(right) + 1) % 1_000_000).padStart(6, '0');
    const neighbours = [NOW_STEP - 1, NOW_STEP + 1].map((step) => codeAt(secretBase32, step));
    if (!neighbours.includes(wrong)) assert.deepEqual(verify(wrong), { ok: false, reason: 'wrong-code' });
  });

  test('surrounding whitespace is trimmed', () => {
    assert.equal(verify(` ${codeAt(secretBase32, NOW_STEP)}\n`).ok, true);
  });

  test('anything but exactly six ASCII digits is malformed', () => {
    const code = codeAt(secretBase32, NOW_STEP);
    for (const input of ['12345', '1234567', 'abcdef', '', '      ', '123 456', '12345a', '１２３４５６', '٠١٢٣٤٥', code + '0', `${code.slice(0, 3)}-${code.slice(3)}`]) {
      assert.deepEqual(verify(input), { ok: false, reason: 'malformed' }, JSON.stringify(input));
    }
  });

  test('a corrupt stored secret throws a typed error, not a wrong code', () => {
    assert.throws(() => verifyTotp({ secretBase32: 'not base32!', code: '123456', lastUsedStep: null }), TotpSecretError);
    assert.throws(() => verifyTotp({ secretBase32: 'JBSWY3DP', code: '123456', lastUsedStep: null }), TotpSecretError);
  });
});

describe('consumeTotpCode: the replay guard under concurrency', () => {
  /** Behaves like the conditional UPDATE the database layer must run. */
  class MemoryStepStore implements TotpStepStore {
    lastUsedStep = new Map<string, number>();
    async advanceLastUsedStep(factorId: string, step: number) {
      const last = this.lastUsedStep.get(factorId);
      if (last !== undefined && last >= step) return false;
      this.lastUsedStep.set(factorId, step);
      return true;
    }
  }

  test('two requests with the same code read the same state; only one wins', async () => {
    const store = new MemoryStepStore();
    const { secretBase32 } = createTotpEnrollment({ label: 'alice' });
    const factor = { id: 'f1', secretBase32, lastUsedStep: null };
    const code = codeAt(secretBase32, NOW_STEP);
    const results = await Promise.all([consumeTotpCode(store, factor, code, NOW), consumeTotpCode(store, factor, code, NOW)]);
    assert.deepEqual(results.map((result) => result.ok).sort(), [false, true]);
    assert.ok(results.some((result) => !result.ok && result.reason === 'replayed'));
    assert.equal(store.lastUsedStep.get('f1'), NOW_STEP);
  });
});
