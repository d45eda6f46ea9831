// Child process for the multi-process audit test: appends COUNT events to DATABASE_URL.
import { appendAuditEvent } from '../../src/store/audit-trail.js';
import { openDatabase } from '../../src/store/connection.js';

const [url, countText, label] = process.argv.slice(2);
const database = await openDatabase({ url: url!, maxConnections: 4 });
await Promise.all(
  Array.from({ length: Number(countText) }, (_, index) =>
    appendAuditEvent(database.db, {
      actor: { type: 'system', id: label ?? null },
      action: 'job.retry',
      outcome: 'success',
      details: { index },
    }),
  ),
);
await database.close();
