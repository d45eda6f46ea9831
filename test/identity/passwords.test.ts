import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { dictionary } from '@zxcvbn-ts/language-common';
import { isCommonPassword } from '../../src/identity/passwords/common-passwords.js';
import {
  PasswordPolicyError,
  checkPasswordPolicy,
  hashPassword,
  needsRehash,
  verifyAgainstDummy,
  verifyPassword,
} from '../../src/identity/passwords/passwords.js';

const GOOD = 'correct horse battery staple';

/** `$argon2id$v=19$m=19456,t=2,p=1$salt$hash` → its parts. */
function parsePhc(phc: string) {
  const [empty, algorithm, version, params, salt, digest, ...rest] = phc.split('$');
  assert.equal(empty, '');
  assert.equal(rest.length, 0);
  const parameters = Object.fromEntries((params ?? '').split(',').map((pair) => pair.split('=') as [string, string]));
  return { algorithm, version, parameters, salt: salt ?? '', digest: digest ?? '' };
}

describe('password hashing', () => {
  test('round trip, as a PHC string with the OWASP argon2id parameters', async () => {
    const phc = await hashPassword(GOOD);
    const parsed = parsePhc(phc);
    assert.equal(parsed.algorithm, 'argon2id');
    assert.equal(parsed.version, 'v=19');
    assert.deepEqual(parsed.parameters, { m: '19456', t: '2', p: '1' });
    assert.ok(Buffer.from(parsed.salt, 'base64').length >= 16);
    assert.equal(Buffer.from(parsed.digest, 'base64').length, 32);
    assert.ok(!phc.includes(GOOD));
    assert.equal(await verifyPassword(phc, GOOD), true);
    assert.equal(needsRehash(phc), false);
  });

  test('each hash has its own salt', async () => {
    assert.notEqual(await hashPassword(GOOD), await hashPassword(GOOD));
  });

  test('a wrong password is false', async () => {
    const phc = await hashPassword(GOOD);
    assert.equal(await verifyPassword(phc, 'correct horse battery stapler'), false);
    assert.equal(await verifyPassword(phc, ''), false);
  });

  test('a malformed hash is false, never a throw', async () => {
    for (const phc of ['', 'garbage', '$argon2id$v=19$m=19456,t=2,p=1$$', '$2b$10$abcdefghijklmnopqrstuv', '$argon2id$v=19$m=x']) {
      assert.equal(await verifyPassword(phc, GOOD), false, phc);
    }
  });

  test('NFKC: composed, decomposed and compatibility forms are the same password', async () => {
    const composed = 'caf\u00e9 au lait \uff21\uff22\uff23'; // é, full-width ABC
    const decomposed = 'cafe\u0301 au lait ABC';
    assert.notEqual(composed, decomposed);
    const phc = await hashPassword(composed);
    assert.equal(await verifyPassword(phc, decomposed), true);
    assert.equal(await verifyPassword(await hashPassword('\ufb01sh and chips!'), 'fish and chips!'), true); // ﬁ ligature
  });

  test('oversized input is refused without hashing', async () => {
    const phc = await hashPassword(GOOD);
    assert.equal(await verifyPassword(phc, 'a'.repeat(1_000_000)), false);
  });

  test('needsRehash: weaker parameters, other variants and unreadable hashes', async () => {
    const { hash } = await import('@node-rs/argon2');
    assert.equal(needsRehash(await hash(GOOD, { algorithm: 2, memoryCost: 8192, timeCost: 2, parallelism: 1 })), true);
    assert.equal(needsRehash(await hash(GOOD, { algorithm: 2, memoryCost: 19456, timeCost: 1, parallelism: 1 })), true);
    assert.equal(needsRehash(await hash(GOOD, { algorithm: 1, memoryCost: 19456, timeCost: 2, parallelism: 1 })), true);
    assert.equal(needsRehash(await hash(GOOD, { algorithm: 2, memoryCost: 65536, timeCost: 3, parallelism: 1 })), false);
    assert.equal(needsRehash('garbage'), true);
  });
});

describe('password policy', () => {
  const rule = (plain: string, email?: string) => {
    const result = checkPasswordPolicy(plain, email === undefined ? {} : { email });
    return result.ok ? 'ok' : result.rule;
  };

  test('length is 12 to 128 code points', () => {
    assert.equal(rule('x7Kp2mQ9vLz'), 'too-short'); // 11
    assert.equal(rule('x7Kp2mQ9vLzR'), 'ok'); // 12
    assert.equal(rule('x7Kp'.repeat(32)), 'ok'); // 128
    assert.equal(rule('x7Kp'.repeat(32) + 'a'), 'too-long'); // 129
    assert.equal(rule(''), 'too-short');
  });

  test('an emoji is one character, not two UTF-16 units', () => {
    const emoji = '\u{1F510}';
    assert.equal(emoji.length, 2);
    assert.equal(rule('x7Kp2mQ9vL' + emoji), 'too-short'); // 11 code points, 12 units
    assert.equal(rule('x7Kp2mQ9vLz' + emoji), 'ok'); // 12
    assert.equal(rule('x7Kp'.repeat(31) + 'abc' + emoji), 'ok'); // 128 code points, 129 units
    assert.equal(rule(emoji.repeat(64)), 'ok'); // 64 code points, 128 units
    assert.equal(rule(emoji.repeat(129)), 'too-long');
  });

  test('length is counted after NFKC', () => {
    // U+FDFA expands to 18 code points under NFKC.
    assert.equal(rule('\ufdfa'), 'ok');
  });

  test('common passwords are refused, case-insensitively', () => {
    const list = dictionary['passwords-common'];
    const long = list.filter((entry) => [...entry].length >= 12);
    for (const entry of ['password1234', 'qwerty123456', 'leavemealone', ...long.slice(0, 20)]) {
      assert.ok(list.includes(entry), `${entry} is in the shipped list`);
      assert.equal(rule(entry), 'common', entry);
    }
    assert.equal(rule('PassWord1234'), 'common');
    assert.equal(rule('LEAVEMEALONE'), 'common');
    assert.equal(isCommonPassword('x7Kp2mQ9vLzR'), false);
  });

  test('the email local part, alone or inside, is refused', () => {
    assert.equal(rule('jonathan.smith', 'jonathan.smith@example.com'), 'contains-email');
    assert.equal(rule('Jonathan.Smith', 'jonathan.smith@example.com'), 'contains-email');
    assert.equal(rule('my jonathan.smith pw', 'jonathan.smith@example.com'), 'contains-email');
    assert.equal(rule('jonathan.smith@example.com', 'jonathan.smith@example.com'), 'contains-email');
    assert.equal(rule('secret alice thing', 'alice+shop@example.com'), 'contains-email');
    assert.equal(rule('x7Kp2mQ9vLzR', 'jonathan.smith@example.com'), 'ok');
    // A one-letter local part would otherwise forbid every password containing that letter.
    assert.equal(rule('a quiet afternoon', 'a@example.com'), 'ok');
  });

  test('messages never echo the password or the email', () => {
    const cases: Array<[string, string | undefined]> = [
      ['short', undefined],
      ['x'.repeat(200), undefined],
      ['password1234', undefined],
      ['jonathan.smith!!', 'jonathan.smith@example.com'],
    ];
    for (const [plain, email] of cases) {
      const result = checkPasswordPolicy(plain, email === undefined ? {} : { email });
      assert.equal(result.ok, false);
      if (result.ok) continue;
      assert.ok(!result.message.includes(plain));
      assert.ok(!result.message.toLowerCase().includes('jonathan'));
      const error = new PasswordPolicyError(result.rule, result.message);
      assert.equal(error.rule, result.rule);
      assert.equal(error.name, 'PasswordPolicyError');
    }
  });
});

describe('no user-enumeration timing oracle', () => {
  test('verifyAgainstDummy costs about what a wrong-password verify costs', async () => {
    const phc = await hashPassword(GOOD);
    // Warm both paths (the dummy hash is being made at import; the worker pool spins up).
    await verifyPassword(phc, 'warm-up password');
    await verifyAgainstDummy('warm-up password');

    const timed = async (fn: () => Promise<boolean>) => {
      const start = process.hrtime.bigint();
      const result = await fn();
      assert.equal(result, false);
      return Number(process.hrtime.bigint() - start) / 1e6;
    };
    const wrong: number[] = [];
    const unknown: number[] = [];
    // Interleaved, so a burst of load from elsewhere lands on both sides.
    for (let i = 0; i < 5; i++) {
      wrong.push(await timed(() => verifyPassword(phc, `wrong password ${i}`)));
      unknown.push(await timed(() => verifyAgainstDummy(`wrong password ${i}`)));
    }
    const ratio = median(unknown) / median(wrong);
    assert.ok(ratio >= 0.5 && ratio <= 2, `dummy/wrong = ${ratio.toFixed(2)} (${median(unknown).toFixed(1)} ms vs ${median(wrong).toFixed(1)} ms)`);
  });

  test('verifyAgainstDummy never accepts anything', async () => {
    assert.equal(await verifyAgainstDummy(''), false);
    assert.equal(await verifyAgainstDummy(GOOD), false);
  });
});

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}
