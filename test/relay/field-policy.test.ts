import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  FieldPolicyError,
  maskName,
  maskPhone,
  maskText,
  presentField,
  type FieldPolicy,
  type PresentedFieldKind,
} from '../../src/relay/field-policy.js';

const KINDS: PresentedFieldKind[] = ['phone', 'name', 'body', 'aiReply'];
const SAMPLES: Record<PresentedFieldKind, string> = {
  phone: '+14155554567',
  name: 'Maria Lopez',
  body: 'My card is 4111111111111111, call 415 555 4567',
  aiReply: 'Thanks Maria, we will call you at 415 555 4567.',
};

describe('presentField: plain', () => {
  test('the value as it is, null stays null', () => {
    for (const kind of KINDS) {
      assert.equal(presentField(kind, SAMPLES[kind], 'plain', 'msg_1'), SAMPLES[kind]);
      assert.equal(presentField(kind, null, 'plain', 'msg_1'), null);
    }
  });
});

describe('presentField: omitted', () => {
  test('undefined for every kind and value, so the field is left out of the write', () => {
    for (const kind of KINDS) {
      assert.equal(presentField(kind, SAMPLES[kind], 'omitted', 'msg_1'), undefined);
      assert.equal(presentField(kind, null, 'omitted', 'msg_1'), undefined);
    }
  });
});

describe('presentField: sealed', () => {
  test('a reference only, never the value', () => {
    for (const kind of KINDS) {
      const shown = presentField(kind, SAMPLES[kind], 'sealed', 'msg_01HV3K9Z');
      assert.equal(shown, 'sealed:msg_01HV3K9Z');
    }
    assert.equal(presentField('phone', '+14155554567', 'sealed', 'conv:42'), 'sealed:conv:42');
  });

  test('null stays null: there is nothing sealed to point at', () => {
    assert.equal(presentField('body', null, 'sealed', 'msg_1'), null);
  });

  test('a reference that is not an opaque id is refused, without echoing it or the value', () => {
    for (const reference of ['', ' msg_1', 'msg 1', '+14155554567', 'maria@example.com', 'a'.repeat(129), '_msg', 'msg/1']) {
      assert.throws(
        () => presentField('body', SAMPLES.body, 'sealed', reference),
        (error: unknown) =>
          error instanceof FieldPolicyError &&
          (reference.length < 3 || !error.message.includes(reference)) &&
          !error.message.includes(SAMPLES.body),
        JSON.stringify(reference),
      );
    }
  });
});

describe('presentField: masked phone', () => {
  test('country calling code, one bullet per hidden digit, last four digits', () => {
    assert.equal(presentField('phone', '+14155554567', 'masked', 'msg_1'), '+1••••••4567');
    assert.equal(presentField('phone', '+442079460958', 'masked', 'msg_1'), '+44••••••0958');
    assert.equal(presentField('phone', '+33612345678', 'masked', 'msg_1'), '+33•••••5678');
  });

  test('a national number is read as US, as the blind index does', () => {
    assert.equal(maskPhone('(415) 555-4567'), '+1••••••4567');
  });

  test('short numbers never show more than half their digits', () => {
    assert.equal(maskPhone('+1911'), '+1••1');
    assert.equal(maskPhone('+1 12345678'), '+1••••5678');
    assert.equal(maskPhone('+1 123456'), '+1•••456');
  });

  test('something that is not a phone number shows nothing of itself', () => {
    for (const value of ['', 'call me maybe', 'ext 4567', '4567 is my pin']) {
      assert.equal(maskPhone(value), '••••••', value);
    }
  });

  test('null stays null', () => {
    assert.equal(presentField('phone', null, 'masked', 'msg_1'), null);
  });
});

describe('presentField: masked name', () => {
  test('initials', () => {
    assert.equal(presentField('name', 'Maria Lopez', 'masked', 'c_1'), 'M. L.');
    assert.equal(maskName('maria'), 'M.');
    assert.equal(maskName('  José   de la Cruz '), 'J. D. L. C.');
    assert.equal(maskName('Ølaf "Ole" Ås'), 'Ø. O. Å.');
    assert.equal(maskName('(Jr.) Smith'), 'J. S.');
  });

  test('no letters at all: one bullet', () => {
    assert.equal(maskName(''), '•');
    assert.equal(maskName('42 🙂'), '•');
  });
});

describe('presentField: masked body and aiReply', () => {
  test('only the length, in characters', () => {
    assert.equal(presentField('body', 'hello there', 'masked', 'msg_1'), '[11 chars]');
    assert.equal(presentField('aiReply', 'Thanks!', 'masked', 'msg_1'), '[7 chars]');
    assert.equal(maskText(''), '[0 chars]');
    assert.equal(maskText('🙂'), '[1 char]');
    assert.equal(maskText('é'.normalize('NFC')), '[1 char]');
  });

  test('no word, digit run or name of the text reaches the masked form', () => {
    for (const kind of ['body', 'aiReply'] as const) {
      const shown = presentField(kind, SAMPLES[kind], 'masked', 'msg_1')!;
      for (const word of SAMPLES[kind].split(/\W+/).filter((w) => w.length >= 2)) {
        assert.ok(!shown.includes(word), `${word} leaked from ${kind}`);
      }
    }
  });
});

describe('presentField: bad configuration', () => {
  test('an unknown policy (tenant.json is read at run time) is refused, never shown plain', () => {
    for (const policy of ['Plain', 'mask', '', 'redacted']) {
      assert.throws(
        () => presentField('body', SAMPLES.body, policy as FieldPolicy, 'msg_1'),
        (error: unknown) => error instanceof FieldPolicyError && !error.message.includes(SAMPLES.body),
      );
    }
  });

  test('an unknown kind under masked is refused', () => {
    assert.throws(() => presentField('email' as PresentedFieldKind, 'a@example.com', 'masked', 'msg_1'), FieldPolicyError);
  });
});
