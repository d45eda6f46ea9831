import { randomBytes } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { queryRows, type Db } from '../../../src/store/connection.js';
import { randomPhone } from '../../helpers/relay.js';

/**
 * mongoexport lines for the import tests, in both Extended JSON modes, with canary strings in
 * every personal value so a test can prove none of them is stored, printed or logged in the clear.
 */

export interface ExportFixture {
  /** The lines, relaxed and canonical mixed, each ending in \n. */
  text: string;
  phones: string[];
  names: string[];
  bodies: string[];
  /** Everything that must never appear in plain text outside the sealed columns. */
  canaries: string[];
  conversations: number;
  messages: number;
  /** `_id` of the third document, whose messages are numbered 1 and 2. */
  numberedId: string;
}

/** Three conversations, five messages: a relaxed document, a canonical one, and one whose messages have no _id. */
export function exportFixture(): ExportFixture {
  const tag = randomBytes(4).toString('hex');
  const phones = [randomPhone(), randomPhone(), randomPhone()];
  const names = [`Quintessa-${tag} Lopez`, `Bartholomew-${tag} Ng`, `Zenobia-${tag} Okafor`];
  const bodies = [
    `canary-body-${tag}-1 is Saturday free?`,
    `canary-body-${tag}-2 yes, 10am works`,
    `canary-body-${tag}-3 my card is 4111111111111111`,
    `canary-body-${tag}-4 thanks`,
    `canary-body-${tag}-5 see you`,
  ];
  const oid = () => randomBytes(12).toString('hex');
  const relaxed = {
    _id: { $oid: oid() },
    phone: phones[0],
    name: names[0],
    messages: [
      { _id: { $oid: oid() }, direction: 'inbound', body: bodies[0], createdAt: { $date: '2024-01-01T00:00:00Z' } },
      { direction: 'outbound', body: bodies[1], createdAt: { $date: '2024-01-01T00:01:00.000Z' }, author: 'ai' },
    ],
    __v: 0,
  };
  const canonical = {
    _id: { $oid: oid() },
    phone: phones[1],
    name: names[1],
    messages: [{ _id: { $oid: oid() }, role: 'user', content: bodies[2], timestamp: { $date: { $numberLong: '1704067200000' } } }],
    __v: { $numberInt: '0' },
  };
  // Integer message ids that repeat the first conversation's positions: the keys must not collide.
  const numbered = {
    _id: `legacy-${tag}`,
    phoneNumber: phones[2],
    name: names[2],
    messages: [
      { _id: 1, direction: 'inbound', text: bodies[3], date: '2024-02-01T10:00:00+01:00' },
      { _id: 2, direction: 'outbound', body: bodies[4], createdAt: 1706781600000, author: 'staff' },
    ],
  };
  return {
    text: [relaxed, canonical, numbered].map((document) => `${JSON.stringify(document)}\n`).join(''),
    phones,
    names,
    bodies,
    canaries: [...bodies.map((body) => body.slice(0, 22)), ...names.map((name) => name.split(' ')[0]!), ...phones.map((phone) => phone.slice(2))],
    conversations: 3,
    messages: 5,
    numberedId: numbered._id,
  };
}

/** A document whose phone number is not one; the line that carries it must be refused by number. */
export function badPhoneLine(): string {
  return `${JSON.stringify({ _id: 'bad', phone: 'canary-not-a-phone', messages: [] })}\n`;
}

/** Every row an import can touch for the tenant, bytea as latin1 text, so a canary stored in plain text would show. */
export async function storedText(db: Db, tenantId: string): Promise<string> {
  const parts: string[] = [];
  for (const table of ['contacts', 'conversations', 'messages', 'jobs', 'import_runs', 'audit_events']) {
    const rows = await queryRows<Record<string, unknown>>(db, sql.raw(`select * from ${table} where tenant_id = '${tenantId}'`));
    parts.push(JSON.stringify(rows, (_key, value: unknown) => (value instanceof Uint8Array ? Buffer.from(value).toString('latin1') : value)));
  }
  return parts.join('\n');
}
