import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
// @ts-expect-error: a plain ES module of bin/, without declarations
import { unsupportedNodeMessage } from '../../bin/supported-node.js';
import { REPO_ROOT } from '../helpers/cli.js';

// Node 20 reached end of life on 2026-04-30: the CLI refuses it (and anything older) with one
// line, instead of failing later inside a dependency that needs Node 22.
test('Node 20 and older are refused with one line naming the version; 24 and later run', () => {
  for (const old of ['v20.20.2', 'v22.12.0', 'v23.11.1', 'v18.0.0']) {
    assert.equal(unsupportedNodeMessage(old), `ciphergate: Node.js 24 or later is required (this is ${old}); see README.md`);
  }
  for (const supported of ['v24.0.0', 'v24.22.3', 'v26.12.1']) assert.equal(unsupportedNodeMessage(supported), undefined);
  assert.equal(unsupportedNodeMessage(process.version), undefined, 'the suite itself runs on a supported Node');
});

test('the CLI run by this machine\'s Node 20 (when it has one) stops with that line', { skip: existsSync('/usr/bin/node') ? false : 'no /usr/bin/node on this machine' }, () => {
  const probe = spawnSync('/usr/bin/node', ['-p', 'process.version'], { encoding: 'utf8' });
  const version = probe.stdout.trim();
  const result = spawnSync('/usr/bin/node', [join(REPO_ROOT, 'bin/ciphergate.js'), '--version'], { encoding: 'utf8', timeout: 60_000 });
  if (unsupportedNodeMessage(version)) {
    assert.equal(result.status, 1);
    assert.equal(result.stderr, `ciphergate: Node.js 24 or later is required (this is ${version}); see README.md\n`);
  } else {
    assert.notEqual(result.stderr.split('\n')[0], `ciphergate: Node.js 24 or later is required (this is ${version}); see README.md`);
  }
});
