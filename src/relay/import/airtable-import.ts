import type { CountryCode } from 'libphonenumber-js';
import type { AirtableRecord, AirtableRecordsClient, AirtableTarget } from '../../providers/airtable/records-client.js';
import { ProviderError } from '../../providers/provider-error.js';
import type { ConversationRepository } from '../../store/repositories/conversations.js';
import type { TenantSettings } from '../../domain/tenant.js';
import { presentField, type FieldPolicy, type PresentedFieldKind } from '../field-policy.js';
import { LEGACY_COLUMNS, readLegacyRow, type LegacyRow, type ListedRecord } from './airtable-legacy-row.js';
import type { ImportRuns } from '../../store/repositories/import-runs.js';
import { airtableDedupeKey, historyMessage, type ImportedThread } from './store-imported.js';

/**
 * `ciphergate import airtable`: reads the plain-text rows already in a tenant's Airtable table
 * (one message per row, see airtable-legacy-row.ts), stores them sealed, then rewrites the
 * personal cells by the tenant's field policy and stamps each row with its "Ciphergate ID", so
 * the plain text leaves Airtable.
 *
 * Page by page, in an order that survives a crash anywhere:
 *   1. store the page's messages (one transaction per contact; dedupe key
 *      `import:airtable:<record id>`, so storing again finds the same rows),
 *   2. rewrite the page's rows in Airtable (10 per request; a row and its Ciphergate ID change
 *      in the same request),
 *   3. record Airtable's offset of the next page in import_runs.
 * A run that stops (Airtable failing, the process killed) is continued by the next run from the
 * recorded offset: the unfinished page is read again, its stored messages are found by their
 * dedupe keys, and rows already rewritten carry a Ciphergate ID and are skipped.
 *
 * Airtable forgets list offsets after a few minutes (`LIST_RECORDS_ITERATOR_NOT_AVAILABLE`,
 * https://airtable.com/developers/web/api/list-records). A continuation whose offset has expired
 * starts again from the first page, which is safe for the same reasons.
 */

export interface AirtableImportSource {
  tenantId: string;
  airtable: AirtableTarget;
  /** The tenant's `airtable.fields`; a kind without a policy is `omitted`, as in the relay's sync. */
  policies: NonNullable<TenantSettings['airtable']>['fields'];
}

export interface AirtableImportOptions {
  defaultCountry?: CountryCode;
  /** Rows per page, 1 to 100 (Airtable's largest, and the default). */
  pageSize?: number;
  onPage?: (report: AirtableImportReport) => void;
  /** A row left as it is because it could not be read; never carries a value. */
  onUnreadable?: (row: UnreadableRow) => void;
  /** Resumed, restarted: things the operator should know. */
  onNote?: (note: string) => void;
}

export interface UnreadableRow {
  recordId: string;
  column: string;
  reason: string;
}

export interface AirtableImportReport {
  runId: string;
  /** This run continued one that had stopped. */
  resumed: boolean;
  /** The continued run's offset had expired, so it started again from the first page. */
  restarted: boolean;
  pages: number;
  /** Rows read, of every kind. */
  rows: number;
  /** Conversations that gained messages. */
  conversations: number;
  /** Messages stored (new ones only). */
  messages: number;
  /** Rows rewritten in Airtable by the policy. */
  rewritten: number;
  /** Rows that already had a Ciphergate ID. */
  skipped: number;
  /** Rows with neither phone nor message. */
  empty: number;
  unreadable: UnreadableRow[];
}

/** Airtable failed (or the database did) part-way; `report` says what was done before. */
export class AirtableImportStopped extends Error {
  override readonly name = 'AirtableImportStopped';
  constructor(
    override readonly cause: unknown,
    readonly report: AirtableImportReport,
  ) {
    super(cause instanceof Error ? cause.message : String(cause));
  }
}

/** Airtable's error type for a list offset it no longer honours. */
export const EXPIRED_OFFSET_CODE = 'LIST_RECORDS_ITERATOR_NOT_AVAILABLE';

export async function importAirtable(
  source: AirtableImportSource,
  store: { conversations: ConversationRepository; runs: ImportRuns },
  records: AirtableRecordsClient,
  options: AirtableImportOptions = {},
): Promise<AirtableImportReport> {
  const unfinished = await store.runs.unfinished(source.tenantId, 'airtable');
  const run = unfinished ?? (await store.runs.start(source.tenantId, 'airtable'));
  const report: AirtableImportReport = {
    runId: run.id,
    resumed: unfinished !== undefined,
    restarted: false,
    pages: 0,
    rows: 0,
    conversations: 0,
    messages: 0,
    rewritten: 0,
    skipped: 0,
    empty: 0,
    unreadable: [],
  };
  if (unfinished) options.onNote?.(`continuing the import that stopped on ${unfinished.updatedAt.toISOString()} (run ${run.id})`);
  const touchedConversations = new Set<string>();
  let offset = run.nextOffset ?? undefined;

  for (;;) {
    let pagesThisPass = 0;
    try {
      for await (const page of records.listPages(source.airtable, { offset, ...(options.pageSize ? { pageSize: options.pageSize } : {}) })) {
        pagesThisPass += 1;
        const outcome = await importPage(source, store.conversations, records, page.records, options);
        report.pages += 1;
        report.rows += page.records.length;
        report.messages += outcome.messages;
        report.rewritten += outcome.rewritten;
        report.skipped += outcome.skipped;
        report.empty += outcome.empty;
        report.unreadable.push(...outcome.unreadable);
        for (const id of outcome.conversationIds) touchedConversations.add(id);
        report.conversations = touchedConversations.size;
        for (const row of outcome.unreadable) options.onUnreadable?.(row);
        offset = page.offset;
        await store.runs.record(run.id, {
          imported: outcome.messages,
          skipped: outcome.skipped,
          nextOffset: page.offset ?? null,
          done: page.offset === undefined,
        });
        options.onPage?.({ ...report, unreadable: [...report.unreadable] });
      }
      return report;
    } catch (error) {
      if (pagesThisPass === 0 && offset !== undefined && error instanceof ProviderError && error.code === EXPIRED_OFFSET_CODE) {
        options.onNote?.('Airtable no longer honours the page offset the stopped import recorded (offsets expire after minutes); starting again from the first page, where rows already imported are skipped');
        report.restarted = true;
        offset = undefined;
        await store.runs.record(run.id, { imported: 0, skipped: 0, nextOffset: null });
        continue;
      }
      throw new AirtableImportStopped(error, report);
    }
  }
}

// ---------------------------------------------------------------------------------------

interface PageOutcome {
  messages: number;
  rewritten: number;
  skipped: number;
  empty: number;
  unreadable: UnreadableRow[];
  conversationIds: string[];
}

async function importPage(
  source: AirtableImportSource,
  conversations: ConversationRepository,
  records: AirtableRecordsClient,
  page: AirtableRecord[],
  options: AirtableImportOptions,
): Promise<PageOutcome> {
  const outcome: PageOutcome = { messages: 0, rewritten: 0, skipped: 0, empty: 0, unreadable: [], conversationIds: [] };
  const rowsByPhone = new Map<string, LegacyRow[]>();
  for (const record of page as ListedRecord[]) {
    const reading = readLegacyRow(record, options.defaultCountry ? { defaultCountry: options.defaultCountry } : {});
    if (reading.kind === 'imported') outcome.skipped += 1;
    else if (reading.kind === 'empty') outcome.empty += 1;
    else if (reading.kind === 'unreadable') outcome.unreadable.push({ recordId: record.id, column: reading.column, reason: reading.reason });
    else rowsByPhone.set(reading.row.phone, [...(rowsByPhone.get(reading.row.phone) ?? []), reading.row]);
  }

  const rewrites: AirtableRecord[] = [];
  for (const [phone, rows] of rowsByPhone) {
    const thread: ImportedThread = {
      phone,
      // The name on the newest row: a contact renamed in Airtable keeps the newer spelling.
      name: [...rows].sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime()).find((row) => row.name !== null)?.name ?? null,
      messages: rows.map((row) =>
        historyMessage({ dedupeKey: airtableDedupeKey(row.recordId), direction: row.direction, author: row.author, body: row.body, createdAt: row.createdAt, airtableRecordId: row.recordId }),
      ),
    };
    const stored = await conversations.storeImported(source.tenantId, thread);
    const added = stored.messages.filter((message) => message.inserted).length;
    outcome.messages += added;
    if (added > 0) outcome.conversationIds.push(stored.conversationId);
    rows.forEach((row, index) => {
      rewrites.push(rewriteOf(row, { messageId: stored.messages[index]!.messageId, contactId: stored.contactId }, thread.messages[index]!.author === 'ai', source.policies));
    });
  }
  // Airtable applies each request of up to 10 rows whole; the client batches.
  if (rewrites.length > 0) await records.update(source.airtable, rewrites);
  outcome.rewritten = rewrites.length;
  return outcome;
}

/**
 * The cells to write back for one imported row: each personal cell as the tenant's policy shows
 * it (references as the relay's sync writes them: the contact id for phone and name, the message
 * id for the text), and the row's Ciphergate ID. `plain` leaves a cell as it is; `omitted` clears
 * it, because the point of the rewrite is that no plain text the policy hides stays behind.
 */
function rewriteOf(row: LegacyRow, stored: { messageId: string; contactId: string }, isAiAnswer: boolean, policies: AirtableImportSource['policies']): AirtableRecord {
  const fields: Record<string, unknown> = { [LEGACY_COLUMNS.ciphergateId]: stored.messageId };
  const rewrite = (column: string, kind: PresentedFieldKind, value: string, reference: string) => {
    const policy: FieldPolicy = policies[kind] ?? 'omitted';
    if (policy === 'plain') return;
    fields[column] = presentField(kind, value, policy, reference) ?? null;
  };
  rewrite(LEGACY_COLUMNS.phone, 'phone', row.phone, stored.contactId);
  if (row.name !== null) rewrite(LEGACY_COLUMNS.name, 'name', row.name, stored.contactId);
  rewrite(row.bodyColumn, isAiAnswer ? 'aiReply' : 'body', row.body, stored.messageId);
  return { id: row.recordId, fields };
}
