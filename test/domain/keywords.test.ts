import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { keywordOf, mayAiAnswer, optChangeOf } from '../../src/domain/keywords.js';

describe('carrier keywords', () => {
  test('the whole message, any case, trailing punctuation and spaces ignored', () => {
    assert.equal(keywordOf('stop'), 'opt-out');
    assert.equal(keywordOf('  Stop!! '), 'opt-out');
    assert.equal(keywordOf('stop   all'), 'opt-out');
    assert.equal(keywordOf('Unstop.'), 'opt-in');
    assert.equal(keywordOf('HELP?'), 'help');
  });

  test('a keyword inside a sentence is no keyword', () => {
    assert.equal(keywordOf('please stop texting me at night'), undefined);
    assert.equal(keywordOf('STOPPED'), undefined);
    assert.equal(keywordOf(''), undefined);
  });

  test('consent: opt-out and opt-in change it, help does not', () => {
    assert.equal(optChangeOf('STOP'), 'opt-out');
    assert.equal(optChangeOf('start'), 'opt-in');
    assert.equal(optChangeOf('help'), undefined);
    assert.equal(optChangeOf('hello'), undefined);
  });

  test('the AI never answers a keyword, and answers anything else', () => {
    for (const body of ['STOP', 'quit', 'HELP', 'yes']) assert.equal(mayAiAnswer(body), false, body);
    assert.equal(mayAiAnswer('Can I book for Tuesday?'), true);
  });
});
