import { getTableColumns, getTableName } from 'drizzle-orm';
import type { PgColumn, PgTable } from 'drizzle-orm/pg-core';
import type { SealedFieldSpec, SealedFieldSpecs, SealedTable } from '../seal/sealed-fields.js';
import { contacts, messages, signingKeys, smsFactors, tenants, totpFactors, users } from './schema.js';

/** A sealed-table declaration with the table it declares, for the store's own SQL over it (sealed-rows.ts). */
export interface DeclaredSealedTable<Fields extends SealedFieldSpecs = SealedFieldSpecs> extends SealedTable<Fields> {
  table: PgTable;
}

/**
 * Declares which columns of `table` are sealed, resolving every property named to its SQL
 * column; throws at start-up when one does not exist or a sealed column is not bytea.
 */
function declareSealedTable<const Fields extends SealedFieldSpecs>(declaration: {
  table: PgTable;
  idProperty: string;
  scope: SealedTable['scope'];
  fields: Fields;
}): DeclaredSealedTable<Fields> {
  const name = getTableName(declaration.table);
  const columns = getTableColumns(declaration.table) as Record<string, PgColumn>;
  const columnNames: Record<string, string> = {};
  const mustExist = (property: string): PgColumn => {
    const column = Object.hasOwn(columns, property) ? columns[property] : undefined;
    if (!column) throw new Error(`sealed table ${name}: no column ${property}`);
    columnNames[property] = column.name;
    return column;
  };
  mustExist(declaration.idProperty);
  if (typeof declaration.scope === 'object') mustExist(declaration.scope.property);
  for (const [property, spec] of Object.entries(declaration.fields) as Array<[string, SealedFieldSpec]>) {
    if (mustExist(property).getSQLType() !== 'bytea') throw new Error(`sealed column ${property} must be bytea`);
    if (spec.blindIndex) mustExist(spec.blindIndex.property);
  }
  return { ...declaration, name, columnNames };
}

/** Provider secrets, sealed under the tenant's own key (the row id is the tenant). */
export const tenantsSealed = declareSealedTable({
  table: tenants,
  idProperty: 'id',
  scope: 'self',
  fields: {
    twilioAuthToken: {},
    openaiApiKey: {},
    airtableApiKey: {},
    airtableMacSecret: {},
    podiumApiKey: {},
    podiumWebhookSecret: {},
  },
});

export const contactsSealed = declareSealedTable({
  table: contacts,
  idProperty: 'id',
  scope: { property: 'tenantId' },
  fields: {
    // 16 bytes: collisions are negligible at any realistic contact count, so an index hit
    // is the contact; see docs/sealing.md for the leakage side of the choice. `sender`: E.164
    // for phone numbers (the same bytes as `e164`), the raw digits or text for other senders.
    phone: { blindIndex: { property: 'phoneIndex', normaliser: 'sender', lengthBytes: 16 } },
    name: {},
  },
});

export const messagesSealed = declareSealedTable({
  table: messages,
  idProperty: 'id',
  scope: { property: 'tenantId' },
  fields: { body: {} },
});

/** Emails are personal data; the blind index lets sign-in find a user without opening any row. */
export const usersSealed = declareSealedTable({
  table: users,
  idProperty: 'id',
  scope: 'system',
  fields: {
    // 16 bytes, as for phone numbers: unique per user, so a hit is the user.
    email: { blindIndex: { property: 'emailIndex', normaliser: 'email', lengthBytes: 16 } },
  },
});

/** A TOTP secret is a shared key: whoever reads it mints valid codes. */
export const totpFactorsSealed = declareSealedTable({
  table: totpFactors,
  idProperty: 'id',
  scope: 'system',
  fields: { secret: {} },
});

/** The private half of each token-signing key (a JWK serialised as JSON). */
export const signingKeysSealed = declareSealedTable({
  table: signingKeys,
  idProperty: 'id',
  scope: 'system',
  fields: { privateJwk: {} },
});

/** The phone a user receives sign-in codes on. */
export const smsFactorsSealed = declareSealedTable({
  table: smsFactors,
  idProperty: 'id',
  scope: 'system',
  fields: { phone: {} },
});

/** Every table with sealed columns. encrypt-existing, re-encryption and `keys status` walk this list. */
export const sealedTables: DeclaredSealedTable[] = [tenantsSealed, contactsSealed, messagesSealed, usersSealed, totpFactorsSealed, signingKeysSealed, smsFactorsSealed];
