import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkPasswordPolicy } from '../../src/identity/passwords/passwords.js';

// docs/identity.md said a password may not contain "the email", while the code refused only
// the local part, and only when it had 4 or more characters: `al@example.com is mine` passed
// for al@example.com. The rule is now what the docs say, NIST SP 800-63B's context-specific
// words: the whole address (any length) and the name part before the @ (4+ characters, or
// the whole password), without a +tag.
const ruleOf = (password: string, email: string) => {
  const result = checkPasswordPolicy(password, { email });
  return result.ok ? 'ok' : result.rule;
};

test('the whole address is refused inside a password, however short its name part', () => {
  assert.equal(ruleOf('al@example.com is mine', 'al@example.com'), 'contains-email');
  assert.equal(ruleOf('MY AL@EXAMPLE.COM ADDRESS', 'al@example.com'), 'contains-email');
  assert.equal(ruleOf('x alice+shop@example.com x', 'alice+shop@example.com'), 'contains-email');
});

test('the name part before the @ is refused from 4 characters, and alone at any length', () => {
  assert.equal(ruleOf('secret jonathan.smith thing', 'jonathan.smith@example.com'), 'contains-email');
  assert.equal(ruleOf('my alice is wonderland', 'alice+shop@example.com'), 'contains-email');
  assert.equal(ruleOf('a quiet afternoon by al', 'al@example.com'), 'ok');
});

test('the refusal names the rule, never the address', () => {
  const result = checkPasswordPolicy('al@example.com is mine', { email: 'al@example.com' });
  assert.equal(result.ok, false);
  assert.ok(!result.ok && !result.message.includes('al@example.com') && !result.message.includes('al@'));
});
