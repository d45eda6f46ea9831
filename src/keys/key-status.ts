/**
 * Where the sealed data stands with respect to its keys: per scope, which DEK versions exist,
 * which one new values are sealed with, how many values sit under each, how many are still in
 * plaintext, and how far re-encryption has come. Counting reads every sealed column once
 * (one scan per table) and never opens a value, so it needs no key, only the database.
 */

import type { Db } from '../store/connection.js';
import { listDataKeys } from '../store/repositories/data-keys.js';
import { DAMAGED_KIND, PLAINTEXT_KIND, countValues, shapeOf } from '../store/sealed-rows.js';
import { sealedTables, type DeclaredSealedTable } from '../store/sealed-tables.js';

export interface KeyVersionStatus {
  version: number;
  state: 'active' | 'destroyed';
  kekId: string;
  createdAt: Date;
  current: boolean;
  /** Sealed values (rows × columns) under this version. */
  values: number;
}

export interface ScopeStatus {
  /** A tenant id, or `system`. */
  scope: string;
  /** The newest active version (new values are sealed with it); null when the scope has none. */
  currentVersion: number | null;
  versions: KeyVersionStatus[];
  /** Sealed values naming a version that `data_keys` does not have. */
  unknownVersionValues: number;
  /** Values that start like an envelope but whose header cannot be read. */
  damagedValues: number;
  /** Values still in plaintext (encrypt-existing has not reached them). */
  plaintextValues: number;
  sealedValues: number;
  onCurrentVersion: number;
  /** Share of sealed values on the current version, 0..1 (1 when nothing is sealed). */
  reencryptionProgress: number;
}

export interface ColumnStatus {
  table: string;
  column: string;
  sealedValues: number;
  onCurrentVersion: number;
  plaintextValues: number;
}

export interface KeyStatus {
  scopes: ScopeStatus[];
  columns: ColumnStatus[];
  totals: {
    sealedValues: number;
    onCurrentVersion: number;
    plaintextValues: number;
    damagedValues: number;
    unknownVersionValues: number;
    /** Share of all sealed values on their scope's current version, 0..1. */
    reencryptionProgress: number;
  };
}

export async function keyStatus(db: Db, tables: DeclaredSealedTable[] = sealedTables): Promise<KeyStatus> {
  const keyRows = await listDataKeys(db);
  const scopes = new Map<string, ScopeStatus>();
  const scopeOf = (name: string): ScopeStatus => {
    let status = scopes.get(name);
    if (status === undefined) {
      status = {
        scope: name,
        currentVersion: null,
        versions: [],
        unknownVersionValues: 0,
        damagedValues: 0,
        plaintextValues: 0,
        sealedValues: 0,
        onCurrentVersion: 0,
        reencryptionProgress: 1,
      };
      scopes.set(name, status);
    }
    return status;
  };
  for (const row of keyRows) {
    const status = scopeOf(row.scope);
    status.versions.push({ version: row.version, state: row.state, kekId: row.kekId, createdAt: row.createdAt, current: false, values: 0 });
    if (row.state === 'active' && row.wrappedKey !== null && (status.currentVersion === null || row.version > status.currentVersion)) {
      status.currentVersion = row.version;
    }
  }
  for (const status of scopes.values()) for (const version of status.versions) version.current = version.version === status.currentVersion;

  const columns: ColumnStatus[] = [];
  for (const declaration of tables) {
    const shape = shapeOf(declaration);
    const byColumn = new Map<string, ColumnStatus>(
      shape.fields.map((field) => [field.sqlName, { table: declaration.name, column: field.sqlName, sealedValues: 0, onCurrentVersion: 0, plaintextValues: 0 }]),
    );
    for (const count of await countValues(db, shape)) {
      const status = scopeOf(count.scope);
      const columnStatus = byColumn.get(count.column)!;
      if (count.kind === PLAINTEXT_KIND) {
        status.plaintextValues += count.values;
        columnStatus.plaintextValues += count.values;
        continue;
      }
      status.sealedValues += count.values;
      columnStatus.sealedValues += count.values;
      if (count.kind === DAMAGED_KIND) {
        status.damagedValues += count.values;
        continue;
      }
      const version = status.versions.find((v) => v.version === count.kind);
      if (version === undefined) status.unknownVersionValues += count.values;
      else version.values += count.values;
      if (count.kind === status.currentVersion) {
        status.onCurrentVersion += count.values;
        columnStatus.onCurrentVersion += count.values;
      }
    }
    columns.push(...byColumn.values());
  }

  const list = [...scopes.values()].sort((a, b) => (a.scope === b.scope ? 0 : a.scope === 'system' ? -1 : b.scope === 'system' ? 1 : a.scope < b.scope ? -1 : 1));
  for (const status of list) status.reencryptionProgress = share(status.onCurrentVersion, status.sealedValues);
  const total = (pick: (s: ScopeStatus) => number) => list.reduce((n, s) => n + pick(s), 0);
  const sealedValues = total((s) => s.sealedValues);
  const onCurrentVersion = total((s) => s.onCurrentVersion);
  return {
    scopes: list,
    columns,
    totals: {
      sealedValues,
      onCurrentVersion,
      plaintextValues: total((s) => s.plaintextValues),
      damagedValues: total((s) => s.damagedValues),
      unknownVersionValues: total((s) => s.unknownVersionValues),
      reencryptionProgress: share(onCurrentVersion, sealedValues),
    },
  };
}

/** A compact table for a terminal: one line per scope and version, then the totals. */
export function formatKeyStatus(status: KeyStatus): string {
  const header = ['scope', 'version', 'state', 'kek', 'created', 'values', 'plaintext', 'on current'];
  const rows: string[][] = [];
  for (const scope of status.scopes) {
    const scopeCells = [scope.scope];
    const tail = [String(scope.plaintextValues), `${scope.onCurrentVersion}/${scope.sealedValues} (${percent(scope.reencryptionProgress)})`];
    // Newest first: the version that matters most leads.
    const versions = [...scope.versions].sort((a, b) => b.version - a.version);
    if (versions.length === 0) rows.push([...scopeCells, '-', 'no key', '-', '-', '0', ...tail]);
    versions.forEach((version, index) => {
      rows.push([
        index === 0 ? scope.scope : '',
        `v${version.version}${version.current ? '*' : ''}`,
        version.state,
        version.kekId,
        version.createdAt.toISOString().slice(0, 10),
        String(version.values),
        ...(index === 0 ? tail : ['', '']),
      ]);
    });
    if (scope.unknownVersionValues > 0) rows.push(['', '?', 'unknown', '-', '-', String(scope.unknownVersionValues), '', '']);
    if (scope.damagedValues > 0) rows.push(['', '!', 'damaged', '-', '-', String(scope.damagedValues), '', '']);
  }
  const widths = header.map((cell, column) => Math.max(cell.length, ...rows.map((row) => row[column]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, column) => (column >= 5 ? cell.padStart(widths[column]!) : cell.padEnd(widths[column]!)))
      .join('  ')
      .trimEnd();
  const t = status.totals;
  return [
    line(header),
    ...rows.map(line),
    '',
    `* = current version. ${t.sealedValues} sealed values, ${t.onCurrentVersion} on their current version (${percent(t.reencryptionProgress)}), ` +
      `${t.plaintextValues} still in plaintext` +
      (t.damagedValues > 0 ? `, ${t.damagedValues} damaged` : '') +
      (t.unknownVersionValues > 0 ? `, ${t.unknownVersionValues} under unknown versions` : ''),
  ].join('\n');
}

function share(part: number, whole: number): number {
  return whole === 0 ? 1 : part / whole;
}

function percent(fraction: number): string {
  // Floor, so 99.99% is never shown as a finished 100%.
  return `${(Math.floor(fraction * 1000) / 10).toFixed(1)}%`;
}
