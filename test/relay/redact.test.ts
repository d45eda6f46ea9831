import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { passesLuhn, redactTexts, restorePlaceholders } from '../../src/relay/redact.js';

/** Appends the Luhn check digit, so tests can make valid card numbers of any length. */
function withLuhnDigit(payload: string): string {
  for (let d = 0; d <= 9; d++) {
    if (passesLuhn(payload + d)) return payload + d;
  }
  throw new Error('unreachable');
}

function redactOne(text: string, options: Parameters<typeof redactTexts>[1] = {}) {
  const redaction = redactTexts([text], options);
  return { text: redaction.text[0]!, placeholders: redaction.placeholders };
}

describe('redactTexts: phone numbers', () => {
  test('one number written two ways gets one placeholder across the whole history', () => {
    const r = redactTexts(['call me at (415) 555-2671', 'or text +14155552671', 'my wife: 415.555.0100'], {});
    assert.deepEqual(r.text, ['call me at [PHONE_1]', 'or text [PHONE_1]', 'my wife: [PHONE_2]']);
    assert.equal(r.placeholders.get('[PHONE_1]'), '(415) 555-2671');
    assert.equal(r.placeholders.get('[PHONE_2]'), '415.555.0100');
  });

  test('international numbers are found whatever the default country', () => {
    const r = redactOne('in London: +44 20 7946 0958, in Paris +33 6 12 34 56 78');
    assert.equal(r.text, 'in London: [PHONE_1], in Paris [PHONE_2]');
  });

  test('defaultCountry decides how national numbers are read', () => {
    assert.equal(redactOne('ring 020 7946 0958', { defaultCountry: 'GB' }).text, 'ring [PHONE_1]');
    // Under the US default the same digits are not a valid number, so they stay: the
    // caller passes the tenant's country.
    assert.equal(redactOne('ring 020 7946 0958').text, 'ring 020 7946 0958');
  });

  test('an extension is part of the redacted span and of the identity', () => {
    const r = redactOne('office (213) 373-4253 ext. 1234, direct (213) 373-4253');
    assert.equal(r.text, 'office [PHONE_1], direct [PHONE_2]');
    assert.equal(r.placeholders.get('[PHONE_1]'), '(213) 373-4253 ext. 1234');
  });
});

describe('redactTexts: e-mail addresses', () => {
  test('compared lower-cased; the sentence-ending full stop is not part of the address', () => {
    const r = redactTexts(['mail Maria.Lopez@Example.com.', 'or maria.lopez@example.COM', 'cc bob+shop@mail.example.org'], {});
    assert.deepEqual(r.text, ['mail [EMAIL_1].', 'or [EMAIL_1]', 'cc [EMAIL_2]']);
    assert.equal(r.placeholders.get('[EMAIL_1]'), 'Maria.Lopez@Example.com');
  });

  test('internationalised addresses', () => {
    assert.equal(redactOne('write to josé@correo.example.es').text, 'write to [EMAIL_1]');
  });

  test('digits and names inside an address do not become a phone or a name', () => {
    const r = redactOne('4155552671@txt.example.com and maria@example.com', { knownNames: ['Maria'] });
    assert.equal(r.text, '[EMAIL_1] and [EMAIL_2]');
    assert.deepEqual([...r.placeholders.keys()], ['[EMAIL_1]', '[EMAIL_2]']);
  });
});

describe('redactTexts: payment cards', () => {
  test('Luhn-valid numbers of 13 to 19 digits, with spaces, dashes or nothing between groups', () => {
    const thirteen = withLuhnDigit('422222222222');
    const nineteen = withLuhnDigit('601100099013942412');
    const r = redactTexts(
      [
        'visa 4111 1111 1111 1111',
        'mc 5555-5555-5555-4444',
        'amex 3782 822463 10005',
        `old visa ${thirteen}`,
        `long ${nineteen}`,
        'again 4111111111111111',
      ],
      {},
    );
    assert.deepEqual(r.text, [
      'visa [CARD_1]',
      'mc [CARD_2]',
      'amex [CARD_3]',
      'old visa [CARD_4]',
      'long [CARD_5]',
      'again [CARD_1]',
    ]);
  });

  test('Luhn failures, too short and too long numbers are left alone (order numbers, references)', () => {
    const twelve = withLuhnDigit('42222222222');
    const twenty = withLuhnDigit('4111111111111111000');
    for (const text of [
      'card 4111 1111 1111 1112',
      'order #1234567890123 shipped',
      'order 1234-5678-9012-3456',
      `ref ${twelve}`,
      `tracking ${twenty}`,
    ]) {
      const r = redactOne(text);
      assert.equal(r.text, text, text);
      assert.equal(r.placeholders.size, 0, text);
    }
  });

  test('a card followed by an expiry year or a CVV is still found', () => {
    assert.equal(redactOne('4111 1111 1111 1111 2027 thanks').text, '[CARD_1] 2027 thanks');
    assert.match(redactOne('4111 1111 1111 1111 123').text, /^\[CARD_1\]( 123)?$/);
  });

  test('no overlap: a card number is never also a phone number', () => {
    for (const card of ['4111111111111111', '5555 5555 5555 4444', '3782-822463-10005', '6011 1111 1111 1117']) {
      const r = redactOne(`pay with ${card} please`);
      assert.equal(r.text, 'pay with [CARD_1] please');
      assert.deepEqual([...r.placeholders.keys()], ['[CARD_1]']);
    }
  });

  test('passesLuhn', () => {
    assert.equal(passesLuhn('4111111111111111'), true);
    assert.equal(passesLuhn('79927398713'), true);
    assert.equal(passesLuhn('79927398710'), false);
    assert.equal(passesLuhn('4111111111111112'), false);
  });
});

describe('redactTexts: street addresses', () => {
  test('number, street, suffix, with unit, city, state and ZIP when present', () => {
    const cases: Array<[string, string]> = [
      ['I live at 123 Main St, Springfield, IL 62704 ok?', '123 Main St, Springfield, IL 62704'],
      ['ship to 4500 W 45th Street Apt 4B, New York, NY 10036-1234 please', '4500 W 45th Street Apt 4B, New York, NY 10036-1234'],
      ['1600 Pennsylvania Avenue NW, Washington, DC 20500', '1600 Pennsylvania Avenue NW, Washington, DC 20500'],
      ['meet at 12 Oak Park Dr. Then call', '12 Oak Park Dr.'],
      ['it is 77 sunset blvd #12 in the back', '77 sunset blvd #12'],
      ['deliver to 9 Elm Ln Suite 200 Austin TX', '9 Elm Ln Suite 200 Austin TX'],
      ['9 Elm Ln apt B, Reno, NV', '9 Elm Ln apt B, Reno, NV'],
      ['mail PO Box 1234, Austin, TX 78701 thanks', 'PO Box 1234, Austin, TX 78701'],
      ['5 Lakeview Ct 90210', '5 Lakeview Ct 90210'],
    ];
    for (const [text, address] of cases) {
      const r = redactOne(text);
      assert.equal(r.text, text.replace(address, '[ADDRESS_1]'), text);
      assert.equal(r.placeholders.get('[ADDRESS_1]'), address, text);
    }
  });

  test('the same address in two texts, spelled with different case and commas, is one placeholder', () => {
    const r = redactTexts(['at 123 Main St, Springfield IL', 'yes 123 main st springfield? no'], {});
    assert.equal(r.text[0], 'at [ADDRESS_1]');
    assert.equal(r.text[1], 'yes [ADDRESS_2] springfield? no');
    assert.equal(r.placeholders.get('[ADDRESS_2]'), '123 main st');
  });

  test('ordinary sentences with numbers are not addresses', () => {
    for (const text of [
      'walk 3 blocks down the road',
      'I have 2 dogs and 1 cat',
      'see you at 5 on the street',
      'we need 10 more days',
      'it costs 40 dollars',
    ]) {
      assert.equal(redactOne(text).text, text, text);
    }
  });

  test('a sentence after the address is not taken as its city', () => {
    assert.equal(redactOne('123 Main St. Then I went home').text, '[ADDRESS_1] Then I went home');
    assert.equal(redactOne('at 123 Main St apartment is nice').text, 'at [ADDRESS_1] apartment is nice');
  });

  test('documented limits: no suffix, suffix first, non-US layouts stay as written', () => {
    for (const text of ['350 Broadway', '1211 Avenue of the Americas', 'Hauptstraße 5, Berlin']) {
      assert.equal(redactOne(text).text, text, text);
    }
  });
});

describe('redactTexts: known names', () => {
  test('full name, then each word of three letters or more, whole words, any case', () => {
    const r = redactTexts(['Maria Lopez here', 'maria says hi', 'LOPEZ family', 'Mariana is my sister, Lopezville too'], {
      knownNames: ['Maria Lopez'],
    });
    assert.deepEqual(r.text, ['[NAME_1] here', '[NAME_2] says hi', '[NAME_3] family', 'Mariana is my sister, Lopezville too']);
    assert.equal(r.placeholders.get('[NAME_1]'), 'Maria Lopez');
  });

  test('the full name across a line break or several spaces is still one placeholder', () => {
    assert.equal(redactOne('Maria \n Lopez', { knownNames: ['Maria Lopez'] }).text, '[NAME_1]');
  });

  test('words shorter than three letters are not redacted on their own', () => {
    const r = redactOne('Al and Li, or Al Li, or Alberto', { knownNames: ['Al Li', 'Bo'] });
    assert.equal(r.text, 'Al and Li, or [NAME_1], or Alberto');
  });

  test('names with regular-expression characters and accents', () => {
    const r = redactOne('Hi Seán O’Brien-Smith (Jr.), and O’Brien-Smith again', { knownNames: ['Seán O’Brien-Smith (Jr.)'] });
    assert.equal(r.text, 'Hi [NAME_1], and [NAME_2] again');
    assert.equal(redactOne('Smith? OBrien? Seán.', { knownNames: ['Seán O’Brien-Smith (Jr.)'] }).text, '[NAME_1]? OBrien? [NAME_2].');
  });

  test('decomposed accents in the text match a composed known name (NFC)', () => {
    assert.equal(redactOne('Jose\u0301 called', { knownNames: ['Jos\u00e9'] }).text, '[NAME_1] called');
  });

  test('a name that is also a placeholder word does not break placeholders', () => {
    const r = redactOne('Card Phone: 4111 1111 1111 1111, 415 555 2671; card and phone', { knownNames: ['Card Phone'] });
    assert.equal(r.text, '[NAME_1]: [CARD_1], [PHONE_1]; [NAME_2] and [NAME_3]');
  });

  test('an address containing the name stays one address', () => {
    assert.equal(redactOne('12 Lopez St', { knownNames: ['Maria Lopez'] }).text, '[ADDRESS_1]');
  });

  test('no known names, empty names', () => {
    assert.equal(redactOne('Maria').text, 'Maria');
    assert.equal(redactOne('Maria', { knownNames: ['', '   '] }).text, 'Maria');
  });
});

describe('redactTexts: placeholders that collide with user text', () => {
  test('without look-alikes in the input, placeholders are the plain [KIND_n] form', () => {
    assert.equal(redactOne('call 415 555 2671').text, 'call [PHONE_1]');
  });

  test('input containing a placeholder look-alike switches this call to a salted form', () => {
    const r = redactTexts(['the form said [PHONE_1]', 'my number is 415 555 2671'], {});
    assert.equal(r.text[0], 'the form said [PHONE_1]');
    const token = r.text[1]!.replace('my number is ', '');
    assert.match(token, /^\[PHONE_1_[a-z0-9]{4}\]$/);
    assert.deepEqual([...r.placeholders.keys()], [token]);
    // The model echoing both: only ours is restored, the user's own text is left alone.
    assert.equal(restorePlaceholders(`you wrote [PHONE_1]; we call ${token}`, r.placeholders), 'you wrote [PHONE_1]; we call 415 555 2671');
  });

  test('look-alikes in any case, or already salted, also switch to the salted form', () => {
    for (const lookalike of ['[phone_1]', '[EMAIL_3_ab12]', '[ name_1]']) {
      const r = redactTexts([lookalike, 'a@example.com'], {});
      assert.match(r.text[1]!, /^\[EMAIL_1_[a-z0-9]{4}\]$/, lookalike);
      assert.equal(r.text[0], lookalike);
    }
  });

  test('the salt is fresh per call', () => {
    const salts = new Set<string>();
    for (let i = 0; i < 20; i++) salts.add(redactTexts(['[PHONE_1]', 'a@example.com'], {}).text[1]!);
    assert.ok(salts.size > 1);
  });
});

describe('restorePlaceholders', () => {
  test('round trip: restoring the redacted texts gives the originals back', () => {
    const texts = [
      'Hi, this is Maria Lopez, my cell is (415) 555-2671.',
      'Email me at maria@example.com, I live at 42 Elm Street, Boston, MA 02108.',
      'Card 4111 1111 1111 1111 for the deposit. Lopez out.',
      'Nothing personal here.',
    ];
    const r = redactTexts(texts, { knownNames: ['Maria Lopez'] });
    assert.deepEqual(
      r.text.map((t) => restorePlaceholders(t, r.placeholders)),
      texts,
    );
  });

  test('a value written two ways comes back in its first spelling', () => {
    const r = redactTexts(['(415) 555-2671', '+1 415 555 2671'], {});
    assert.equal(restorePlaceholders('We will call [PHONE_1].', r.placeholders), 'We will call (415) 555-2671.');
  });

  test('unknown, re-cased or unbracketed placeholders are left alone', () => {
    const { placeholders } = redactOne('call 415 555 2671');
    assert.equal(
      restorePlaceholders('[PHONE_2] [phone_1] PHONE_1 [PHONE_1 [ PHONE_1 ] [PHONE_1]', placeholders),
      '[PHONE_2] [phone_1] PHONE_1 [PHONE_1 [ PHONE_1 ] 415 555 2671',
    );
  });

  test('one pass: a restored value is not itself rewritten', () => {
    const placeholders = new Map([
      ['[NAME_1]', '[NAME_2]'],
      ['[NAME_2]', 'Maria'],
    ]);
    assert.equal(restorePlaceholders('[NAME_1] and [NAME_2]', placeholders), '[NAME_2] and Maria');
  });

  test('an empty map changes nothing', () => {
    assert.equal(restorePlaceholders('[PHONE_1]', new Map()), '[PHONE_1]');
  });
});

describe('redactTexts: general', () => {
  test('order and count of texts are kept; empty input gives empty output', () => {
    assert.deepEqual(redactTexts([], {}).text, []);
    assert.deepEqual(redactTexts(['', 'a', ''], {}).text, ['', 'a', '']);
  });

  test('canary: no personal value from a sample conversation survives redaction', () => {
    const canaries = {
      name: 'Quintessa Zybrowski',
      phoneNational: '(646) 555-0187',
      phoneE164: '+16465550187',
      phoneDotted: '646.555.0187',
      email: 'q.zybrowski+canary@mailbox-example.net',
      card: '5555 5555 5555 4444',
      cardPlain: '378282246310005',
      address: '8812 Winterbourne Ave Apt 3C, Portland, OR 97205',
    };
    const conversation = [
      `Hi it's ${canaries.name}, please text me on ${canaries.phoneNational}`,
      `Sure Quintessa! Is ${canaries.phoneE164} the best number?`,
      `Yes, or ${canaries.phoneDotted}. My email is ${canaries.email.toUpperCase()}`,
      `Deliver to ${canaries.address}. Pay with ${canaries.card}, or amex ${canaries.cardPlain}`,
      `thanks zybrowski, we have ${canaries.email}`,
    ];
    const r = redactTexts(conversation, { knownNames: [canaries.name] });
    const out = r.text.join('\n');
    const outDigits = out.replace(/\D/g, '');
    for (const value of Object.values(canaries)) {
      assert.ok(!out.toLowerCase().includes(value.toLowerCase()), `${value} leaked`);
      const digits = value.replace(/\D/g, '');
      if (digits.length >= 7) assert.ok(!outDigits.includes(digits.slice(-7)), `digits of ${value} leaked`);
    }
    for (const word of ['quintessa', 'zybrowski', 'winterbourne', 'mailbox-example']) {
      assert.ok(!out.toLowerCase().includes(word), `${word} leaked`);
    }
    // And every placeholder issued is one restorePlaceholders resolves.
    for (const t of r.text) {
      assert.doesNotMatch(restorePlaceholders(t, r.placeholders), /\[(?:NAME|PHONE|EMAIL|CARD|ADDRESS)_\d+\]/);
    }
    assert.ok(!out.includes('97205'), 'ZIP leaked');
  });
});
