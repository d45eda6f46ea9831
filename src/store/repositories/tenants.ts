import { randomUUID } from 'node:crypto';
import { asc, eq } from 'drizzle-orm';
import { appendAuditEvent } from '../audit-trail.js';
import type { TenantDocument } from '../../config/tenant-document.js';
import { providersOf, type TenantSettings, type TenantSummary } from '../../domain/tenant.js';
import { ScopeDestroyedError } from '../../seal/errors.js';
import type { StoredKeyring } from '../../seal/keyring.js';
import type { SealedFields } from '../../seal/sealed-fields.js';
import type { Db } from '../connection.js';
import { tenantsSealed } from '../sealed-tables.js';
import { tenants } from '../schema.js';
import { isScopeDestroyed } from './data-keys.js';

export type { ProviderName, TenantSettings, TenantSummary } from '../../domain/tenant.js';

/** Provider secrets, opened: exists only in memory, for the duration of a job or request. */
export interface TenantSecrets {
  twilioAuthToken: string | null;
  openaiApiKey: string | null;
  airtableApiKey: string | null;
  airtableMacSecret: string | null;
  podiumApiKey: string | null;
  podiumWebhookSecret: string | null;
}

export class TenantRepository {
  constructor(
    private readonly db: Db,
    private readonly fields: SealedFields,
    private readonly keyring: StoredKeyring,
  ) {}

  /**
   * Creates or replaces a tenant from its document (PUT semantics: a provider left out is
   * removed with its secrets). The tenant gets its own data key on creation; its secrets are
   * sealed under it before the first write. The audit event commits with the change.
   *
   * A tenant whose keys were shredded but whose rows are not removed yet is refused
   * (ScopeDestroyedError): `tenants delete --shred` must finish first, after which the slug is
   * free and a put makes a new tenant with a new id and fresh keys.
   */
  async put(slug: string, document: TenantDocument, actor: { type: 'system' | 'user'; id?: string }): Promise<{ tenant: TenantSummary; created: boolean }> {
    const existing = await this.findBySlug(slug);
    const id = existing?.id ?? randomUUID();
    // Asked of the database, not the keyring: this process may not have refreshed since the shred.
    if (existing && (await isScopeDestroyed(this.db, id))) throw new ScopeDestroyedError(id);
    await this.keyring.ensureScope(id);
    const sealed = this.fields.sealRow(tenantsSealed, { scope: id, id }, secretsOf(document));
    const settings = settingsOf(document);
    const now = new Date();
    await this.db.transaction(async (tx) => {
      if (existing) {
        await tx.update(tenants).set({ name: document.name, settings, ...sealed, updatedAt: now }).where(eq(tenants.id, id));
      } else {
        await tx.insert(tenants).values({ id, slug, name: document.name, settings, ...sealed, createdAt: now, updatedAt: now });
      }
      await appendAuditEvent(tx, {
        actor,
        action: existing ? 'tenant.update' : 'tenant.create',
        target: { type: 'tenant', id },
        tenantId: id,
        outcome: 'success',
        details: { providers: providersOf(settings).join(',') },
      });
    });
    const tenant = await this.findBySlug(slug);
    return { tenant: tenant!, created: !existing };
  }

  async findBySlug(slug: string): Promise<TenantSummary | undefined> {
    return findTenantBySlug(this.db, slug);
  }

  async list(): Promise<TenantSummary[]> {
    return listTenants(this.db);
  }

  /** A tenant's stored settings (never secrets). */
  async settingsOf(tenantId: string): Promise<TenantSettings | undefined> {
    const [row] = await this.db.select({ settings: tenants.settings }).from(tenants).where(eq(tenants.id, tenantId)).limit(1);
    return row?.settings;
  }

  /** Id, slug and settings of the tenant with this slug (never secrets): what the relay opens a tenant from. */
  async settingsBySlug(slug: string): Promise<{ id: string; slug: string; settings: TenantSettings } | undefined> {
    const [row] = await this.db.select({ id: tenants.id, slug: tenants.slug, settings: tenants.settings }).from(tenants).where(eq(tenants.slug, slug)).limit(1);
    return row;
  }

  async slugOf(tenantId: string): Promise<string | undefined> {
    return slugOf(this.db, tenantId);
  }

  /** Every slug there is: one small query, read instead of one query per made-up slug. */
  async allSlugs(): Promise<Set<string>> {
    const rows = await this.db.select({ slug: tenants.slug }).from(tenants);
    return new Set(rows.map((row) => row.slug));
  }

  /** Opens a tenant's provider secrets. Callers hold them only as long as one job or request. */
  async openSecrets(tenantId: string): Promise<TenantSecrets> {
    const [row] = await this.db
      .select({
        twilioAuthToken: tenants.twilioAuthToken,
        openaiApiKey: tenants.openaiApiKey,
        airtableApiKey: tenants.airtableApiKey,
        airtableMacSecret: tenants.airtableMacSecret,
        podiumApiKey: tenants.podiumApiKey,
        podiumWebhookSecret: tenants.podiumWebhookSecret,
      })
      .from(tenants)
      .where(eq(tenants.id, tenantId))
      .limit(1);
    if (!row) throw new Error(`tenant ${tenantId} does not exist`);
    return (await this.fields.openRowFresh(tenantsSealed, { scope: tenantId, id: tenantId }, row)) as TenantSecrets;
  }
}

/** Slugs, names and configured providers; reads nothing sealed, so it needs no keys. */
export async function listTenants(db: Db): Promise<TenantSummary[]> {
  const rows = await db.select(summaryColumns).from(tenants).orderBy(asc(tenants.slug));
  return rows.map(toSummary);
}

/** The tenant with this slug, read without keys (nothing sealed), as `listTenants` shows it. */
export async function findTenantBySlug(db: Db, slug: string): Promise<TenantSummary | undefined> {
  const [row] = await db.select(summaryColumns).from(tenants).where(eq(tenants.slug, slug)).limit(1);
  return row ? toSummary(row) : undefined;
}

/** The slug of a tenant id; undefined when no such tenant exists (also the answer to "does it exist"). */
export async function slugOf(db: Db, tenantId: string): Promise<string | undefined> {
  const [row] = await db.select({ slug: tenants.slug }).from(tenants).where(eq(tenants.id, tenantId)).limit(1);
  return row?.slug;
}

const summaryColumns = {
  id: tenants.id,
  slug: tenants.slug,
  name: tenants.name,
  settings: tenants.settings,
  createdAt: tenants.createdAt,
  updatedAt: tenants.updatedAt,
};

function toSummary(row: { id: string; slug: string; name: string; settings: TenantSettings; createdAt: Date; updatedAt: Date }): TenantSummary {
  return { id: row.id, slug: row.slug, name: row.name, providers: providersOf(row.settings), createdAt: row.createdAt, updatedAt: row.updatedAt };
}

function secretsOf(document: TenantDocument): Record<keyof TenantSecrets, string | null> {
  return {
    twilioAuthToken: document.twilio?.authToken ?? null,
    openaiApiKey: document.openai?.apiKey ?? null,
    airtableApiKey: document.airtable?.apiKey ?? null,
    airtableMacSecret: document.airtable?.macSecretBase64 ?? null,
    podiumApiKey: document.podium?.apiKey ?? null,
    podiumWebhookSecret: document.podium?.webhookSecret ?? null,
  };
}

/** Everything in the document except secrets; stored as plain JSON. */
function settingsOf(document: TenantDocument): TenantSettings {
  return {
    ...(document.twilio ? { twilio: { accountSid: document.twilio.accountSid, fromNumber: document.twilio.fromNumber } } : {}),
    ...(document.openai
      ? { openai: { model: document.openai.model, ...(document.openai.systemPrompt !== undefined ? { systemPrompt: document.openai.systemPrompt } : {}) } }
      : {}),
    ...(document.airtable
      ? {
          airtable: {
            baseId: document.airtable.baseId,
            table: document.airtable.table,
            fields: document.airtable.fields,
            ...(document.airtable.webhookId !== undefined ? { webhookId: document.airtable.webhookId } : {}),
          },
        }
      : {}),
    ...(document.podium ? { podium: { locationUid: document.podium.locationUid } } : {}),
    allowIps: {
      twilio: document.allowIps?.twilio ?? [],
      airtable: document.allowIps?.airtable ?? [],
      podium: document.allowIps?.podium ?? [],
    },
  };
}

/** Whether a tenant with this id exists; reads nothing sealed. */
export async function tenantExists(db: Db, tenantId: string): Promise<boolean> {
  const [row] = await db.select({ id: tenants.id }).from(tenants).where(eq(tenants.id, tenantId)).limit(1);
  return row !== undefined;
}

/** A tenant's Twilio account: what sends a text on its behalf. The auth token is opened only when a text is sent. */
export interface TwilioAccount {
  tenantId: string;
  accountSid: string;
  fromNumber: string;
  openAuthToken(): Promise<string>;
}

/** The Twilio account of the tenant `slug`, read fresh each call; undefined when the tenant or its Twilio settings are missing. */
export async function findTwilioAccount(db: Db, fields: SealedFields, slug: string): Promise<TwilioAccount | undefined> {
  const [row] = await db.select({ id: tenants.id, settings: tenants.settings, twilioAuthToken: tenants.twilioAuthToken }).from(tenants).where(eq(tenants.slug, slug)).limit(1);
  const twilio = row?.settings.twilio;
  const sealedAuthToken = row?.twilioAuthToken;
  if (!row || !twilio || !sealedAuthToken) return undefined;
  return {
    tenantId: row.id,
    accountSid: twilio.accountSid,
    fromNumber: twilio.fromNumber,
    openAuthToken: async () => (await fields.openRowFresh(tenantsSealed, { scope: row.id, id: row.id }, { twilioAuthToken: sealedAuthToken })).twilioAuthToken!,
  };
}
