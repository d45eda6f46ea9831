import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { promisify } from 'node:util';
import { REPO_ROOT } from '../helpers/cli.js';

/**
 * docs/architecture.md is kept true by this test where it can be: its layer table lists exactly
 * the folders of src/, its rule table says for every folder what .dependency-cruiser.cjs
 * forbids it (no more, no less), the commands it shows run and succeed, and the README links it
 * and no file outside the repository.
 */

const run = promisify(execFile);
const DOC = readFileSync(join(REPO_ROOT, 'docs', 'architecture.md'), 'utf8');

interface ForbiddenRule {
  name: string;
  from: { path?: string };
  to: { path?: string };
}

/** The rows of the first table after `heading`, each as its cells. */
function tableAfter(markdown: string, heading: string): string[][] {
  const start = markdown.indexOf(`\n${heading}\n`);
  assert.ok(start >= 0, `docs/architecture.md has no heading ${heading}`);
  const lines = markdown.slice(start).split('\n');
  const first = lines.findIndex((line) => line.startsWith('|'));
  const rows: string[][] = [];
  for (const line of lines.slice(first)) {
    if (!line.startsWith('|')) break;
    rows.push(line.split('|').slice(1, -1).map((cell) => cell.trim()));
  }
  // Header and separator.
  return rows.slice(2);
}

/** `store/` → `store`. */
function folderOf(cell: string): string {
  const match = /^`([a-z-]+)\/`$/.exec(cell);
  assert.ok(match, `expected a folder such as \`store/\`, got ${cell}`);
  return match[1]!;
}

/** The folder rules of the configuration: folder → the folders it may not import. */
function configuredRules(): Map<string, string[]> {
  const config = createRequire(import.meta.url)(join(REPO_ROOT, '.dependency-cruiser.cjs')) as { forbidden: ForbiddenRule[] };
  const rules = new Map<string, string[]>();
  for (const rule of config.forbidden.filter((candidate) => candidate.name.startsWith('layer-'))) {
    const from = /^\^src\/([a-z-]+)\/$/.exec(rule.from.path ?? '');
    const to = /^\^src\/\(([a-z|-]+)\)\/$/.exec(rule.to.path ?? '');
    assert.ok(from && to, `rule ${rule.name}: expected from ^src/FOLDER/ and to ^src/(A|B)/`);
    rules.set(from[1]!, to[1]!.split('|').sort());
  }
  return rules;
}

describe('docs/architecture.md', () => {
  test('the layer table lists exactly the folders of src/', () => {
    const documented = tableAfter(DOC, '## Layers').map((row) => folderOf(row[0]!));
    const folders = readdirSync(join(REPO_ROOT, 'src'), { withFileTypes: true })
      .filter((entry) => entry.isDirectory())
      .map((entry) => entry.name);
    assert.deepEqual([...documented].sort(), [...folders].sort());
    assert.equal(new Set(documented).size, documented.length, 'a folder is listed twice');
  });

  test('the rule table is the folder rules of .dependency-cruiser.cjs', () => {
    const documented = new Map(
      tableAfter(DOC, '## Dependency rules').map((row) => [folderOf(row[0]!), row[1]!.split(',').map((folder) => folder.trim()).sort()] as const),
    );
    assert.deepEqual(Object.fromEntries(documented), Object.fromEntries(configuredRules()));
  });

  test('every folder of src/ has a rule, so none but runtime may import everything', () => {
    const rules = configuredRules();
    const folders = readdirSync(join(REPO_ROOT, 'src'), { withFileTypes: true }).filter((entry) => entry.isDirectory());
    for (const folder of folders) assert.ok(rules.has(folder.name), `no layer rule for src/${folder.name}`);
    // runtime's only rule is the one that keeps it from importing its caller.
    assert.deepEqual(rules.get('runtime'), ['cli']);
  });

  test('the commands it shows run and succeed', { timeout: 300_000 }, async () => {
    const commands = [...DOC.matchAll(/```sh\n([\s\S]*?)```/g)].flatMap((block) => block[1]!.split('\n').filter((line) => line.trim() !== ''));
    assert.ok(commands.length > 0);
    for (const command of commands) {
      const words = command.trim().split(/\s+/);
      assert.deepEqual(words.slice(0, 2), ['npm', 'run'], `only npm scripts are shown: ${command}`);
      const { stdout } = await run('npm', ['run', '--silent', ...words.slice(2)], { cwd: REPO_ROOT });
      assert.match(stdout, /no dependency violations found/);
    }
  });

  test('the README links it and points at no file outside the repository', () => {
    const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
    assert.match(readme, /\]\(docs\/architecture\.md\)/);
    for (const link of readme.matchAll(/\]\(([^)]+)\)/g)) assert.doesNotMatch(link[1]!, /^\.\.\//, `README links outside the repository: ${link[1]}`);
    assert.doesNotMatch(readme, /ARCHITECTURE\.md|CONTRACT\.md|\.\.\/shared/);
  });
});
