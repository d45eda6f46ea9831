import type { TenantDocument } from '../config/tenant-document.js';
import type { TenantSummary } from '../domain/tenant.js';
import { describeAirtableTable } from '../providers/airtable/base-schema.js';
import { createBasePacer } from '../providers/airtable/base-pacer.js';
import { createAirtableWebhooksClient } from '../providers/airtable/webhooks-client.js';
import { ProviderError } from '../providers/provider-error.js';
import type { StoredKeyring } from '../seal/keyring.js';
import type { SealedFields } from '../seal/sealed-fields.js';
import type { Db } from '../store/connection.js';
import { isScopeDestroyed } from '../store/repositories/data-keys.js';
import { shredTenant, UnknownTenantError, type ShredActor, type ShredResult } from '../store/repositories/tenant-shred.js';
import { TenantRepository } from '../store/repositories/tenants.js';

/**
 * The operator's tenant administration (`ciphergate tenants put|delete`): a tenant made or
 * replaced from its document, its Airtable webhook made on the way when the document names
 * none, and crypto-shredding. Refusals are answered as data; the CLI words them.
 */

export interface TenantAdminDeps {
  db: Db;
  fields: SealedFields;
  keyring: StoredKeyring;
  publicUrl: string;
  airtableApiUrl: string;
}

/** The Airtable webhook a put kept or made; said to the operator before the tenant is written. */
export interface AirtableWebhookNote {
  id: string;
  created: boolean;
  baseId: string;
}

export type PutTenantOutcome =
  | { ok: true; tenant: TenantSummary; created: boolean }
  /** Its keys were shredded and its rows are not removed yet: `tenants delete --shred` must finish. */
  | { ok: false; code: 'scope-destroyed' }
  /** The Airtable base has no table by the document's name. */
  | { ok: false; code: 'airtable-table-missing'; baseId: string; table: string }
  /** Airtable refused to make the webhook; `message` holds a status and Airtable's error type only. */
  | { ok: false; code: 'airtable-webhook-refused'; message: string };

/**
 * Creates or updates the tenant `slug` from `document` (secrets stored sealed). `onAirtableWebhook`
 * hears of the webhook kept or made before the tenant is written, so the operator knows of a
 * webhook made even when the write then fails.
 */
export async function putTenant(
  deps: TenantAdminDeps,
  slug: string,
  document: TenantDocument,
  actor: { type: 'system' | 'user'; id?: string },
  onAirtableWebhook: (webhook: AirtableWebhookNote) => void,
): Promise<PutTenantOutcome> {
  const repository = new TenantRepository(deps.db, deps.fields, deps.keyring);
  const existing = await repository.findBySlug(slug);
  if (existing && (await isScopeDestroyed(deps.db, existing.id))) return { ok: false, code: 'scope-destroyed' };
  if (document.airtable && document.airtable.webhookId === undefined) {
    const webhook = await airtableWebhookFor(repository, existing, deps, slug, document.airtable);
    if (!webhook.ok) return webhook;
    document.airtable.webhookId = webhook.id;
    document.airtable.macSecretBase64 = webhook.macSecretBase64;
    onAirtableWebhook({ id: webhook.id, created: webhook.created, baseId: document.airtable.baseId });
  }
  return { ok: true, ...(await repository.put(slug, document, actor)) };
}

/**
 * The tenant's Airtable webhook: the one already stored for the same base (a `put` that changes
 * other settings must not mint a new webhook each time), else a new one made through the
 * Airtable API, notifying the tenant's webhook URL about changes to its table. Its MAC secret is
 * shown once by Airtable and stored sealed with the tenant.
 */
async function airtableWebhookFor(
  repository: TenantRepository,
  existing: TenantSummary | undefined,
  deps: TenantAdminDeps,
  slug: string,
  airtable: NonNullable<TenantDocument['airtable']>,
): Promise<{ ok: true; id: string; macSecretBase64: string; created: boolean } | Extract<PutTenantOutcome, { code: 'airtable-table-missing' | 'airtable-webhook-refused' }>> {
  if (existing) {
    const settings = await repository.settingsOf(existing.id);
    const secrets = await repository.openSecrets(existing.id);
    if (settings?.airtable?.webhookId && settings.airtable.baseId === airtable.baseId && secrets.airtableMacSecret) {
      return { ok: true, id: settings.airtable.webhookId, macSecretBase64: secrets.airtableMacSecret, created: false };
    }
  }
  const pacer = createBasePacer();
  const target = { apiKey: airtable.apiKey, baseId: airtable.baseId };
  try {
    const table = await describeAirtableTable({ ...target, table: airtable.table }, { apiUrl: deps.airtableApiUrl, pacer });
    if (!table) return { ok: false, code: 'airtable-table-missing', baseId: airtable.baseId, table: airtable.table };
    const webhooks = createAirtableWebhooksClient({ apiUrl: deps.airtableApiUrl, pacer });
    const created = await webhooks.createWebhook(target, { notificationUrl: `${deps.publicUrl}/webhooks/airtable/${slug}`, tableId: table.tableId });
    return { ok: true, id: created.id, macSecretBase64: created.macSecretBase64, created: true };
  } catch (error) {
    if (error instanceof ProviderError) return { ok: false, code: 'airtable-webhook-refused', message: error.message };
    throw error;
  }
}

/**
 * Crypto-shreds the tenant `slug`: its data keys destroyed (its sealed data unreadable at once),
 * then its rows removed. Needs no KEK. Undefined when no tenant has that slug.
 */
export async function deleteTenant(db: Db, slug: string, actor: ShredActor): Promise<ShredResult | undefined> {
  try {
    return await shredTenant(db, slug, actor);
  } catch (error) {
    if (error instanceof UnknownTenantError) return undefined;
    throw error;
  }
}
