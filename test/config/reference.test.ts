import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { configurationReference } from '../../src/config/reference.js';
import { settings } from '../../src/config/settings.js';

test('docs/configuration.md is the generated reference (run `npm run docs:config` after changing settings)', () => {
  const committed = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8');
  assert.equal(committed, configurationReference());
  for (const setting of Object.values(settings)) assert.ok(committed.includes(`\`${setting.env}\``), setting.env);
});
