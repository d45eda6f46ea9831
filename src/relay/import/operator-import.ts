import type { CountryCode } from 'libphonenumber-js';
import type { AuditAction } from '../../domain/audit-actions.js';
import { createAirtableRecordsClient } from '../../providers/airtable/records-client.js';
import { ProviderError } from '../../providers/provider-error.js';
import type { StoredKeyring } from '../../seal/keyring.js';
import type { SealedFields } from '../../seal/sealed-fields.js';
import { appendAuditEvent } from '../../store/audit-trail.js';
import type { Db } from '../../store/connection.js';
import { ConversationRepository } from '../../store/repositories/conversations.js';
import { ImportRuns } from '../../store/repositories/import-runs.js';
import { TenantRepository } from '../../store/repositories/tenants.js';
import { TenantDirectory } from '../tenant-directory.js';
import { importAirtable, AirtableImportStopped, type AirtableImportOptions, type AirtableImportReport } from './airtable-import.js';
import { importJsonl, JsonlImportStopped, type JsonlImportCounts } from './jsonl-import.js';

/**
 * The imports as the operator runs them (`ciphergate import jsonl|airtable`): each run recorded
 * in import_runs and audited (`import.jsonl`, `import.airtable`) whether it finished or stopped.
 * A stop is rethrown (JsonlImportStopped, AirtableImportStopped) after it is recorded, for the
 * front end to word.
 */

export interface ImportDeps {
  db: Db;
  fields: SealedFields;
}

/** Imports the mongoexport lines of `input` into the tenant `tenantId`, recording progress as it goes. */
export async function runJsonlImport(
  deps: ImportDeps,
  tenantId: string,
  input: AsyncIterable<string | Buffer>,
  options: { defaultCountry?: CountryCode; progressEvery: number; onProgress: (progress: JsonlImportCounts) => void },
): Promise<JsonlImportCounts> {
  const { db } = deps;
  const runs = new ImportRuns(db);
  const run = await runs.start(tenantId, 'jsonl');
  const recorded = { imported: 0, skipped: 0 };
  const record = async (counts: JsonlImportCounts, done: boolean) => {
    await runs.record(run.id, { imported: counts.messages - recorded.imported, skipped: counts.skipped - recorded.skipped, done });
    recorded.imported = counts.messages;
    recorded.skipped = counts.skipped;
  };
  let counts: JsonlImportCounts;
  try {
    counts = await importJsonl(input, { tenantId, conversations: new ConversationRepository(db, deps.fields) }, {
      ...(options.defaultCountry ? { defaultCountry: options.defaultCountry } : {}),
      progressEvery: options.progressEvery,
      onProgress: async (progress) => {
        options.onProgress(progress);
        await record(progress, false);
      },
    });
  } catch (error) {
    if (!(error instanceof JsonlImportStopped)) throw error;
    await record(error.counts, false);
    await audit(db, 'import.jsonl', tenantId, 'failure', { line: error.lineError.lineNumber, conversations: error.counts.conversations, messages: error.counts.messages, skipped: error.counts.skipped });
    throw error;
  }
  await record(counts, true);
  await audit(db, 'import.jsonl', tenantId, 'success', { conversations: counts.conversations, messages: counts.messages, skipped: counts.skipped });
  return counts;
}

export type AirtableImportOutcome =
  | { ok: true; report: AirtableImportReport }
  | { ok: false; code: 'tenant-not-found' }
  /** The tenant has no `airtable` block (or no token) to read its table with. */
  | { ok: false; code: 'provider-not-configured'; slug: string };

/**
 * Imports the plain-text rows of the tenant `slug`'s Airtable table, sealed, and rewrites them by
 * its field policy; resumes a run that stopped. Rows that could not be read are in the report
 * (and make the audit entry a failure).
 */
export async function runAirtableImport(
  deps: ImportDeps & { keyring: StoredKeyring; airtableApiUrl: string },
  slug: string,
  options: Pick<AirtableImportOptions, 'defaultCountry' | 'onNote' | 'onUnreadable' | 'onPage'> & { pageSize: number },
): Promise<AirtableImportOutcome> {
  const { db } = deps;
  // Opened (settings and secrets): the import reads the tenant's Airtable table with its token.
  const tenants = new TenantDirectory(db, new TenantRepository(db, deps.fields, deps.keyring));
  const tenant = await tenants.bySlug(slug);
  if (!tenant) return { ok: false, code: 'tenant-not-found' };
  const airtable = tenant.settings.airtable;
  const apiKey = tenant.secrets.airtableApiKey;
  if (!airtable || !apiKey) return { ok: false, code: 'provider-not-configured', slug: tenant.slug };
  const records = createAirtableRecordsClient({ apiUrl: deps.airtableApiUrl });
  let report: AirtableImportReport;
  try {
    report = await importAirtable(
      { tenantId: tenant.id, airtable: { apiKey, baseId: airtable.baseId, table: airtable.table }, policies: airtable.fields },
      { conversations: new ConversationRepository(db, deps.fields), runs: new ImportRuns(db) },
      records,
      options,
    );
  } catch (error) {
    if (!(error instanceof AirtableImportStopped)) throw error;
    await audit(db, 'import.airtable', tenant.id, 'failure', { run: error.report.runId, pages: error.report.pages, messages: error.report.messages, skipped: error.report.skipped });
    throw error;
  }
  await audit(db, 'import.airtable', tenant.id, report.unreadable.length === 0 ? 'success' : 'failure', {
    run: report.runId,
    pages: report.pages,
    messages: report.messages,
    skipped: report.skipped,
    unreadable: report.unreadable.length,
  });
  return { ok: true, report };
}

/** Why an Airtable import stopped, in one line with a hint at the fix; ProviderError messages hold a status and Airtable's error type only, never cell values (airtable-errors.ts). */
export function describeImportFailure(cause: unknown): string {
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
