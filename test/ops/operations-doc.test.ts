import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, test } from 'node:test';
import type { Command } from 'commander';
import { buildProgram } from '../../src/cli/program.js';
import type { CliIo } from '../../src/cli/runtime.js';
import { REPO_ROOT } from '../helpers/cli.js';

/**
 * docs/operations.md is what an operator follows during an incident, so it must not name a
 * command that does not exist or link to a page that is not there. Every `ciphergate …`
 * invocation in its code (inline or in blocks) is resolved against the real commander program,
 * subcommand by subcommand and option by option; every relative link must resolve, anchors
 * included.
 */

const DOC = join(REPO_ROOT, 'docs', 'operations.md');

function program(): Command {
  const io = { stdin: new PassThrough(), stdout: new PassThrough(), stderr: new PassThrough() } as unknown as CliIo;
  return buildProgram(io);
}

/** Code in the page: fenced blocks and inline spans, each with the line it starts on. */
function codeOf(markdown: string): Array<{ line: number; code: string }> {
  const pieces: Array<{ line: number; code: string }> = [];
  const lines = markdown.split('\n');
  let fence: { start: number; body: string[] } | undefined;
  lines.forEach((text, index) => {
    if (/^\s*```/.test(text)) {
      if (fence) {
        pieces.push({ line: fence.start, code: fence.body.join('\n') });
        fence = undefined;
      } else fence = { start: index + 1, body: [] };
      return;
    }
    if (fence) {
      fence.body.push(text);
      return;
    }
    for (const span of text.matchAll(/`([^`]+)`/g)) pieces.push({ line: index + 1, code: span[1]! });
  });
  return pieces;
}

/** Each `ciphergate WORD …` in `code`, as its tokens after `ciphergate` up to the end of the command. */
export function invocationsIn(code: string): string[][] {
  const found: string[][] = [];
  // `ciphergate` as a word of its own (not `.ciphergate/`, `ciphergate:local`, `-d ciphergate`
  // followed by an option) followed by a lower-case word: a subcommand.
  for (const match of code.matchAll(/(?:^|[\s"'(;&|])ciphergate ([a-z][^\n;&|<>)]*)/g)) {
    const tokens = match[1]!.trim().match(/"[^"]*"|'[^']*'|\S+/g) ?? [];
    found.push(tokens);
  }
  return found;
}

/** Why `tokens` is not a command the CLI has, or undefined when it is. */
export function problemWith(root: Command, tokens: readonly string[]): string | undefined {
  let command = root;
  let index = 0;
  // Subcommands: as deep as the words name them.
  while (index < tokens.length && command.commands.length > 0) {
    const word = tokens[index]!;
    if (word.startsWith('-')) break;
    const next = command.commands.find((candidate) => candidate.name() === word || candidate.aliases().includes(word));
    if (!next) return `\`${command === root ? 'ciphergate' : command.name()}\` has no subcommand \`${word}\` (has: ${command.commands.map((candidate) => candidate.name()).join(', ')})`;
    command = next;
    index += 1;
  }
  if (command === root) return 'no subcommand named';
  if (command.commands.length > 0) return `\`${command.name()}\` needs a subcommand (${command.commands.map((candidate) => candidate.name()).join(', ')})`;
  // Options: each must be one the command declares (or --help).
  for (const token of tokens.slice(index)) {
    if (!token.startsWith('--')) continue;
    const flag = token.split('=')[0]!;
    if (flag === '--help') continue;
    if (!command.options.some((option) => option.long === flag)) return `\`${command.name()}\` has no option ${flag}`;
  }
  return undefined;
}

/** GitHub's heading anchor: lower case, punctuation dropped, spaces to dashes. */
function anchorOf(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/`/g, '')
    .replace(/[^\p{L}\p{N} _-]/gu, '')
    .replace(/ /g, '-');
}

function anchorsIn(markdown: string): Set<string> {
  return new Set([...markdown.matchAll(/^#{1,6} (.+)$/gm)].map((match) => anchorOf(match[1]!)));
}

describe('docs/operations.md', () => {
  const markdown = readFileSync(DOC, 'utf8');
  const root = program();

  test('the checker itself refuses a command, a subcommand and an option that do not exist', () => {
    assert.match(problemWith(root, ['user', 'create']) ?? '', /no subcommand `user`/);
    assert.match(problemWith(root, ['keys', 'destroy']) ?? '', /`keys` has no subcommand `destroy`/);
    assert.match(problemWith(root, ['keys', 'rewrap', '--from-key-file', 'x']) ?? '', /no option --from-key-file/);
    assert.match(problemWith(root, ['keys']) ?? '', /needs a subcommand/);
    assert.equal(problemWith(root, ['keys', 'rewrap', '--from-master-key-file', 'old.key']), undefined);
    assert.deepEqual(invocationsIn('docker compose run --rm ciphergate keys status; tar -C .ciphergate -czf x pgdata; pg_dump -d ciphergate --file=x'), [['keys', 'status']]);
  });

  test('every `ciphergate …` command it names exists, with the options it shows', () => {
    const invocations = codeOf(markdown).flatMap(({ line, code }) => invocationsIn(code).map((tokens) => ({ line, tokens })));
    // The runbooks and backups name at least these; fewer means the parser stopped seeing them.
    assert.ok(invocations.length >= 20, `only ${invocations.length} commands found`);
    for (const expected of ['keys rewrap', 'keys rotate', 'api-keys revoke', 'audit verify', 'serve', 'store copy']) {
      assert.ok(invocations.some(({ tokens }) => tokens.join(' ').startsWith(expected)), `the page should name \`ciphergate ${expected}\``);
    }
    const problems = invocations.flatMap(({ line, tokens }) => {
      const problem = problemWith(root, tokens);
      return problem ? [`line ${line}: ciphergate ${tokens.join(' ')}: ${problem}`] : [];
    });
    assert.deepEqual(problems, []);
  });

  test('every relative link resolves (file and anchor)', () => {
    const links = [...markdown.matchAll(/\[[^\]]*\]\(([^)\s]+)\)/g)].map((match) => match[1]!).filter((target) => !/^[a-z]+:/i.test(target));
    assert.ok(links.length >= 10, `only ${links.length} links found`);
    const problems: string[] = [];
    for (const link of links) {
      const [path, anchor] = link.split('#') as [string, string | undefined];
      const target = path === '' ? DOC : resolve(dirname(DOC), path);
      if (!existsSync(target)) {
        problems.push(`${link}: no such file`);
        continue;
      }
      if (anchor && target.endsWith('.md') && !anchorsIn(readFileSync(target, 'utf8')).has(anchor)) problems.push(`${link}: no heading with anchor #${anchor}`);
    }
    assert.deepEqual(problems, []);
  });

  test('it says plainly that the image is not built in CI, and documents every npm audit outcome', () => {
    assert.match(markdown, /\*\*The image is not built in this project's CI\.\*\*/);
    assert.match(markdown, /## Supply chain[\s\S]*npm audit --omit=dev[\s\S]*\*\*Findings\.\*\*/);
  });
});
