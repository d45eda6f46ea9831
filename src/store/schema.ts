/**
 * The database schema, one Drizzle declaration per table. SQL migrations in drizzle/ are
 * generated from this file by `npm run db:generate` and committed; never edit them by hand.
 */
export * from './tables/audit-events.js';
export * from './tables/contacts.js';
export * from './tables/conversations.js';
export * from './tables/jobs.js';
export * from './tables/data-keys.js';
export * from './tables/messages.js';
export * from './tables/tenants.js';
export * from './tables/api-keys.js';
export * from './tables/factors.js';
export * from './tables/sessions.js';
export * from './tables/signing-keys.js';
export * from './tables/users.js';
