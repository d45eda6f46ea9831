import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { counted } from '../../src/cli/counted.js';
import { REPO_ROOT } from '../helpers/cli.js';

/**
 * Issue 15: the CLI printed "1 rows", "sealed 1 values", "1 conversations": a count followed by a
 * fixed plural. Counts now go through `counted`, and no CLI source puts a number before a
 * plural noun by hand.
 */
test('counted: singular for one, plural otherwise', () => {
  assert.equal(counted(1, 'row'), '1 row');
  assert.equal(counted(0, 'row'), '0 rows');
  assert.equal(counted(2, 'entry', 'entries'), '2 entries');
  assert.equal(counted(1, 'entry', 'entries'), '1 entry');
});

test('no CLI output writes a count before a fixed plural', () => {
  const folder = join(REPO_ROOT, 'src', 'cli');
  const files = readdirSync(folder, { recursive: true, encoding: 'utf8' }).filter((name) => name.endsWith('.ts'));
  const fixedPlural = /\$\{[^}]+\} (rows|values|conversations|messages|new messages|entries|data keys|keys|pages|lines|empty rows)\b/;
  const offenders = files.flatMap((name) =>
    readFileSync(join(folder, name), 'utf8')
      .split('\n')
      .map((line, index) => ({ where: `${name}:${index + 1}`, line }))
      .filter(({ line }) => fixedPlural.test(line)),
  );
  assert.deepEqual(offenders, []);
});
