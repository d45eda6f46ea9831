import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { REPO_ROOT } from '../helpers/cli.js';

// A cast to the database type or to a table's insert type lets a plain Buffer reach a sealed
// column unseen by the compiler (issue 14); the three that opened the two drivers' databases
// survived the reshape. Both drivers' databases are assignable to Db as they are, so none is needed.
const CASTS = [/as unknown as Db\b/, /as typeof [\w.]+\$inferInsert/];

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

test('no file of src/ casts to the database type or to an insert type', () => {
  const files = sourceFiles(join(REPO_ROOT, 'src'));
  assert.ok(files.length > 100, 'the scan reads the source tree');
  const found = files.flatMap((file) =>
    readFileSync(file, 'utf8')
      .split('\n')
      .flatMap((line, index) => (CASTS.some((cast) => cast.test(line)) ? [`${relative(REPO_ROOT, file)}:${index + 1}: ${line.trim()}`] : [])),
  );
  assert.deepEqual(found, []);
});
