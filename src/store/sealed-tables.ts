import { declareSealedTable, type SealedTable } from '../seal/sealed-fields.js';
import { contacts, messages, tenants } from './schema.js';

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
    // is the contact; see docs/sealing.md for the leakage side of the choice.
    phone: { blindIndex: { property: 'phoneIndex', normaliser: 'e164', lengthBytes: 16 } },
    name: {},
  },
});

export const messagesSealed = declareSealedTable({
  table: messages,
  idProperty: 'id',
  scope: { property: 'tenantId' },
  fields: { body: {} },
});

/** Every table with sealed columns. encrypt-existing, re-encryption and `keys status` walk this list. */
export const sealedTables: SealedTable[] = [tenantsSealed, contactsSealed, messagesSealed];
