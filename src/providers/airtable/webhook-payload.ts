/**
 * The change payloads Airtable keeps for a webhook, as returned by "list webhook payloads"
 * (https://airtable.com/developers/web/api/model/webhooks-payload and
 * https://airtable.com/developers/web/api/model/webhooks-table-changed). Cell values are keyed by
 * field id (`fld…`), not by name, and only changed cells are present, so the relay reads the
 * current row by id (records client `find`) rather than trusting a payload's partial view.
 */

/** Who made the change: https://airtable.com/developers/web/api/model/webhooks-action */
export type AirtableActionSource =
  | 'client'
  | 'publicApi'
  | 'formSubmission'
  | 'formPageSubmission'
  | 'automation'
  | 'system'
  | 'sync'
  | 'anonymousUser'
  | 'unknown';

export interface AirtableCellValues {
  cellValuesByFieldId: Record<string, unknown>;
}

export interface AirtableChangedRecord {
  current: AirtableCellValues;
  /** Only when the webhook specification asks for previous values. */
  previous?: AirtableCellValues;
  unchanged?: AirtableCellValues;
}

export interface AirtableCreatedRecord extends AirtableCellValues {
  createdTime: string;
}

export interface AirtableTableChanges {
  changedRecordsById?: Record<string, AirtableChangedRecord>;
  createdRecordsById?: Record<string, AirtableCreatedRecord>;
  destroyedRecordIds?: string[];
  /** Present when the webhook watches a view (recordChangeScope = `viw…`). */
  changedViewsById?: Record<string, Pick<AirtableTableChanges, 'changedRecordsById' | 'createdRecordsById' | 'destroyedRecordIds'>>;
  changedMetadata?: unknown;
  createdFieldsById?: Record<string, unknown>;
  changedFieldsById?: Record<string, unknown>;
  destroyedFieldIds?: string[];
}

export interface AirtablePayload {
  timestamp: string;
  baseTransactionNumber: number;
  payloadFormat?: string;
  actionMetadata: {
    source: AirtableActionSource;
    sourceMetadata?: Record<string, unknown>;
  };
  changedTablesById?: Record<string, AirtableTableChanges>;
  createdTablesById?: Record<string, unknown>;
  destroyedTableIds?: string[];
  /** Airtable marks a payload it could not produce (e.g. the webhook's filters became invalid). */
  error?: boolean;
  code?: string;
}

/**
 * The ids of the records a payload created or changed, in every table it touches (or in one table
 * when `tableId` is given), without duplicates. Destroyed records are left out: there is nothing
 * left to read.
 */
export function changedRecordIds(payload: AirtablePayload, options: { tableId?: string } = {}): string[] {
  const ids = new Set<string>();
  for (const [tableId, changes] of Object.entries(payload.changedTablesById ?? {})) {
    if (options.tableId && tableId !== options.tableId) continue;
    addIds(ids, changes);
    for (const viewChanges of Object.values(changes.changedViewsById ?? {})) addIds(ids, viewChanges);
  }
  return [...ids];
}

function addIds(ids: Set<string>, changes: Pick<AirtableTableChanges, 'changedRecordsById' | 'createdRecordsById'>): void {
  for (const id of Object.keys(changes.createdRecordsById ?? {})) ids.add(id);
  for (const id of Object.keys(changes.changedRecordsById ?? {})) ids.add(id);
}
