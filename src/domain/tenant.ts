/**
 * A tenant (a client of the agency) as every layer names it: its non-secret provider settings and
 * the summary that lists show. Secrets are never part of this vocabulary: they live sealed in the
 * store and opened only in the memory of one job or request.
 */

/** Non-secret provider settings from tenant.json; the secrets live in the sealed columns. */
export interface TenantSettings {
  twilio?: { accountSid: string; fromNumber: string };
  openai?: { model: string; systemPrompt?: string };
  airtable?: { baseId: string; table: string; fields: Record<string, 'plain' | 'masked' | 'sealed' | 'omitted'>; webhookId?: string };
  podium?: { locationUid: string };
  allowIps: { twilio: string[]; airtable: string[]; podium: string[] };
}

export type ProviderName = 'twilio' | 'openai' | 'airtable' | 'podium';

/** Slugs, names and configured providers: what may be shown without opening anything sealed. */
export interface TenantSummary {
  id: string;
  slug: string;
  name: string;
  providers: ProviderName[];
  createdAt: Date;
  updatedAt: Date;
}

/** The providers a tenant has settings for, in a fixed order. */
export function providersOf(settings: TenantSettings): ProviderName[] {
  return (['twilio', 'openai', 'airtable', 'podium'] as const).filter((provider) => settings[provider] !== undefined);
}
