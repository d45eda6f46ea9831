import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { REPO_ROOT } from '../helpers/cli.js';

/**
 * The layering is enforced, not described: depcruise with the project's own configuration
 * (.dependency-cruiser.cjs) fails on a forbidden import, a cycle between files and an import
 * that resolves to nothing, naming the rule. Each case is a fixture tree of its own in a
 * temporary folder, so nothing is added to src/ and the real tree's result is not in question.
 */

const run = promisify(execFile);
const DEPCRUISE = join(REPO_ROOT, 'node_modules', 'dependency-cruiser', 'bin', 'dependency-cruise.mjs');
const CONFIG = join(REPO_ROOT, '.dependency-cruiser.cjs');

let root: string;

before(() => {
  root = mkdtempSync(join(tmpdir(), 'ciphergate-layers-'));
});

after(() => {
  rmSync(root, { recursive: true, force: true });
});

/** Writes `files` (path under src/ → source) into a fresh fixture tree and runs depcruise over it. */
async function cruise(name: string, files: Record<string, string>): Promise<{ exitCode: number; output: string }> {
  const tree = join(root, name);
  mkdirSync(tree);
  writeFileSync(join(tree, 'tsconfig.json'), JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true }, include: ['src'] }));
  for (const [path, source] of Object.entries(files)) {
    mkdirSync(dirname(join(tree, 'src', path)), { recursive: true });
    writeFileSync(join(tree, 'src', path), source);
  }
  try {
    const { stdout, stderr } = await run(process.execPath, [DEPCRUISE, 'src', '--config', CONFIG, '--output-type', 'err'], { cwd: tree });
    return { exitCode: 0, output: stdout + stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { exitCode: typeof failed.code === 'number' ? failed.code : -1, output: `${failed.stdout ?? ''}${failed.stderr ?? ''}` };
  }
}

describe('dependency rules (.dependency-cruiser.cjs)', { timeout: 300_000 }, () => {
  test('an allowed import passes', async () => {
    const result = await cruise('allowed', {
      'cli/commands/list.ts': "import { listThings } from '../../relay/things.js';\nexport const list = listThings;\n",
      'relay/things.ts': "import { readThings } from '../store/things.js';\nexport const listThings = readThings;\n",
      'store/things.ts': 'export const readThings = (): string[] => [];\n',
    });
    assert.equal(result.exitCode, 0, result.output);
  });

  test('a cli file that imports the store fails, naming the rule and the import', async () => {
    const result = await cruise('cli-to-store', {
      'cli/commands/list.ts': "import { readThings } from '../../store/things.js';\nexport const list = readThings;\n",
      'store/things.ts': 'export const readThings = (): string[] => [];\n',
    });
    assert.notEqual(result.exitCode, 0, result.output);
    assert.match(result.output, /layer-cli: src\/cli\/commands\/list\.ts → src\/store\/things\.ts/);
  });

  test('http importing a provider, seal importing the store and domain importing anything fail', async () => {
    const result = await cruise('upward', {
      'http/routes/send.ts': "import { send } from '../../providers/twilio/client.js';\nexport const route = send;\n",
      'providers/twilio/client.ts': 'export const send = (): void => undefined;\n',
      'seal/keyring.ts': "import type { Row } from '../store/rows.js';\nexport type KeyRow = Row;\n",
      'store/rows.ts': 'export interface Row { id: string }\n',
      'domain/ids.ts': "import { level } from '../log/logger.js';\nexport const idLevel = level;\n",
      'log/logger.ts': "export const level = 'info';\n",
    });
    assert.notEqual(result.exitCode, 0, result.output);
    assert.match(result.output, /layer-http: src\/http\/routes\/send\.ts → src\/providers\/twilio\/client\.ts/);
    // A type-only import is a dependency all the same.
    assert.match(result.output, /layer-seal: src\/seal\/keyring\.ts → src\/store\/rows\.ts/);
    assert.match(result.output, /layer-domain: src\/domain\/ids\.ts → src\/log\/logger\.ts/);
  });

  test('only the CLI may reach the composition root', async () => {
    const result = await cruise('into-runtime', {
      'relay/start.ts': "import { open } from '../runtime/open.js';\nexport const start = open;\n",
      'runtime/open.ts': 'export const open = (): void => undefined;\n',
    });
    assert.notEqual(result.exitCode, 0, result.output);
    assert.match(result.output, /layer-relay: src\/relay\/start\.ts → src\/runtime\/open\.ts/);
  });

  test('a cycle between two files of one folder fails as no-circular', async () => {
    const result = await cruise('cycle', {
      'identity/tokens/access.ts': "import { KEY_TTL } from './keys.js';\nexport const TOKEN_TTL = 600;\nexport const both = KEY_TTL + TOKEN_TTL;\n",
      'identity/tokens/keys.ts': "import type { TOKEN_TTL } from './access.js';\nexport const KEY_TTL = 60;\nexport type Ttl = typeof TOKEN_TTL;\n",
    });
    assert.notEqual(result.exitCode, 0, result.output);
    assert.match(result.output, /no-circular: src\/identity\/tokens\/(access|keys)\.ts/);
  });

  test('an import of a file that does not exist fails as not-to-unresolvable', async () => {
    const result = await cruise('unresolvable', {
      'relay/send.ts': "import { gone } from './moved-away.js';\nexport const send = gone;\n",
    });
    assert.notEqual(result.exitCode, 0, result.output);
    assert.match(result.output, /not-to-unresolvable: src\/relay\/send\.ts → \.\/moved-away\.js/);
  });
});
