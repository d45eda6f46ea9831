import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import type { Command } from 'commander';
import { buildProgram } from '../../src/cli/program.js';

/**
 * Issue 15: `--help` showed some defaults twice ("at most this many (default 100) (default:
 * 100)"): the description said it and commander, given the default value, said it again. Every
 * option's help now says its default once, in commander's `(default: …)` form.
 */
test('no option of any command states its default twice or in another form', () => {
  const io = { env: {}, cwd: process.cwd(), stdout: new PassThrough(), stderr: new PassThrough(), stdin: new PassThrough() };
  const commands: Command[] = [];
  const walk = (command: Command) => {
    commands.push(command);
    command.commands.forEach(walk);
  };
  walk(buildProgram(io));
  assert.ok(commands.length > 10);
  for (const command of commands) {
    const help = command.helpInformation().replace(/\s+/g, ' ');
    assert.doesNotMatch(help, /\(default [^:]/, `${command.name()}: a default written without commander's form`);
    for (const option of command.options) {
      const described = command.createHelp().optionDescription(option).replace(/\s+/g, ' ');
      assert.ok((described.match(/\(default:/g) ?? []).length <= 1, `${command.name()} ${option.flags}: ${described}`);
    }
  }
});
