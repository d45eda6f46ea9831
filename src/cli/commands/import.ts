import type { Command } from 'commander';
import { isSupportedCountry, type CountryCode } from 'libphonenumber-js';
import { AirtableImportStopped, type AirtableImportReport } from '../../relay/import/airtable-import.js';
import { JsonlImportStopped, type JsonlImportCounts } from '../../relay/import/jsonl-import.js';
import { describeImportFailure, runAirtableImport, runJsonlImport } from '../../relay/import/operator-import.js';
import { counted } from '../counted.js';
import { CliError } from '../errors.js';
import { tenantBySlug, unknownTenant } from '../identity-runtime.js';
import { openSealingRuntime, type CliIo } from '../runtime.js';

/**
 * `ciphergate import jsonl|airtable --tenant T`: brings a tenant's existing plain-text
 * conversations in, sealed (docs/import.md). Imports never enqueue jobs: history is not answered,
 * sent or synced. Progress goes to stderr, the summary to stdout; errors name lines, members,
 * columns and record ids, never a value.
 */
export function registerImport(program: Command, io: CliIo): void {
  const importCommand = program.command('import').description('bring existing plain-text conversations in, sealed (docs/import.md)');

  importCommand
    .command('jsonl')
    .description('conversations exported with mongoexport, one JSON document per line on stdin')
    .requiredOption('--tenant <slug>', 'the tenant the conversations belong to')
    .option('--default-country <code>', 'country of phone numbers written without + (default: US)', parseCountry)
    .option('--progress-every <n>', 'a progress line on stderr every n conversations', (value: string) => parseWhole('--progress-every', value, 1, 1_000_000), 1000)
    .action(async (options: { tenant: string; defaultCountry?: CountryCode; progressEvery: number }) => {
      if ((io.stdin as NodeJS.ReadStream).isTTY) throw new CliError('the export is read from stdin; redirect it (ciphergate import jsonl --tenant T < export.jsonl)', 2);
      const runtime = await openSealingRuntime(io, { logTo: 'stderr', defaultLogLevel: 'warn' });
      try {
        const tenant = await tenantBySlug(runtime.database.db, options.tenant);
        let counts: JsonlImportCounts;
        try {
          counts = await runJsonlImport({ db: runtime.database.db, fields: runtime.sealing.fields }, tenant.id, io.stdin as AsyncIterable<string | Buffer>, {
            ...(options.defaultCountry ? { defaultCountry: options.defaultCountry } : {}),
            progressEvery: options.progressEvery,
            onProgress: (progress) => io.stderr.write(`ciphergate: import jsonl: line ${progress.lineNumber}: ${jsonlCounts(progress)}\n`),
          });
        } catch (error) {
          if (!(error instanceof JsonlImportStopped)) throw error;
          const before = error.lineError.lineNumber > 1 ? `the lines before it are imported (${jsonlCounts(error.counts)})` : 'nothing was imported';
          throw new CliError(`${error.message}; the import stopped at this line and ${before}; fix the line and run the same command again (lines already imported are not imported twice)`);
        }
        io.stdout.write(`imported ${counted(counts.conversations, 'conversation')} (${counted(counts.messages, 'message')}), skipped ${counts.skipped} already present\n`);
      } finally {
        await runtime.close();
      }
    });

  importCommand
    .command('airtable')
    .description("the plain-text rows of the tenant's Airtable table; stores them sealed, then rewrites them by the tenant's field policy")
    .requiredOption('--tenant <slug>', 'the tenant whose Airtable table to import')
    .option('--default-country <code>', 'country of phone numbers written without + (default: US)', parseCountry)
    .option('--page-size <n>', 'rows per Airtable page, 1-100', (value: string) => parseWhole('--page-size', value, 1, 100), 100)
    .action(async (options: { tenant: string; defaultCountry?: CountryCode; pageSize: number }) => {
      const runtime = await openSealingRuntime(io, { logTo: 'stderr', defaultLogLevel: 'warn' });
      try {
        const deps = { db: runtime.database.db, fields: runtime.sealing.fields, keyring: runtime.sealing.keyring, airtableApiUrl: runtime.config.providers.airtableApiUrl };
        let outcome;
        try {
          outcome = await runAirtableImport(deps, options.tenant, {
            ...(options.defaultCountry ? { defaultCountry: options.defaultCountry } : {}),
            pageSize: options.pageSize,
            onNote: (note) => io.stderr.write(`ciphergate: note: ${note}\n`),
            onUnreadable: (row) => io.stderr.write(`ciphergate: note: row ${row.recordId}: ${row.column}: ${row.reason}; left as it is\n`),
            onPage: (progress) => io.stderr.write(`ciphergate: import airtable: page ${progress.pages}: ${airtableCounts(progress)}\n`),
          });
        } catch (error) {
          if (!(error instanceof AirtableImportStopped)) throw error;
          const pages = error.report.pages;
          const done = pages === 0 ? 'nothing was imported in this run' : `the rows read before (${counted(pages, 'page')} in this run) are imported and recorded`;
          throw new CliError(`import airtable stopped: ${describeImportFailure(error.cause)}; ${done}; run the same command again to continue`);
        }
        if (!outcome.ok && outcome.code === 'tenant-not-found') unknownTenant(options.tenant);
        if (!outcome.ok) throw new CliError(`tenant ${outcome.slug} has no airtable block; add it with \`ciphergate tenants put ${outcome.slug}\``);
        const { report } = outcome;
        io.stdout.write(`imported ${counted(report.conversations, 'conversation')} (${counted(report.messages, 'message')}), skipped ${counted(report.skipped, 'row')} already imported${report.empty > 0 ? ` and ${counted(report.empty, 'empty row')}` : ''}\n`);
        if (report.unreadable.length > 0) {
          throw new CliError(`${counted(report.unreadable.length, 'row')} could not be read and still hold their text in Airtable (listed above); fix them and run the same command again`);
        }
      } finally {
        await runtime.close();
      }
    });
}

function jsonlCounts(counts: JsonlImportCounts): string {
  return `${counted(counts.conversations, 'conversation')} with ${counted(counts.messages, 'new message')}, ${counts.skipped} already present`;
}

function airtableCounts(report: AirtableImportReport): string {
  return `${counted(report.rows, 'row')} read, ${counted(report.messages, 'message')} imported, ${counted(report.rewritten, 'row')} rewritten, ${report.skipped} already imported, ${report.empty} empty, ${report.unreadable.length} unreadable`;
}

function parseCountry(value: string): CountryCode {
  const code = value.toUpperCase();
  if (!isSupportedCountry(code)) throw new CliError(`--default-country: expected a two-letter country code such as US or GB, got ${JSON.stringify(value)}`, 2);
  return code;
}

function parseWhole(option: string, value: string, min: number, max: number): number {
  const number = Number(value);
  if (!/^\d+$/.test(value) || number < min || number > max) throw new CliError(`${option}: expected a whole number from ${min} to ${max}`, 2);
  return number;
}
