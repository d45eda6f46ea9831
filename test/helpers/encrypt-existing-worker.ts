// Child process for the encrypt-existing kill test: seals messages in WORKER_DATABASE_URL.
//   mode `run`              runs to the end, printing {"done": n} after every committed batch
//   mode `hang-in-batch:N`  writes batch N, prints {"inBatch": N} and waits (uncommitted) to be killed
import { encryptExisting } from '../../src/keys/encrypt-existing.js';
import { openDatabase } from '../../src/store/connection.js';
import { messagesSealed } from '../../src/store/sealed-tables.js';
import { openMaintenanceKeys } from './sealing.js';

const mode = process.argv[2] ?? 'run';
const hangAt = mode.startsWith('hang-in-batch:') ? Number(mode.slice('hang-in-batch:'.length)) : undefined;

const database = await openDatabase({ url: process.env.WORKER_DATABASE_URL!, maxConnections: 2 });
const { keyring, fields } = await openMaintenanceKeys(database.db, process.env.WORKER_MASTER_KEY!);
const result = await encryptExisting({
  db: database.db,
  fields,
  tables: [messagesSealed],
  batchSize: Number(process.env.WORKER_BATCH_SIZE ?? 250),
  concurrency: Number(process.env.WORKER_CONCURRENCY ?? 2),
  onProgress: (progress) => process.stdout.write(`${JSON.stringify({ done: progress.done })}\n`),
  beforeCommit: async (batch) => {
    if (batch.number !== hangAt) return;
    process.stdout.write(`${JSON.stringify({ inBatch: batch.number })}\n`);
    await new Promise(() => setInterval(() => undefined, 60_000)); // until SIGKILL
  },
});
process.stdout.write(`${JSON.stringify({ finished: result.sealed })}\n`);
keyring.close();
await database.close();
