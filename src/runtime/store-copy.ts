/**
 * `ciphergate store copy --to postgres://…`: moves the embedded store (PGlite in the data dir)
 * into an empty PostgreSQL database, once, when an operator outgrows the embedded default.
 *
 * - Ciphertext is copied as it is: no key is opened, nothing is re-sealed. The data keys stay
 *   wrapped by the same KEK, so the target needs the same master key (or HSM) as the source.
 * - Tables come from the catalog in foreign-key order and are copied in pages by primary key
 *   (store/table-copy.ts); sequences follow the source's.
 * - A resume marker in the target (store/store-copy-marker.ts) is written before anything
 *   else; an interrupted copy of the same source continues where its last page committed.
 * - At the end, row counts per table are compared and the audit chain is verified on the
 *   target before the marker is removed.
 *
 * The target's URL may carry a password: every message names it with the password masked.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import type { Config } from '../config/load.js';
import type { Logger } from '../log/logger.js';
import { MASTER_KEY_FILE_NAME } from '../seal/providers/local.js';
import { verifyAuditChain } from '../store/audit-trail.js';
import { openDatabase, queryRows, type Database } from '../store/connection.js';
import { DataDirLockedError } from '../store/data-dir-lock.js';
import { migrate } from '../store/migrate.js';
import { migrationLevel } from '../store/status-queries.js';
import { createCopyMarker, readCopyMarker, recordCopyProgress, removeCopyMarker } from '../store/store-copy-marker.js';
import {
  applySequenceStates,
  countRows,
  insertBatch,
  readBatch,
  rowsPerInsert,
  sequenceStates,
  tablesInDependencyOrder,
  tablesWithRows,
  type CopiedTable,
} from '../store/table-copy.js';

export type StoreCopyErrorCode = 'bad-target-url' | 'not-embedded' | 'no-source' | 'source-in-use' | 'migration-level' | 'target-unreachable' | 'target-not-empty' | 'verification-failed' | 'copy-failed';

/** A refusal or failure of the copy; `message` is one line with the target's password masked. */
export class StoreCopyError extends Error {
  override readonly name = 'StoreCopyError';

  constructor(
    readonly code: StoreCopyErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export interface TableProgress {
  table: string;
  copied: number;
  total: number;
}

export interface StoreCopyRequest {
  /** The settings of the source: its data dir; CIPHERGATE_DATABASE_URL must be unset. */
  config: Config;
  targetUrl: string;
  /** Rows per page (read and insert); smaller pages commit progress more often. */
  batchSize?: number;
  logger?: Logger;
  /** Called after each committed page and once per table at its end. */
  onProgress?: (progress: TableProgress) => void;
}

export interface StoreCopyResult {
  /** The target URL with its password masked. */
  target: string;
  resumed: boolean;
  tables: TableProgress[];
  auditEntries: number;
}

export const DEFAULT_COPY_BATCH_SIZE = 500;

export async function copyStore(request: StoreCopyRequest): Promise<StoreCopyResult> {
  const target = maskedUrl(request.targetUrl);
  const foreignText = secretMasker(request.targetUrl);
  try {
    return await copyStoreTo(request, target, foreignText);
  } catch (error) {
    // Our own refusals name the target masked already; anything else is a driver's or the
    // system's text, which may quote the URL or its password.
    if (error instanceof StoreCopyError) throw error;
    throw new StoreCopyError('copy-failed', `copy to ${target} failed: ${foreignText(oneLine(error))}; run the same command again to resume`);
  }
}

async function copyStoreTo(request: StoreCopyRequest, target: string, foreignText: (text: string) => string): Promise<StoreCopyResult> {
  const { config } = request;
  if (!/^postgres(ql)?:\/\/./.test(request.targetUrl)) throw new StoreCopyError('bad-target-url', `--to: expected a postgres://… URL, got ${target}`);
  if (config.database.url) {
    throw new StoreCopyError('not-embedded', 'store copy reads the embedded store in CIPHERGATE_DATA_DIR; unset CIPHERGATE_DATABASE_URL (the target is --to)');
  }
  // Opening PGlite on a folder that holds none would create an empty store; refuse instead.
  if (!existsSync(join(config.dataDir, 'pgdata', 'PG_VERSION'))) {
    throw new StoreCopyError('no-source', `no embedded store in ${config.dataDir} (set CIPHERGATE_DATA_DIR to the data dir to copy)`);
  }
  const source = await openSource(config);
  try {
    const sourceLevel = await migrationLevel(source.db);
    if (sourceLevel.applied !== sourceLevel.available) {
      throw new StoreCopyError(
        'migration-level',
        sourceLevel.applied < sourceLevel.available
          ? `the embedded store is at migration ${sourceLevel.applied} of ${sourceLevel.available}; run ciphergate migrate first`
          : `the embedded store is at migration ${sourceLevel.applied}, ahead of this Ciphergate's ${sourceLevel.available}; copy it with the version that migrated it`,
      );
    }
    const sourceIdentity = await identityOf(source);
    const destination = await openTarget(request, target, foreignText);
    try {
      const resumed = await claimTarget(destination, sourceIdentity, target);
      await migrate(destination);
      const targetLevel = await migrationLevel(destination.db);
      if (targetLevel.applied !== sourceLevel.applied) {
        throw new StoreCopyError('migration-level', `the target ${target} is at migration ${targetLevel.applied}, the embedded store at ${sourceLevel.applied}; copy into a new, empty database`);
      }
      const tables = await tablesInDependencyOrder(source.db);
      const marker = await readCopyMarker(destination.db);
      const copied: TableProgress[] = [];
      for (const table of tables) {
        copied.push(await copyTable(source, destination, table, marker?.progress.get(table.name), request));
      }
      await applySequenceStates(destination.db, await sequenceStates(source.db));
      const auditEntries = await verifyCopy(source, destination, tables, target);
      await removeCopyMarker(destination.db);
      return { target, resumed, tables: copied, auditEntries };
    } finally {
      await destination.close();
    }
  } finally {
    await source.close();
  }
}

async function openSource(config: Config): Promise<Database> {
  try {
    return await openDatabase({ dataDir: config.dataDir });
  } catch (error) {
    if (error instanceof DataDirLockedError) {
      const holder = error.holder === undefined ? 'another process' : `process ${error.holder}`;
      throw new StoreCopyError('source-in-use', `the embedded store in ${config.dataDir} is in use by ${holder}; stop the server first`);
    }
    throw error;
  }
}

async function openTarget(request: StoreCopyRequest, target: string, foreignText: (text: string) => string): Promise<Database> {
  try {
    // Hardly any start-up backoff: a wrong URL or password should fail now, not in 30s.
    return await openDatabase({ url: request.targetUrl, connectTimeoutSeconds: 1, maxConnections: 2, ...(request.logger ? { logger: request.logger } : {}) });
  } catch (error) {
    throw new StoreCopyError('target-unreachable', `cannot open the target ${target}: ${foreignText(oneLine(error))}`);
  }
}

/**
 * PGlite's cluster identifier: random per store (initdb), kept for its life, and the same
 * however the data dir is named or moved. A marker naming another store is never resumed.
 */
async function identityOf(source: Database): Promise<string> {
  const [row] = await queryRows<{ id: string }>(source.db, sql`select system_identifier::text as id from pg_control_system()`);
  return `pglite:${row!.id}`;
}

/** True when the target holds an unfinished copy of this source; refuses any other non-empty target. */
async function claimTarget(destination: Database, sourceIdentity: string, target: string): Promise<boolean> {
  const marker = await readCopyMarker(destination.db);
  if (marker) {
    if (marker.sourceIdentity !== sourceIdentity) {
      throw new StoreCopyError('target-not-empty', `the target ${target} holds an unfinished copy of another store; copy into a new, empty database`);
    }
    return true;
  }
  const withRows = await tablesWithRows(destination.db);
  if (withRows.length > 0) {
    const named = withRows.slice(0, 3).join(', ') + (withRows.length > 3 ? ` and ${withRows.length - 3} more` : '');
    throw new StoreCopyError('target-not-empty', `the target ${target} is not empty (rows in ${named}); copy into a new, empty database`);
  }
  await createCopyMarker(destination.db, sourceIdentity);
  return false;
}

async function copyTable(
  source: Database,
  destination: Database,
  table: CopiedTable,
  resumeFrom: { lastKey: string[] | undefined; copied: number; done: boolean } | undefined,
  request: StoreCopyRequest,
): Promise<TableProgress> {
  const total = await countRows(source.db, table.name);
  let copied = resumeFrom?.copied ?? 0;
  let lastKey = resumeFrom?.lastKey;
  if (!resumeFrom?.done) {
    const pageSize = rowsPerInsert(table, request.batchSize ?? DEFAULT_COPY_BATCH_SIZE);
    for (;;) {
      const page = await readBatch(source.db, table, lastKey, pageSize);
      const done = page.rows.length < pageSize;
      if (page.lastKey) lastKey = page.lastKey;
      copied += page.rows.length;
      // The page and its progress commit together: a crash leaves both or neither.
      await destination.db.transaction(async (tx) => {
        await insertBatch(tx, table, page.rows);
        await recordCopyProgress(tx, table.name, { lastKey, copied, done });
      });
      if (done) break;
      request.onProgress?.({ table: table.name, copied, total });
    }
  }
  const progress = { table: table.name, copied, total };
  request.onProgress?.(progress);
  return progress;
}

/** Row counts per table, then the audit chain on the target; answers the chain's length. */
async function verifyCopy(source: Database, destination: Database, tables: readonly CopiedTable[], target: string): Promise<number> {
  const differences: string[] = [];
  for (const table of tables) {
    const [inSource, inTarget] = [await countRows(source.db, table.name), await countRows(destination.db, table.name)];
    if (inSource !== inTarget) differences.push(`${table.name} ${inSource} in the store, ${inTarget} in the target`);
  }
  if (differences.length > 0) {
    throw new StoreCopyError('verification-failed', `row counts differ after the copy to ${target}: ${differences.join('; ')} (was the server started during the copy?)`);
  }
  const chain = await verifyAuditChain(destination.db);
  if (!chain.intact) {
    throw new StoreCopyError('verification-failed', `the audit chain on ${target} is broken at entry seq ${chain.brokenAt.seq}: ${chain.brokenAt.reason}`);
  }
  return chain.entries;
}

/**
 * What the operator does next, in order. The data keys in the copy are wrapped by the KEK in
 * use, so the server on PostgreSQL needs that same key; with PostgreSQL it is never generated.
 */
export function nextStepsAfterCopy(config: Config): string[] {
  const key =
    config.keys.provider === 'pkcs11'
      ? 'keep the same CIPHERGATE_PKCS11_* settings (the data keys are wrapped by that HSM key)'
      : config.keys.masterKey !== undefined || config.keys.masterKeyFile !== undefined
        ? 'keep the same CIPHERGATE_MASTER_KEY or CIPHERGATE_MASTER_KEY_FILE (the data keys are wrapped by it)'
        : `set CIPHERGATE_MASTER_KEY_FILE=${join(config.dataDir, MASTER_KEY_FILE_NAME)}, the generated key the data keys are wrapped by (with PostgreSQL no key is generated)`;
  return [
    key,
    'set CIPHERGATE_DATABASE_URL to the target URL and start ciphergate serve',
    `keep ${config.dataDir} until the server on PostgreSQL is proven; then back it up and retire it`,
  ];
}

/** The URL with its password replaced by `***`, for every message that names the target. */
export function maskedUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    // Not a URL at all: show no part of it that could be a secret.
    return '(the --to value, not a URL)';
  }
}

/** Removes the URL (as a whole) and its password (raw and decoded) from a driver's or the system's text. */
function secretMasker(url: string): (text: string) => string {
  const replacements: Array<[string, string]> = [[url, maskedUrl(url)]];
  try {
    const parsed = new URL(url);
    if (parsed.password) replacements.push([parsed.password, '***'], [decodeURIComponent(parsed.password), '***']);
  } catch {
    // Not a URL: the whole value was replaced above.
  }
  return (text) => replacements.filter(([secret]) => secret.length > 0).reduce((masked, [secret, shown]) => masked.split(secret).join(shown), text);
}

function oneLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).replace(/\s*\n\s*/g, ' ').trim();
}
