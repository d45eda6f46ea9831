import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomInt, randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { sql } from 'drizzle-orm';
import { queryRows, type Db } from '../../src/store/connection.js';

/**
 * The canary scanner of test/relay/canary.test.ts and test/ops/backup-*.test.ts: unique
 * watched values, looked for byte for byte in every encoding a store might use, so a clean
 * scan of a data dir, a table or a dump means that none of them is there.
 */
const execFileAsync = promisify(execFile);

/** One way a watched value can sit in bytes. */
export interface Needle {
  label: string;
  form: string;
  bytes: Buffer;
}

/**
 * Every encoding of `text` worth looking for: as written (UTF-8), as UTF-16LE (JavaScript
 * strings, Windows tools), as lower-case hex (PostgreSQL's bytea text output, pg_dump's COPY),
 * and as base64 at each of the three byte alignments (the part of the encoding that depends on
 * `text` alone, so it is found wherever `text` starts inside a larger base64 value).
 */
export function needlesFor(label: string, text: string): Needle[] {
  const utf8 = Buffer.from(text, 'utf8');
  const needles: Needle[] = [
    { label, form: 'utf8', bytes: utf8 },
    { label, form: 'utf16le', bytes: Buffer.from(text, 'utf16le') },
    { label, form: 'hex', bytes: Buffer.from(utf8.toString('hex'), 'latin1') },
  ];
  for (let skip = 0; skip < 3; skip += 1) {
    const aligned = utf8.subarray(skip);
    const whole = Math.floor(aligned.length / 3) * 3;
    if (whole >= 6) needles.push({ label, form: `base64+${skip}`, bytes: Buffer.from(aligned.subarray(0, whole).toString('base64'), 'latin1') });
  }
  return needles;
}

/**
 * A phone number's forms: the national significant number (a substring of the E.164 digits
 * without `+`, so one search covers both) and the two ways US numbers are usually printed.
 */
export function phoneNeedles(label: string, e164: string): Needle[] {
  assert.match(e164, /^\+1\d{10}$/, 'the canary phones are US numbers');
  const national = e164.slice(2);
  const [area, exchange, line] = [national.slice(0, 3), national.slice(3, 6), national.slice(6)];
  return [...needlesFor(label, national), ...needlesFor(`${label} (formatted)`, `${area}-${exchange}-${line}`), ...needlesFor(`${label} (formatted)`, `(${area}) ${exchange}-${line}`)];
}

/** What was found in `haystack`: one entry per watched value and form. */
export function findLeaks(haystack: Buffer | string, needles: readonly Needle[]): string[] {
  const bytes = typeof haystack === 'string' ? Buffer.from(haystack, 'utf8') : haystack;
  const found = new Set<string>();
  for (const needle of needles) if (bytes.includes(needle.bytes)) found.add(`${needle.label} as ${needle.form}`);
  return [...found];
}

/** Per line of `text`: what it leaks, with the line itself, so a failure shows where to look. */
export function findLeakingLines(text: string, needles: readonly Needle[]): string[] {
  return text.split('\n').flatMap((line) => {
    const leaks = findLeaks(line, needles);
    return leaks.length === 0 ? [] : [`${leaks.join(', ')} in: ${line.length > 600 ? `${line.slice(0, 600)}…` : line}`];
  });
}

/** Fails listing every finding (assert's own diff would print each one several times). */
export function assertNoLeaks(findings: readonly string[], where: string): void {
  assert.ok(findings.length === 0, `plaintext or a secret found in ${where}:\n${findings.join('\n')}`);
}

/** Every regular file under `root`, read raw; findings are prefixed with the file's path. */
export function scanTree(root: string, needles: readonly Needle[]): { files: number; bytes: number; leaks: string[] } {
  let files = 0;
  let bytes = 0;
  const leaks: string[] = [];
  for (const entry of readdirSync(root, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    const content = readFileSync(path);
    files += 1;
    bytes += content.length;
    for (const leak of findLeaks(content, needles)) leaks.push(`${relative(root, path)}: ${leak}`);
  }
  return { files, bytes, leaks };
}

/** Every row of every table, as PostgreSQL prints it (`t::text`: bytea as hex, jsonb as JSON). */
export async function dumpTables(db: Db): Promise<{ tables: string[]; text: string }> {
  const tables = await queryRows<{ schema: string; name: string }>(
    db,
    sql`select table_schema as schema, table_name as name from information_schema.tables
        where table_type = 'BASE TABLE' and table_schema not in ('pg_catalog', 'information_schema') order by 1, 2`,
  );
  const parts: string[] = [];
  for (const { schema, name } of tables) {
    const rows = await queryRows<{ row: string }>(db, sql.raw(`select t::text as row from "${schema}"."${name}" t`));
    parts.push(`-- ${schema}.${name}`, ...rows.map((row) => `${schema}.${name}: ${row.row}`));
  }
  return { tables: tables.map(({ schema, name }) => `${schema}.${name}`), text: parts.join('\n') };
}

/**
 * `pg_dump` of the whole database: by default plain SQL (data as COPY text, bytea as hex);
 * `args` adds options such as `['-Fc', '--file', path]` (then stdout is empty).
 */
export async function pgDump(url: string, args: readonly string[] = []): Promise<Buffer> {
  try {
    const { stdout } = await execFileAsync('pg_dump', ['--no-owner', '--no-privileges', ...args, '--dbname', url], { encoding: 'buffer', maxBuffer: 512 * 1024 * 1024 });
    return stdout;
  } catch (error) {
    const { stderr, code } = error as { stderr?: Buffer; code?: string | number };
    // A pg_dump older than the server refuses to run ("server version mismatch"): say which.
    const version = await execFileAsync('pg_dump', ['--version']).then(
      ({ stdout }) => stdout.trim(),
      () => 'pg_dump not found on PATH',
    );
    throw new Error(`pg_dump failed (${code}; ${version}): ${stderr?.toString('utf8').trim() ?? ''}`);
  }
}

/** Letters only, so neither the redactor nor libphonenumber takes part of it for something else. */
export function randomLetters(length: number): string {
  return Array.from({ length }, () => String.fromCharCode(97 + randomInt(26))).join('');
}

/** A unique marker; finding it anywhere means it leaked from the run that made it. */
export function canary(): string {
  return `canary-${randomUUID()}`;
}
