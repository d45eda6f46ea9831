import Airtable from 'airtable';
import { ProviderError } from '../provider-error.js';
import { AIRTABLE_RATE_LIMIT_WAIT_SECONDS, toAirtableProviderError } from './airtable-errors.js';
import { assertBaseId } from './airtable-ids.js';
import { createBasePacer, type BasePacer } from './base-pacer.js';

/**
 * Reads and writes rows of a tenant's Airtable table through the official `airtable` package,
 * paced to Airtable's limits.
 *
 * Every call goes through the SDK's `base.makeRequest` (typed in airtable_base.d.ts), which applies
 * the SDK's auth header, endpoint and request timeout. The higher-level Table methods do not fit
 * what we need (read in node_modules/airtable/lib, 0.12.2):
 * - `table.update(records, opts)` spreads `opts` into the body, so `performUpsert` would reach
 *   Airtable, but its types accept neither `performUpsert` nor records without an `id`;
 * - `select().eachPage()` keeps the `offset` to itself, and an import must save it to resume;
 * - they wrap rows in Record objects whose fields are typed as the SDK's FieldSet.
 *
 * Rate limiting is ours, not the SDK's: by default airtable.js retries a 429 by itself with
 * exponential backoff and jitter from 5 s up to 10 minutes, without limit
 * (run_action.js / base.js + internal_config.json). That would hold a job for minutes and ignore
 * Airtable's documented rule, so it is switched off (`noRetryIfRateLimited: true`) and replaced by:
 * at most 5 requests per second per base (BasePacer), and on a 429 a 30-second wait before trying
 * again (https://airtable.com/developers/web/api/rate-limits), a few times before the job queue
 * takes over.
 */

export interface AirtableTarget {
  apiKey: string;
  baseId: string;
  /** Table name or id (`tbl…`). */
  table: string;
}

export interface AirtableRecord {
  id: string;
  fields: Record<string, unknown>;
  /** When the row was made (Airtable sets it on every record; absent on our own write payloads). */
  createdTime?: string;
}

export interface AirtableRecordsPage {
  records: AirtableRecord[];
  /** Pass back as `offset` to continue after this page; absent on the last page. */
  offset?: string;
}

export interface AirtableRecordsClient {
  /** Creates or updates rows matched on `mergeOn` (1 to 3 field names), 10 rows per request. */
  upsert(target: AirtableTarget, records: Array<{ fields: Record<string, unknown> }>, mergeOn: string[]): Promise<AirtableRecord[]>;
  /** Changes the given fields of existing rows (fields not named stay as they are), 10 rows per request. */
  update(target: AirtableTarget, records: AirtableRecord[]): Promise<void>;
  /** One row by id; undefined when Airtable does not know it. */
  find(target: AirtableTarget, recordId: string): Promise<AirtableRecord | undefined>;
  /**
   * All records page by page (for import), resumable from an offset. Airtable forgets offsets
   * after a few minutes: resuming later fails with a non-retryable 422 whose code is
   * `LIST_RECORDS_ITERATOR_NOT_AVAILABLE`, and the caller has to start again without an offset.
   */
  listPages(target: AirtableTarget, options: { pageSize?: number; offset?: string; fields?: string[] }): AsyncIterable<AirtableRecordsPage>;
}

export interface AirtableRecordsClientOptions {
  /** CIPHERGATE_AIRTABLE_API_URL, without `/v0`. */
  apiUrl: string;
  timeoutMs?: number;
  /** How to wait out a 429; injectable so tests need not wait 30 seconds. */
  sleep?: (ms: number) => Promise<void>;
  requestsPerSecond?: number;
  /** Share one pacer with the webhooks client so both count against the same per-base budget. */
  pacer?: BasePacer;
}

/** Airtable's limit for create, update and upsert: https://airtable.com/developers/web/api/update-multiple-records */
export const AIRTABLE_MAX_RECORDS_PER_REQUEST = 10;
/** Airtable's largest list page: https://airtable.com/developers/web/api/list-records */
const MAX_PAGE_SIZE = 100;
/** 30-second waits within one call before the 429 goes to the job queue (which waits the same 30 s). */
const RATE_LIMIT_RETRIES = 2;
const DEFAULT_TIMEOUT_MS = 30_000;

export function createAirtableRecordsClient(options: AirtableRecordsClientOptions): AirtableRecordsClient {
  const endpointUrl = options.apiUrl.replace(/\/+$/, '');
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const pacer = options.pacer ?? createBasePacer({ requestsPerSecond: options.requestsPerSecond });

  async function request(target: AirtableTarget, init: { method: 'GET' | 'PATCH'; path: string; qs?: Record<string, unknown>; body?: unknown }): Promise<unknown> {
    assertBaseId(target.baseId);
    // A fresh SDK object per call is cheap (it holds settings, no connections) and keeps no
    // tenant's key in a long-lived structure.
    const base = new Airtable({ apiKey: target.apiKey, endpointUrl, requestTimeout: timeoutMs, noRetryIfRateLimited: true }).base(target.baseId);
    for (let attempt = 0; ; attempt += 1) {
      await pacer.take(target.baseId);
      try {
        const response = await base.makeRequest(init);
        return response.body as unknown;
      } catch (error) {
        const failure = toAirtableProviderError(error);
        if (failure.status !== 429 || attempt >= RATE_LIMIT_RETRIES) throw failure;
        await sleep((failure.retryAfterSeconds ?? AIRTABLE_RATE_LIMIT_WAIT_SECONDS) * 1000);
      }
    }
  }

  return {
    async upsert(target, records, mergeOn) {
      if (mergeOn.length < 1 || mergeOn.length > 3) throw new RangeError('mergeOn takes 1 to 3 field names');
      for (const record of records) {
        if (mergeOn.some((field) => record.fields[field] === undefined || record.fields[field] === null || record.fields[field] === '')) {
          throw new RangeError('every upserted record needs a value in each mergeOn field');
        }
      }
      const written: AirtableRecord[] = [];
      // Batches are sent one after another. If a later batch fails, the earlier ones stay written;
      // that is safe because the whole call is an upsert on stable keys and can simply run again.
      for (const batch of chunks(records, AIRTABLE_MAX_RECORDS_PER_REQUEST)) {
        const body = await request(target, {
          method: 'PATCH',
          path: tablePath(target.table),
          // https://airtable.com/developers/web/api/update-multiple-records#request-performupsert
          body: { performUpsert: { fieldsToMergeOn: mergeOn }, records: batch.map((record) => ({ fields: record.fields })) },
        });
        written.push(...recordsOf(body));
      }
      return written;
    },

    async update(target, records) {
      for (const batch of chunks(records, AIRTABLE_MAX_RECORDS_PER_REQUEST)) {
        const body = await request(target, {
          method: 'PATCH',
          path: tablePath(target.table),
          body: { records: batch.map((record) => ({ id: record.id, fields: record.fields })) },
        });
        recordsOf(body);
      }
    },

    async find(target, recordId) {
      try {
        const body = await request(target, { method: 'GET', path: `${tablePath(target.table)}/${encodeURIComponent(recordId)}` });
        return toRecord(body);
      } catch (error) {
        if (error instanceof ProviderError && error.status === 404) return undefined;
        throw error;
      }
    },

    async *listPages(target, listOptions) {
      const pageSize = Math.min(Math.max(1, Math.floor(listOptions.pageSize ?? MAX_PAGE_SIZE)), MAX_PAGE_SIZE);
      let offset = listOptions.offset;
      do {
        const qs: Record<string, unknown> = { pageSize };
        if (offset) qs['offset'] = offset;
        // The SDK serialises an array under a key ending in [] as `fields[]=A&fields[]=B`, the form
        // Airtable documents (object_to_query_param_string.js).
        if (listOptions.fields?.length) qs['fields[]'] = listOptions.fields;
        const body = await request(target, { method: 'GET', path: tablePath(target.table), qs });
        const records = recordsOf(body);
        offset = typeof (body as { offset?: unknown }).offset === 'string' ? (body as { offset: string }).offset : undefined;
        yield offset === undefined ? { records } : { records, offset };
      } while (offset);
    },
  };
}

function tablePath(table: string): string {
  return `/${encodeURIComponent(table)}`;
}

function chunks<T>(items: T[], size: number): T[][] {
  const result: T[][] = [];
  for (let index = 0; index < items.length; index += size) result.push(items.slice(index, index + size));
  return result;
}

function recordsOf(body: unknown): AirtableRecord[] {
  const records = (body as { records?: unknown } | null)?.records;
  if (!Array.isArray(records)) throw unexpectedAnswer();
  return records.map(toRecord);
}

function toRecord(json: unknown): AirtableRecord {
  const candidate = json as { id?: unknown; fields?: unknown; createdTime?: unknown } | null;
  if (typeof candidate?.id !== 'string' || typeof candidate.fields !== 'object' || candidate.fields === null) throw unexpectedAnswer();
  const record: AirtableRecord = { id: candidate.id, fields: candidate.fields as Record<string, unknown> };
  if (typeof candidate.createdTime === 'string') record.createdTime = candidate.createdTime;
  return record;
}

function unexpectedAnswer(): ProviderError {
  return new ProviderError({ provider: 'airtable', message: 'Airtable answered in an unexpected shape', retryable: false });
}
