import { inArray } from 'drizzle-orm';
import { isUuid } from '../../domain/ids.js';
import { SYSTEM_SCOPE, type SealedFields } from '../../seal/sealed-fields.js';
import type { Db } from '../connection.js';
import { usersSealed } from '../sealed-tables.js';
import { tenants, users } from '../schema.js';

/**
 * What makes an audit entry readable by a person: the emails of the users it names (opened, so
 * only for a caller who may read the trail, and that read is itself audited by the caller) and
 * the slugs of the tenants. A user or tenant since deleted has no label; its id stays in the entry.
 */
// Audit ids are text (an API key id, a route, a provider name): only those that are UUIDs can name a row.
export async function userEmails(db: Db, fields: SealedFields, userIds: readonly string[]): Promise<Map<string, string>> {
  const ids = [...new Set(userIds)].filter(isUuid);
  if (ids.length === 0) return new Map();
  const rows = await db.select({ id: users.id, email: users.email }).from(users).where(inArray(users.id, ids));
  const opened = await Promise.all(
    rows.map(async (row) => [row.id, (await fields.openRowFresh(usersSealed, { scope: SYSTEM_SCOPE, id: row.id }, { email: row.email })).email] as const),
  );
  return new Map(opened.filter((entry): entry is readonly [string, string] => entry[1] !== null));
}

export async function tenantSlugs(db: Db, tenantIds: readonly string[]): Promise<Map<string, string>> {
  const ids = [...new Set(tenantIds)].filter(isUuid);
  if (ids.length === 0) return new Map();
  const rows = await db.select({ id: tenants.id, slug: tenants.slug }).from(tenants).where(inArray(tenants.id, ids));
  return new Map(rows.map((row) => [row.id, row.slug]));
}
