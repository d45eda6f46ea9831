import { airtableStatusError, toAirtableProviderError } from './airtable-errors.js';
import type { BasePacer } from './base-pacer.js';
import type { AirtableTarget } from './records-client.js';

/** A table's id and its field ids by name: webhook payloads name tables and fields by id only. */
export interface AirtableTableSchema {
  tableId: string;
  fieldIds: Record<string, string>;
}

/**
 * Reads a table's schema through the metadata API (GET /v0/meta/bases/{baseId}/tables,
 * https://airtable.com/developers/web/api/get-base-schema; the token needs `schema.bases:read`).
 * Webhook payloads carry only the cells that changed, keyed by field id, so knowing which id is
 * "Pause AI" is what lets the relay act on exactly the change staff made, and not on a row's
 * unrelated state. `undefined` when the base has no table of that name or id.
 */
export async function describeAirtableTable(
  target: AirtableTarget,
  options: { apiUrl: string; pacer: BasePacer; timeoutMs?: number },
): Promise<AirtableTableSchema | undefined> {
  await options.pacer.take(target.baseId);
  let response: Response;
  let body: unknown;
  try {
    response = await fetch(`${options.apiUrl.replace(/\/+$/, '')}/v0/meta/bases/${encodeURIComponent(target.baseId)}/tables`, {
      headers: { authorization: `Bearer ${target.apiKey}` },
      signal: AbortSignal.timeout(options.timeoutMs ?? 30_000),
    });
    body = await response.json().catch(() => undefined);
  } catch (error) {
    throw toAirtableProviderError(error);
  }
  if (!response.ok) throw airtableStatusError(response.status, (body as { error?: { type?: string } } | undefined)?.error?.type, response.headers.get('retry-after'));
  const tables = (body as { tables?: Array<{ id: string; name: string; fields?: Array<{ id: string; name: string }> }> } | undefined)?.tables ?? [];
  const table = tables.find((candidate) => candidate.id === target.table || candidate.name === target.table);
  if (!table) return undefined;
  return { tableId: table.id, fieldIds: Object.fromEntries((table.fields ?? []).map((field) => [field.name, field.id])) };
}
