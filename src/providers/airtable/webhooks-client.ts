import { ProviderError } from '../provider-error.js';
import { airtableStatusError, toAirtableProviderError } from './airtable-errors.js';
import { createBasePacer, type BasePacer } from './base-pacer.js';
import { assertBaseId, isTableOrViewId } from './airtable-ids.js';
import type { AirtableActionSource, AirtablePayload } from './webhook-payload.js';

export { changedRecordIds } from './webhook-payload.js';
export type { AirtableActionSource, AirtablePayload } from './webhook-payload.js';

/**
 * Airtable's webhooks API (https://airtable.com/developers/web/api/webhooks-overview) over plain
 * fetch: the `airtable` package has no webhooks support, and its `makeRequest` cannot reach these
 * routes because it always prefixes `/v0/{baseId}`, while webhooks live under `/v0/bases/{baseId}`.
 *
 * Requests count against the same 5-per-second budget as the records API, so they go through a
 * BasePacer (share the records client's). A 429 is not waited out here: it becomes a retryable
 * ProviderError with Airtable's 30 seconds, and the job queue waits.
 */

export interface AirtableBaseTarget {
  apiKey: string;
  baseId: string;
}

export interface CreatedWebhook {
  id: string;
  /** Shown once by Airtable; store it sealed. The MAC key is its base64-decoded bytes. */
  macSecretBase64: string;
  /** Absent for webhooks that do not expire; PAT and OAuth webhooks expire after 7 days unless refreshed. */
  expirationTime?: string;
}

export interface PayloadsPage {
  payloads: AirtablePayload[];
  /** Store it and pass it on the next call, however old: Airtable's cursors are never reset. */
  cursor: number;
  mightHaveMore: boolean;
}

export interface AirtableWebhooksClient {
  /**
   * Registers a webhook for record changes (`tableData`) in the base, or only in `tableId` (a
   * `tbl…` id; Airtable's filters take ids, not names), optionally only from some sources.
   */
  createWebhook(target: AirtableBaseTarget, options: { notificationUrl: string; tableId?: string; fromSources?: AirtableActionSource[] }): Promise<CreatedWebhook>;
  /** One page (at most 50) of payloads from `cursor` on; starts at 1 when no cursor is stored yet. */
  listPayloads(target: AirtableBaseTarget, webhookId: string, cursor: number | undefined): Promise<PayloadsPage>;
  /** Extends the webhook's life by 7 days from now (listing payloads does too). */
  refreshWebhook(target: AirtableBaseTarget, webhookId: string): Promise<{ expirationTime?: string }>;
  deleteWebhook(target: AirtableBaseTarget, webhookId: string): Promise<void>;
}

export function createAirtableWebhooksClient(options: { apiUrl: string; timeoutMs?: number; requestsPerSecond?: number; pacer?: BasePacer }): AirtableWebhooksClient {
  const apiUrl = options.apiUrl.replace(/\/+$/, '');
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const pacer = options.pacer ?? createBasePacer({ requestsPerSecond: options.requestsPerSecond });

  async function call(target: AirtableBaseTarget, method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<unknown> {
    assertBaseId(target.baseId);
    await pacer.take(target.baseId);
    let response: Response;
    try {
      response = await fetch(`${apiUrl}/v0/bases/${encodeURIComponent(target.baseId)}/webhooks${path}`, {
        method,
        headers: { authorization: `Bearer ${target.apiKey}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (error) {
      throw toAirtableProviderError(error);
    }
    let text: string;
    try {
      text = await response.text();
    } catch (error) {
      // The answer was cut off: a dropped connection or the timeout firing mid-body.
      throw toAirtableProviderError(error);
    }
    const json = parseJson(text);
    if (!response.ok) throw airtableStatusError(response.status, errorType(json), response.headers.get('retry-after'));
    // Delete answers with an empty body; everything else must be JSON.
    if (json === undefined && text.trim() !== '') throw unexpectedAnswer();
    return json ?? null;
  }

  return {
    async createWebhook(target, createOptions) {
      if (createOptions.tableId !== undefined && !isTableOrViewId(createOptions.tableId)) {
        throw new RangeError('tableId must be an Airtable table or view id (tbl… / viw…), not a name');
      }
      const filters: Record<string, unknown> = { dataTypes: ['tableData'] };
      if (createOptions.tableId) filters['recordChangeScope'] = createOptions.tableId;
      if (createOptions.fromSources?.length) filters['fromSources'] = createOptions.fromSources;
      // https://airtable.com/developers/web/api/create-a-webhook
      const json = (await call(target, 'POST', '', {
        notificationUrl: createOptions.notificationUrl,
        // Previous values: a cleared cell is absent from `current` and shows only in `previous`
        // (https://airtable.com/developers/web/api/model/webhooks-specification).
        specification: { options: { filters, includes: { includePreviousCellValues: true } } },
      })) as { id?: unknown; macSecretBase64?: unknown; expirationTime?: unknown } | null;
      if (typeof json?.id !== 'string' || typeof json.macSecretBase64 !== 'string') throw unexpectedAnswer();
      return typeof json.expirationTime === 'string'
        ? { id: json.id, macSecretBase64: json.macSecretBase64, expirationTime: json.expirationTime }
        : { id: json.id, macSecretBase64: json.macSecretBase64 };
    },

    async listPayloads(target, webhookId, cursor) {
      if (cursor !== undefined && (!Number.isInteger(cursor) || cursor < 1)) throw new RangeError('cursor must be a positive integer');
      // https://airtable.com/developers/web/api/list-webhook-payloads
      const query = cursor === undefined ? '' : `?cursor=${cursor}`;
      const json = (await call(target, 'GET', `/${encodeURIComponent(webhookId)}/payloads${query}`)) as { payloads?: unknown; cursor?: unknown; mightHaveMore?: unknown } | null;
      if (!json || !Array.isArray(json.payloads) || typeof json.cursor !== 'number' || typeof json.mightHaveMore !== 'boolean') throw unexpectedAnswer();
      return { payloads: json.payloads as AirtablePayload[], cursor: json.cursor, mightHaveMore: json.mightHaveMore };
    },

    async refreshWebhook(target, webhookId) {
      // https://airtable.com/developers/web/api/refresh-a-webhook
      const json = (await call(target, 'POST', `/${encodeURIComponent(webhookId)}/refresh`)) as { expirationTime?: unknown } | null;
      return typeof json?.expirationTime === 'string' ? { expirationTime: json.expirationTime } : {};
    },

    async deleteWebhook(target, webhookId) {
      // https://airtable.com/developers/web/api/delete-a-webhook
      await call(target, 'DELETE', `/${encodeURIComponent(webhookId)}`);
    },
  };
}

const DEFAULT_TIMEOUT_MS = 30_000;

/** Airtable's error body is `{error: {type, message}}` or, for some 404s, `{error: "NOT_FOUND"}`. */
function errorType(json: unknown): string | undefined {
  const error = (json as { error?: unknown } | null)?.error;
  if (typeof error === 'string') return error;
  const type = (error as { type?: unknown } | null | undefined)?.type;
  return typeof type === 'string' ? type : undefined;
}

function unexpectedAnswer(): ProviderError {
  return new ProviderError({ provider: 'airtable', message: 'Airtable answered in an unexpected shape', retryable: false });
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}
