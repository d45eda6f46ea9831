import { isIP } from 'node:net';
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

/**
 * tenant.json as operators write it (CONTRACT.md). Unknown members are refused rather than
 * ignored: a misspelt `authTokn` must not silently leave a provider unauthenticated.
 */
const Secret = (description: string, minLength = 8) => Type.String({ minLength, maxLength: 512, description });
const E164 = Type.String({ pattern: '^\\+[1-9][0-9]{6,14}$', description: 'E.164, e.g. +15550000001' });
const FieldPolicy = Type.Union([Type.Literal('plain'), Type.Literal('masked'), Type.Literal('sealed'), Type.Literal('omitted')]);

export const TenantDocumentSchema = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 200 }),
    twilio: Type.Optional(
      Type.Object(
        {
          accountSid: Type.String({ pattern: '^AC[0-9a-fA-F]{32}$' }),
          authToken: Secret('Twilio auth token', 16),
          fromNumber: E164,
        },
        { additionalProperties: false },
      ),
    ),
    openai: Type.Optional(
      Type.Object(
        {
          apiKey: Secret('OpenAI API key', 20),
          model: Type.String({ minLength: 1, maxLength: 100 }),
          systemPrompt: Type.Optional(Type.String({ maxLength: 20_000 })),
        },
        { additionalProperties: false },
      ),
    ),
    airtable: Type.Optional(
      Type.Object(
        {
          apiKey: Secret('Airtable personal access token', 16),
          baseId: Type.String({ pattern: '^app[A-Za-z0-9]{14}$' }),
          table: Type.String({ minLength: 1, maxLength: 200 }),
          fields: Type.Object(
            { phone: Type.Optional(FieldPolicy), name: Type.Optional(FieldPolicy), body: Type.Optional(FieldPolicy), aiReply: Type.Optional(FieldPolicy) },
            { additionalProperties: false },
          ),
          webhookId: Type.Optional(Type.String({ pattern: '^ach[A-Za-z0-9]{14}$' })),
          macSecretBase64: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9+/]{16,}={0,2}$' })),
        },
        { additionalProperties: false },
      ),
    ),
    podium: Type.Optional(
      Type.Object(
        {
          apiKey: Secret('Podium API key', 8),
          locationUid: Type.String({ minLength: 1, maxLength: 100 }),
          webhookSecret: Secret('Podium webhook secret', 16),
        },
        { additionalProperties: false },
      ),
    ),
    allowIps: Type.Optional(
      Type.Object(
        {
          twilio: Type.Optional(Type.Array(Type.String(), { maxItems: 100 })),
          airtable: Type.Optional(Type.Array(Type.String(), { maxItems: 100 })),
          podium: Type.Optional(Type.Array(Type.String(), { maxItems: 100 })),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

export type TenantDocument = Static<typeof TenantDocumentSchema>;


export class TenantDocumentError extends Error {
  override readonly name = 'TenantDocumentError';
}

/** Parses and validates tenant.json; the error names the first bad member by its JSON path. */
export function parseTenantDocument(text: string): TenantDocument {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new TenantDocumentError(`tenant.json: not valid JSON (${(error as Error).message})`);
  }
  const first = Value.Errors(TenantDocumentSchema, parsed).First();
  if (first) {
    const where = first.path || '/';
    // Secrets are never echoed; other values are, so the operator sees what was wrong.
    throw new TenantDocumentError(`tenant.json: ${where}: ${first.message}`);
  }
  const document = parsed as TenantDocument;
  for (const [provider, list] of Object.entries(document.allowIps ?? {})) {
    list?.forEach((entry, index) => {
      if (!isCidr(entry)) throw new TenantDocumentError(`tenant.json: /allowIps/${provider}/${index}: expected an IP address or CIDR, got ${JSON.stringify(entry)}`);
    });
  }
  if (document.airtable && (document.airtable.webhookId === undefined) !== (document.airtable.macSecretBase64 === undefined)) {
    throw new TenantDocumentError('tenant.json: /airtable: give webhookId and macSecretBase64 together, or neither');
  }
  if (document.airtable?.macSecretBase64 !== undefined && Buffer.from(document.airtable.macSecretBase64, 'base64').length < 16) {
    throw new TenantDocumentError('tenant.json: /airtable/macSecretBase64: expected base64 of at least 16 bytes');
  }
  return document;
}

function isCidr(entry: string): boolean {
  const [address, prefix, ...rest] = entry.split('/');
  const family = isIP(address ?? '');
  if (family === 0 || rest.length > 0) return false;
  return prefix === undefined || (/^\d+$/.test(prefix) && Number(prefix) <= (family === 6 ? 128 : 32));
}
