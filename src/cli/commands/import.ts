import type { Command } from 'commander';
import { isSupportedCountry, type CountryCode } from 'libphonenumber-js';
import type { AuditAction } from '../../domain/audit-actions.js';
import { appendAuditEvent } from '../../store/audit-trail.js';
import { createAirtableRecordsClient } from '../../providers/airtable/records-client.js';
import { ProviderError } from '../../providers/provider-error.js';
import { importAirtable, AirtableImportStopped, type AirtableImportReport } from '../../relay/import/airtable-import.js';
import { ImportRuns } from '../../store/repositories/import-runs.js';
import { importJsonl, JsonlImportStopped, type JsonlImportCounts } from '../../relay/import/jsonl-import.js';
import { TenantDirectory } from '../../relay/tenant-directory.js';
import { ConversationRepository } from '../../store/repositories/conversations.js';
import { TenantRepository } from '../../store/repositories/tenants.js';
import type { Db } from '../../store/connection.js';
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
        const db = runtime.database.db;
        const tenant = await tenantBySlug(db, options.tenant);
        const runs = new ImportRuns(db);
        const run = await runs.start(tenant.id, 'jsonl');
        const recorded = { imported: 0, skipped: 0 };
        const record = async (counts: JsonlImportCounts, done: boolean) => {
          await runs.record(run.id, { imported: counts.messages - recorded.imported, skipped: counts.skipped - recorded.skipped, done });
          recorded.imported = counts.messages;
          recorded.skipped = counts.skipped;
        };
        let counts: JsonlImportCounts;
        try {
          counts = await importJsonl(io.stdin as AsyncIterable<string | Buffer>, { tenantId: tenant.id, conversations: new ConversationRepository(db, runtime.sealing.fields) }, {
            ...(options.defaultCountry ? { defaultCountry: options.defaultCountry } : {}),
            progressEvery: options.progressEvery,
            onProgress: async (progress) => {
              io.stderr.write(`ciphergate: import jsonl: line ${progress.lineNumber}: ${jsonlCounts(progress)}\n`);
              await record(progress, false);
            },
          });
        } catch (error) {
          if (!(error instanceof JsonlImportStopped)) throw error;
          await record(error.counts, false);
          await audit(db, 'import.jsonl', tenant.id, 'failure', { line: error.lineError.lineNumber, conversations: error.counts.conversations, messages: error.counts.messages, skipped: error.counts.skipped });
          const before = error.lineError.lineNumber > 1 ? `the lines before it are imported (${jsonlCounts(error.counts)})` : 'nothing was imported';
          throw new CliError(`${error.message}; the import stopped at this line and ${before}; fix the line and run the same command again (lines already imported are not imported twice)`);
        }
        await record(counts, true);
        await audit(db, 'import.jsonl', tenant.id, 'success', { conversations: counts.conversations, messages: counts.messages, skipped: counts.skipped });
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
        const db = runtime.database.db;
        // Opened (settings and secrets): the import reads the tenant's Airtable table with its token.
        const tenants = new TenantDirectory(db, new TenantRepository(db, runtime.sealing.fields, runtime.sealing.keyring));
        const tenant = (await tenants.bySlug(options.tenant)) ?? unknownTenant(options.tenant);
        const airtable = tenant.settings.airtable;
        const apiKey = tenant.secrets.airtableApiKey;
        if (!airtable || !apiKey) throw new CliError(`tenant ${tenant.slug} has no airtable block; add it with \`ciphergate tenants put ${tenant.slug}\``);
        const records = createAirtableRecordsClient({ apiUrl: runtime.config.providers.airtableApiUrl });
        let report: AirtableImportReport;
        try {
          report = await importAirtable(
            { tenantId: tenant.id, airtable: { apiKey, baseId: airtable.baseId, table: airtable.table }, policies: airtable.fields },
            { conversations: new ConversationRepository(db, runtime.sealing.fields), runs: new ImportRuns(db) },
            records,
            {
              ...(options.defaultCountry ? { defaultCountry: options.defaultCountry } : {}),
              pageSize: options.pageSize,
              onNote: (note) => io.stderr.write(`ciphergate: note: ${note}\n`),
              onUnreadable: (row) => io.stderr.write(`ciphergate: note: row ${row.recordId}: ${row.column}: ${row.reason}; left as it is\n`),
              onPage: (progress) => io.stderr.write(`ciphergate: import airtable: page ${progress.pages}: ${airtableCounts(progress)}\n`),
            },
          );
        } catch (error) {
          if (!(error instanceof AirtableImportStopped)) throw error;
          await audit(db, 'import.airtable', tenant.id, 'failure', { run: error.report.runId, pages: error.report.pages, messages: error.report.messages, skipped: error.report.skipped });
          const pages = error.report.pages;
          const done = pages === 0 ? 'nothing was imported in this run' : `the rows read before (${counted(pages, 'page')} in this run) are imported and recorded`;
          throw new CliError(`import airtable stopped: ${describeFailure(error.cause)}; ${done}; run the same command again to continue`);
        }
        await audit(db, 'import.airtable', tenant.id, report.unreadable.length === 0 ? 'success' : 'failure', {
          run: report.runId,
          pages: report.pages,
          messages: report.messages,
          skipped: report.skipped,
          unreadable: report.unreadable.length,
        });
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

/** ProviderError messages hold a status and Airtable's error type only, never cell values (airtable-errors.ts). */
function describeFailure(cause: unknown): string {
  if (cause instanceof ProviderError) {
    const hint =
      cause.code === 'UNKNOWN_FIELD_NAME'
        ? ' (the table needs a text field named "Ciphergate ID", see docs/import.md)'
        : cause.status === 401 || cause.status === 403
          ? " (check the tenant's Airtable token and its scopes data.records:read and data.records:write)"
          : cause.status === 404
            ? ' (check airtable.baseId and airtable.table in tenant.json)'
            : '';
    return `${cause.message}${hint}`;
  }
  return cause instanceof Error ? cause.message : String(cause);
}

async function audit(db: Db, action: AuditAction, tenantId: string, outcome: 'success' | 'failure', details: Record<string, string | number>): Promise<void> {
  await appendAuditEvent(db, { actor: { type: 'system', id: 'cli' }, action, target: { type: 'tenant', id: tenantId }, tenantId, outcome, details });
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
