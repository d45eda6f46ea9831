import { createHash, createHmac, randomBytes } from 'node:crypto';
import type { AirtableActionSource, AirtablePayload, AirtableTableChanges } from '../../src/providers/airtable/webhook-payload.js';
import { startFakeServer, type FakeResponse, type FakeServer, type RecordedRequest } from './fake-server.js';

/**
 * A local Airtable that speaks the REST records API and the webhooks API on the wire
 * (https://airtable.com/developers/web/api/introduction): Bearer auth, record lists with
 * pageSize/offset/fields[], find, create, update and upsert (`performUpsert`) of at most 10
 * records, webhooks with payloads behind a cursor, and the error bodies Airtable gives.
 *
 * Like Airtable, it omits empty cells (false checkboxes, empty text) from the records it returns,
 * keys webhook payloads by field id (`fld…`) and table id (`tbl…`), records every change made
 * through the API as a `publicApi` payload, and describes its tables through the metadata API
 * (`GET /v0/meta/bases/{baseId}/tables`). Tables are created on first use (or by createTable) and
 * looked up by name or id. Every table starts with the fields of Ciphergate's documented layout
 * (CIPHERGATE_TABLE_FIELDS) and gains any other field written to it, unless `strictFields` makes
 * an unknown field name a 422 UNKNOWN_FIELD_NAME as in Airtable.
 *
 * Every request's arrival time is kept per base, and more than `rateLimitPerSecond` requests to
 * one base within any second is recorded in `violations` (the real Airtable would lock the base
 * out for 30 seconds).
 */

export type FakeFields = Record<string, unknown>;

export interface FakeWebhook {
  id: string;
  baseId: string;
  macSecretBase64: string;
  notificationUrl: string | null;
  specification: { options?: { filters?: { dataTypes?: string[]; recordChangeScope?: string; fromSources?: string[] }; includes?: { includePreviousCellValues?: boolean } } };
  expirationTime: string;
  /** Payload number n (the cursor value) is at index n - 1. */
  payloads: AirtablePayload[];
}

export interface AirtableNotification {
  base: { id: string };
  webhook: { id: string };
  timestamp: string;
}

export interface AirtableFake extends FakeServer {
  /** `${baseId}/${tableName}` → record id → fields (by name). */
  readonly tables: Map<string, Map<string, FakeFields>>;
  readonly webhooks: Map<string, FakeWebhook>;
  /** Arrival times (ms since epoch) of every request to a base, records and webhooks APIs alike. */
  readonly requestTimesByBase: Map<string, number[]>;
  /** The most requests to `baseId` that arrived within any window of `windowMs` (default one second). */
  maxRequestsInWindow(baseId: string, windowMs?: number): number;
  /** Adds a row as a staff member would in the Airtable UI (a `client` payload); returns its id. */
  addRecord(baseId: string, table: string, fields: FakeFields): string;
  /**
   * Changes a row as staff would (`client` by default), appends the webhook payload, and returns
   * the notification body Airtable would POST to the webhook's URL (sign it with
   * signAirtableNotification).
   */
  editRecord(baseId: string, table: string, recordId: string, fields: FakeFields, source?: AirtableActionSource): AirtableNotification;
  tableId(baseId: string, table: string): string;
  fieldId(baseId: string, table: string, fieldName: string): string;
  /**
   * Forgets every list offset handed out so far, as Airtable does after a few minutes: using one
   * afterwards gets 422 LIST_RECORDS_ITERATOR_NOT_AVAILABLE.
   */
  expireListOffsets(): void;
  /** Creates a table (as an operator would) with these fields besides the default ones. */
  createTable(baseId: string, table: string, fields?: Record<string, AirtableFieldType>): void;
}

export type AirtableFieldType = 'singleLineText' | 'multilineText' | 'checkbox' | 'dateTime' | 'number' | 'email' | 'phoneNumber';

/** The table layout docs/providers.md asks operators to create (one row per message). */
export const CIPHERGATE_TABLE_FIELDS: Record<string, AirtableFieldType> = {
  'Ciphergate ID': 'singleLineText',
  'Conversation ID': 'singleLineText',
  Direction: 'singleLineText',
  Author: 'singleLineText',
  Phone: 'singleLineText',
  Name: 'singleLineText',
  Body: 'multilineText',
  'AI Reply': 'multilineText',
  Status: 'singleLineText',
  Created: 'dateTime',
  'Pause AI': 'checkbox',
  'Manual Reply': 'multilineText',
};

export const DEFAULT_AIRTABLE_KEY = 'patFakeCiphergate.0123456789abcdef';

/** The `X-Airtable-Content-MAC` header value for a notification body, computed the way Airtable does. */
export function signAirtableNotification(macSecretBase64: string, rawBody: string | Buffer): string {
  return `hmac-sha256=${createHmac('sha256', Buffer.from(macSecretBase64, 'base64')).update(rawBody).digest('hex')}`;
}

export async function startAirtableFake(
  options: { apiKeys?: string[]; rateLimitPerSecond?: number; defaultFields?: Record<string, AirtableFieldType>; strictFields?: boolean } = {},
): Promise<AirtableFake> {
  const state = new FakeAirtableState(options.defaultFields ?? CIPHERGATE_TABLE_FIELDS, options.strictFields ?? false);
  const apiKeys = new Set(options.apiKeys ?? [DEFAULT_AIRTABLE_KEY]);
  const rateLimit = options.rateLimitPerSecond ?? 5;
  const requestTimesByBase = new Map<string, number[]>();

  const check = (request: RecordedRequest): string[] => {
    const problems: string[] = [];
    const baseId = baseIdOf(request.path);
    if (baseId) {
      const times = requestTimesByBase.get(baseId) ?? [];
      const arrived = Date.now();
      times.push(arrived);
      requestTimesByBase.set(baseId, times);
      const inLastSecond = times.filter((time) => time > arrived - 1000).length;
      if (rateLimit > 0 && inLastSecond > rateLimit) problems.push(`${baseId}: ${inLastSecond} requests within one second (Airtable allows ${rateLimit})`);
    }
    if (!/^Bearer \S+$/.test(request.headers.authorization ?? '')) problems.push(`${request.method} ${request.path}: no Bearer Authorization header`);
    if (['POST', 'PATCH', 'PUT'].includes(request.method) && request.rawBody.length > 0 && parseJson(request.rawBody) === undefined) {
      problems.push(`${request.method} ${request.path}: body is not JSON`);
    }
    return problems;
  };

  const handle = (request: RecordedRequest): FakeResponse => {
    const token = /^Bearer (\S+)$/.exec(request.headers.authorization ?? '')?.[1];
    if (!token || !apiKeys.has(token)) {
      return { status: 401, body: { error: { type: 'AUTHENTICATION_REQUIRED', message: 'Authentication required' } } };
    }
    return route(state, request);
  };

  const fake = await startFakeServer(handle, { check });
  return Object.assign(fake, {
    tables: state.tables,
    webhooks: state.webhooks,
    requestTimesByBase,
    maxRequestsInWindow(baseId: string, windowMs = 1000) {
      const times = [...(requestTimesByBase.get(baseId) ?? [])].sort((a, b) => a - b);
      let most = 0;
      for (let start = 0, end = 0; start < times.length; start += 1) {
        while (end < times.length && times[end]! < times[start]! + windowMs) end += 1;
        most = Math.max(most, end - start);
      }
      return most;
    },
    addRecord(baseId: string, table: string, fields: FakeFields) {
      return state.createRecord(baseId, table, fields, 'client').id;
    },
    editRecord(baseId: string, table: string, recordId: string, fields: FakeFields, source: AirtableActionSource = 'client') {
      if (!state.table(baseId, table).has(recordId)) throw new Error(`the fake has no record ${recordId} in ${baseId}/${table}`);
      state.updateRecord(baseId, table, recordId, fields, { replace: false, source });
      const webhook = [...state.webhooks.values()].find((candidate) => candidate.baseId === baseId && state.watches(candidate, baseId, table, source));
      if (!webhook) throw new Error(`no webhook on ${baseId} watches this change: create one first`);
      return { base: { id: baseId }, webhook: { id: webhook.id }, timestamp: new Date().toISOString() };
    },
    tableId: (baseId: string, table: string) => state.tableId(baseId, table),
    fieldId: (baseId: string, table: string, fieldName: string) => state.fieldId(baseId, table, fieldName),
    expireListOffsets: () => state.liveIterators.clear(),
    createTable(baseId: string, table: string, fields: Record<string, AirtableFieldType> = {}) {
      state.table(baseId, table);
      for (const [name, type] of Object.entries(fields)) state.declareField(baseId, table, name, type);
    },
  });
}

/** Airtable's limits: https://airtable.com/developers/web/api/update-multiple-records, list-records, list-webhook-payloads */
const MAX_RECORDS_PER_WRITE = 10;
const MAX_PAGE_SIZE = 100;
const MAX_PAYLOADS_PER_PAGE = 50;
const WEBHOOK_LIFETIME_MS = 7 * 24 * 60 * 60 * 1000;

class FakeAirtableState {
  readonly tables = new Map<string, Map<string, FakeFields>>();
  readonly webhooks = new Map<string, FakeWebhook>();
  /** The iterator part of list offsets still honoured. */
  readonly liveIterators = new Set<string>();
  /** `${baseId}/${table}` → field name → type, in creation order. */
  private readonly fields = new Map<string, Map<string, AirtableFieldType>>();
  private readonly createdTimes = new Map<string, string>();
  private readonly transactionNumbers = new Map<string, number>();

  constructor(
    private readonly defaultFields: Record<string, AirtableFieldType>,
    readonly strictFields: boolean,
  ) {}

  /** The table's rows, created on first use. `table` may be a name or this fake's `tbl…` id. */
  table(baseId: string, table: string): Map<string, FakeFields> {
    const key = `${baseId}/${this.tableName(baseId, table)}`;
    let rows = this.tables.get(key);
    if (!rows) {
      rows = new Map();
      this.tables.set(key, rows);
      this.fields.set(key, new Map(Object.entries(this.defaultFields)));
    }
    return rows;
  }

  declareField(baseId: string, table: string, name: string, type: AirtableFieldType = 'singleLineText'): void {
    this.table(baseId, table);
    const fields = this.fields.get(`${baseId}/${this.tableName(baseId, table)}`)!;
    if (!fields.has(name)) fields.set(name, type);
  }

  /** Field names the table does not have (only ever non-empty with strictFields). */
  unknownFields(baseId: string, table: string, names: string[]): string[] {
    this.table(baseId, table);
    const fields = this.fields.get(`${baseId}/${this.tableName(baseId, table)}`)!;
    return this.strictFields ? names.filter((name) => !fields.has(name)) : [];
  }

  /** The base's tables as the metadata API describes them: https://airtable.com/developers/web/api/get-base-schema */
  describeBase(baseId: string) {
    return [...this.tables.keys()]
      .filter((key) => key.startsWith(`${baseId}/`))
      .map((key) => {
        const name = key.slice(baseId.length + 1);
        const fields = [...(this.fields.get(key) ?? new Map<string, AirtableFieldType>()).entries()].map(([fieldName, type]) => ({ id: this.fieldId(baseId, name, fieldName), name: fieldName, type }));
        return {
          id: this.tableId(baseId, name),
          name,
          primaryFieldId: fields[0]?.id ?? this.fieldId(baseId, name, 'Name'),
          fields,
          views: [{ id: `viw${stableId(`${key}/Grid view`)}`, name: 'Grid view', type: 'grid' }],
        };
      });
  }

  tableId(baseId: string, table: string): string {
    return `tbl${stableId(`${baseId}/${this.tableName(baseId, table)}`)}`;
  }

  fieldId(baseId: string, table: string, fieldName: string): string {
    return `fld${stableId(`${baseId}/${this.tableName(baseId, table)}/${fieldName}`)}`;
  }

  createdTime(recordId: string): string {
    return this.createdTimes.get(recordId) ?? new Date(0).toISOString();
  }

  createRecord(baseId: string, table: string, fields: FakeFields, source: AirtableActionSource): { id: string; fields: FakeFields } {
    const id = `rec${randomId()}`;
    for (const name of Object.keys(fields)) this.declareField(baseId, table, name);
    const stored = withoutEmptyCells(fields);
    this.table(baseId, table).set(id, stored);
    const createdTime = new Date().toISOString();
    this.createdTimes.set(id, createdTime);
    this.appendPayload(baseId, table, source, {
      createdRecordsById: { [id]: { createdTime, cellValuesByFieldId: this.byFieldId(baseId, table, stored) } },
    }, false);
    return { id, fields: stored };
  }

  updateRecord(baseId: string, table: string, recordId: string, fields: FakeFields, options: { replace: boolean; source: AirtableActionSource }): { id: string; fields: FakeFields } {
    const rows = this.table(baseId, table);
    const before = rows.get(recordId) ?? {};
    for (const name of Object.keys(fields)) this.declareField(baseId, table, name);
    const after = withoutEmptyCells(options.replace ? fields : { ...before, ...fields });
    rows.set(recordId, after);
    const changedNames = [...new Set([...Object.keys(before), ...Object.keys(after)])].filter((name) => JSON.stringify(before[name]) !== JSON.stringify(after[name]));
    if (changedNames.length > 0) {
      const pick = (values: FakeFields) => Object.fromEntries(changedNames.filter((name) => name in values).map((name) => [name, values[name]]));
      this.appendPayload(baseId, table, options.source, {
        changedRecordsById: {
          [recordId]: { current: { cellValuesByFieldId: this.byFieldId(baseId, table, pick(after)) }, previous: { cellValuesByFieldId: this.byFieldId(baseId, table, pick(before)) } },
        },
      }, true);
    }
    return { id: recordId, fields: after };
  }

  createWebhook(baseId: string, body: { notificationUrl?: unknown; specification?: unknown }): FakeWebhook {
    const webhook: FakeWebhook = {
      id: `ach${randomId()}`,
      baseId,
      macSecretBase64: randomBytes(32).toString('base64'),
      notificationUrl: typeof body.notificationUrl === 'string' ? body.notificationUrl : null,
      specification: body.specification as FakeWebhook['specification'],
      expirationTime: new Date(Date.now() + WEBHOOK_LIFETIME_MS).toISOString(),
      payloads: [],
    };
    this.webhooks.set(webhook.id, webhook);
    return webhook;
  }

  watches(webhook: FakeWebhook, baseId: string, table: string, source: AirtableActionSource): boolean {
    const filters = webhook.specification.options?.filters ?? {};
    if (!filters.dataTypes?.includes('tableData')) return false;
    if (filters.recordChangeScope && filters.recordChangeScope !== this.tableId(baseId, table)) return false;
    if (filters.fromSources && !filters.fromSources.includes(source)) return false;
    return true;
  }

  private appendPayload(baseId: string, table: string, source: AirtableActionSource, changes: AirtableTableChanges, hasPrevious: boolean): void {
    const transaction = (this.transactionNumbers.get(baseId) ?? 0) + 1;
    this.transactionNumbers.set(baseId, transaction);
    for (const webhook of this.webhooks.values()) {
      if (webhook.baseId !== baseId || !this.watches(webhook, baseId, table, source)) continue;
      const tableChanges = hasPrevious && !webhook.specification.options?.includes?.includePreviousCellValues ? withoutPrevious(changes) : changes;
      webhook.payloads.push({
        timestamp: new Date().toISOString(),
        baseTransactionNumber: transaction,
        payloadFormat: 'v0',
        actionMetadata: source === 'client' ? { source, sourceMetadata: { user: { id: 'usrFakeStaff00001', email: 'staff@example.test', permissionLevel: 'create' } } } : { source },
        changedTablesById: { [this.tableId(baseId, table)]: tableChanges },
      });
    }
  }

  private byFieldId(baseId: string, table: string, fields: FakeFields): Record<string, unknown> {
    return Object.fromEntries(Object.entries(fields).map(([name, value]) => [this.fieldId(baseId, table, name), value]));
  }

  /** A `tbl…` id known to this fake becomes its table name; anything else is a name. */
  private tableName(baseId: string, table: string): string {
    if (/^tbl[A-Za-z0-9]{14}$/.test(table)) {
      for (const key of this.tables.keys()) {
        const name = key.slice(baseId.length + 1);
        if (key.startsWith(`${baseId}/`) && `tbl${stableId(key)}` === table) return name;
      }
    }
    return table;
  }
}

function route(state: FakeAirtableState, request: RecordedRequest): FakeResponse {
  const segments = request.path.split('/').filter(Boolean).map(decodeURIComponent);
  if (segments[0] !== 'v0') return notFound();
  if (segments[1] === 'meta' && segments[2] === 'bases' && segments[4] === 'tables' && segments.length === 5 && request.method === 'GET') {
    return { status: 200, body: { tables: state.describeBase(segments[3]!) } };
  }
  if (segments[1] === 'bases' && segments[3] === 'webhooks') return routeWebhooks(state, request, segments[2]!, segments.slice(4));
  const [, baseId, table, recordIdOrAction, ...rest] = segments;
  if (!baseId || !table || rest.length > 0) return notFound();
  const body = parseJson(request.rawBody) as Record<string, unknown> | undefined;
  if (request.method !== 'GET') {
    const unknown = state.unknownFields(baseId, table, fieldNamesIn(body));
    if (unknown.length > 0) return invalid('UNKNOWN_FIELD_NAME', `Unknown field name: "${unknown[0]}"`);
  }
  if (recordIdOrAction === 'listRecords' && request.method === 'POST') return listRecords(state, baseId, table, listParamsFromBody(body ?? {}));
  if (recordIdOrAction) {
    const rows = state.table(baseId, table);
    const fields = rows.get(recordIdOrAction);
    if (!fields) return { status: 404, body: { error: 'NOT_FOUND' } };
    if (request.method === 'GET') return { status: 200, body: recordJson(state, recordIdOrAction, fields) };
    if (request.method === 'PATCH' || request.method === 'PUT') {
      const changed = state.updateRecord(baseId, table, recordIdOrAction, asFields(body?.['fields']), { replace: request.method === 'PUT', source: 'publicApi' });
      return { status: 200, body: recordJson(state, changed.id, changed.fields) };
    }
    if (request.method === 'DELETE') {
      rows.delete(recordIdOrAction);
      return { status: 200, body: { id: recordIdOrAction, deleted: true } };
    }
    return notFound();
  }
  switch (request.method) {
    case 'GET':
      return listRecords(state, baseId, table, {
        pageSize: request.query.get('pageSize') ?? undefined,
        offset: request.query.get('offset') ?? undefined,
        fields: request.query.getAll('fields[]'),
      });
    case 'POST':
      return createRecords(state, baseId, table, body ?? {});
    case 'PATCH':
    case 'PUT':
      return updateRecords(state, baseId, table, body ?? {}, request.method === 'PUT');
    default:
      return notFound();
  }
}

interface ListParams {
  pageSize: string | number | undefined;
  offset: string | undefined;
  fields: string[];
}

function listParamsFromBody(body: Record<string, unknown>): ListParams {
  return {
    pageSize: typeof body['pageSize'] === 'number' ? body['pageSize'] : undefined,
    offset: typeof body['offset'] === 'string' ? body['offset'] : undefined,
    fields: Array.isArray(body['fields']) ? body['fields'].filter((field): field is string => typeof field === 'string') : [],
  };
}

/**
 * https://airtable.com/developers/web/api/list-records. An offset is `itr…/rec…`: an iterator
 * this fake still honours (until expireListOffsets, as Airtable's expire after minutes) and the
 * first record of the next page.
 */
function listRecords(state: FakeAirtableState, baseId: string, table: string, params: ListParams): FakeResponse {
  const pageSize = params.pageSize === undefined ? MAX_PAGE_SIZE : Number(params.pageSize);
  if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > MAX_PAGE_SIZE) return invalid('INVALID_REQUEST_UNKNOWN', 'Invalid pageSize');
  const rows = [...state.table(baseId, table).entries()];
  let start = 0;
  if (params.offset) {
    const [, iterator, nextId] = /^(itr[A-Za-z0-9]{14})\/(rec[A-Za-z0-9]{14})$/.exec(params.offset) ?? [];
    start = iterator && state.liveIterators.has(iterator) ? rows.findIndex(([id]) => id === nextId) : -1;
    if (start < 0) return invalid('LIST_RECORDS_ITERATOR_NOT_AVAILABLE', 'The offset is no longer valid');
  }
  const page = rows.slice(start, start + pageSize);
  const next = rows[start + pageSize];
  const records = page.map(([id, fields]) => recordJson(state, id, params.fields.length ? pick(fields, params.fields) : fields));
  if (!next) return { status: 200, body: { records } };
  const iterator = `itr${randomId()}`;
  state.liveIterators.add(iterator);
  return { status: 200, body: { records, offset: `${iterator}/${next[0]}` } };
}

/** https://airtable.com/developers/web/api/create-records */
function createRecords(state: FakeAirtableState, baseId: string, table: string, body: Record<string, unknown>): FakeResponse {
  if (!Array.isArray(body['records'])) {
    const created = state.createRecord(baseId, table, asFields(body['fields']), 'publicApi');
    return { status: 200, body: recordJson(state, created.id, created.fields) };
  }
  const records = body['records'] as Array<{ fields?: unknown }>;
  const tooMany = checkBatch(records);
  if (tooMany) return tooMany;
  const created = records.map((record) => state.createRecord(baseId, table, asFields(record.fields), 'publicApi'));
  return { status: 200, body: { records: created.map((record) => recordJson(state, record.id, record.fields)) } };
}

/** https://airtable.com/developers/web/api/update-multiple-records, with and without performUpsert. */
function updateRecords(state: FakeAirtableState, baseId: string, table: string, body: Record<string, unknown>, replace: boolean): FakeResponse {
  const records = body['records'];
  if (!Array.isArray(records)) return invalid('INVALID_REQUEST_MISSING_FIELDS', 'Could not find field "records" in the request body');
  const tooMany = checkBatch(records);
  if (tooMany) return tooMany;
  const upsert = body['performUpsert'] as { fieldsToMergeOn?: unknown } | undefined;
  const rows = state.table(baseId, table);
  if (!upsert) {
    const missing = (records as Array<{ id?: unknown }>).find((record) => typeof record.id !== 'string' || !rows.has(record.id));
    if (missing) return { status: 404, body: { error: 'NOT_FOUND' } };
    const updated = (records as Array<{ id: string; fields?: unknown }>).map((record) => state.updateRecord(baseId, table, record.id, asFields(record.fields), { replace, source: 'publicApi' }));
    return { status: 200, body: { records: updated.map((record) => recordJson(state, record.id, record.fields)) } };
  }
  const mergeOn = upsert.fieldsToMergeOn;
  if (!Array.isArray(mergeOn) || mergeOn.length < 1 || mergeOn.length > 3 || !mergeOn.every((field) => typeof field === 'string')) {
    return invalid('INVALID_REQUEST_UNKNOWN', 'fieldsToMergeOn must name 1 to 3 fields');
  }
  // Check every record before writing any: Airtable applies a request whole or not at all.
  const plan: Array<{ id: string | undefined; fields: FakeFields }> = [];
  for (const record of records as Array<{ id?: unknown; fields?: unknown }>) {
    const fields = asFields(record.fields);
    if (typeof record.id === 'string') {
      plan.push({ id: record.id, fields });
      continue;
    }
    if (mergeOn.some((field) => fields[field] === undefined)) return invalid('INVALID_MERGE_FIELD', 'Every record must have a value in each field to merge on');
    const matches = [...rows.entries()].filter(([, existing]) => mergeOn.every((field) => JSON.stringify(existing[field]) === JSON.stringify(fields[field])));
    if (matches.length > 1) return invalid('INVALID_MERGE_FIELD', 'More than one record matches the fields to merge on');
    plan.push({ id: matches[0]?.[0], fields });
  }
  const createdRecords: string[] = [];
  const updatedRecords: string[] = [];
  const written = plan.map((step) => {
    if (step.id === undefined) {
      const created = state.createRecord(baseId, table, step.fields, 'publicApi');
      createdRecords.push(created.id);
      return created;
    }
    updatedRecords.push(step.id);
    return state.updateRecord(baseId, table, step.id, step.fields, { replace, source: 'publicApi' });
  });
  return { status: 200, body: { records: written.map((record) => recordJson(state, record.id, record.fields)), createdRecords, updatedRecords } };
}

function routeWebhooks(state: FakeAirtableState, request: RecordedRequest, baseId: string, rest: string[]): FakeResponse {
  const [webhookId, action] = rest;
  if (!webhookId) {
    if (request.method === 'POST') {
      const body = (parseJson(request.rawBody) ?? {}) as { notificationUrl?: unknown; specification?: { options?: { filters?: { dataTypes?: unknown } } } };
      if (!Array.isArray(body.specification?.options?.filters?.dataTypes)) return invalid('INVALID_REQUEST_UNKNOWN', 'specification.options.filters.dataTypes is required');
      const webhook = state.createWebhook(baseId, body);
      return { status: 200, body: { id: webhook.id, macSecretBase64: webhook.macSecretBase64, expirationTime: webhook.expirationTime } };
    }
    if (request.method === 'GET') {
      const webhooks = [...state.webhooks.values()].filter((webhook) => webhook.baseId === baseId);
      return {
        status: 200,
        body: {
          webhooks: webhooks.map((webhook) => ({
            id: webhook.id,
            type: 'client',
            isHookEnabled: true,
            notificationUrl: webhook.notificationUrl,
            cursorForNextPayload: webhook.payloads.length + 1,
            areNotificationsEnabled: true,
            lastSuccessfulNotificationTime: null,
            lastNotificationResult: null,
            expirationTime: webhook.expirationTime,
            specification: webhook.specification,
          })),
        },
      };
    }
    return notFound();
  }
  const webhook = state.webhooks.get(webhookId);
  if (!webhook || webhook.baseId !== baseId) return { status: 404, body: { error: { type: 'NOT_FOUND', message: 'Could not find webhook' } } };
  if (!action && request.method === 'DELETE') {
    state.webhooks.delete(webhookId);
    return { status: 200, body: {} };
  }
  if (action === 'refresh' && request.method === 'POST') {
    webhook.expirationTime = new Date(Date.now() + WEBHOOK_LIFETIME_MS).toISOString();
    return { status: 200, body: { expirationTime: webhook.expirationTime } };
  }
  if (action === 'payloads' && request.method === 'GET') {
    const cursor = request.query.has('cursor') ? Number(request.query.get('cursor')) : 1;
    const limit = request.query.has('limit') ? Number(request.query.get('limit')) : MAX_PAYLOADS_PER_PAGE;
    if (!Number.isInteger(cursor) || cursor < 1 || !Number.isInteger(limit) || limit < 1 || limit > MAX_PAYLOADS_PER_PAGE) {
      return invalid('INVALID_REQUEST_UNKNOWN', 'Invalid cursor or limit');
    }
    // Listing payloads extends the webhook's life, like refresh (list-webhook-payloads docs).
    webhook.expirationTime = new Date(Date.now() + WEBHOOK_LIFETIME_MS).toISOString();
    const payloads = webhook.payloads.slice(cursor - 1, cursor - 1 + limit);
    return {
      status: 200,
      body: { payloads, cursor: cursor + payloads.length, mightHaveMore: webhook.payloads.length >= cursor + payloads.length },
    };
  }
  return notFound();
}

/** The field names a write names, single-record or batch form. */
function fieldNamesIn(body: Record<string, unknown> | undefined): string[] {
  const records = Array.isArray(body?.['records']) ? (body['records'] as Array<{ fields?: unknown }>) : [{ fields: body?.['fields'] }];
  return records.flatMap((record) => Object.keys(asFields(record.fields)));
}

function checkBatch(records: unknown[]): FakeResponse | undefined {
  if (records.length > MAX_RECORDS_PER_WRITE) return invalid('INVALID_RECORDS', `You can send at most ${MAX_RECORDS_PER_WRITE} records per request`);
  return undefined;
}

function recordJson(state: FakeAirtableState, id: string, fields: FakeFields) {
  return { id, createdTime: state.createdTime(id), fields };
}

/** Airtable leaves empty cells out of the records it returns: https://airtable.com/developers/web/api/field-model */
function withoutEmptyCells(fields: FakeFields): FakeFields {
  return Object.fromEntries(
    Object.entries(fields).filter(([, value]) => value !== null && value !== undefined && value !== '' && value !== false && !(Array.isArray(value) && value.length === 0)),
  );
}

function withoutPrevious(changes: AirtableTableChanges): AirtableTableChanges {
  return {
    ...changes,
    changedRecordsById: Object.fromEntries(Object.entries(changes.changedRecordsById ?? {}).map(([id, change]) => [id, { current: change.current }])),
  };
}

function pick(fields: FakeFields, names: string[]): FakeFields {
  return Object.fromEntries(Object.entries(fields).filter(([name]) => names.includes(name)));
}

function asFields(value: unknown): FakeFields {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as FakeFields) : {};
}

function invalid(type: string, message: string): FakeResponse {
  return { status: 422, body: { error: { type, message } } };
}

function notFound(): FakeResponse {
  return { status: 404, body: { error: 'NOT_FOUND' } };
}

/** The base a request is for: `/v0/{baseId}/…`, `/v0/bases/{baseId}/…` or `/v0/meta/bases/{baseId}/…`. */
function baseIdOf(path: string): string | undefined {
  const segments = path.split('/').filter(Boolean);
  const candidate = segments[1] === 'bases' ? segments[2] : segments[1] === 'meta' ? segments[3] : segments[1];
  return candidate ? decodeURIComponent(candidate) : undefined;
}

const ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** The 14 characters after Airtable's 3-letter prefix (`rec`, `ach`, `itr`). */
function randomId(): string {
  return [...randomBytes(14)].map((byte) => ID_ALPHABET[byte % ID_ALPHABET.length]).join('');
}

/** Ids for tables and fields that stay the same for the same name, as Airtable's do. */
function stableId(seed: string): string {
  return [...createHash('sha256').update(seed).digest().subarray(0, 14)].map((byte) => ID_ALPHABET[byte % ID_ALPHABET.length]).join('');
}

function parseJson(raw: Buffer): unknown {
  if (raw.length === 0) return undefined;
  try {
    return JSON.parse(raw.toString('utf8')) as unknown;
  } catch {
    return undefined;
  }
}
