import { getTableColumns, getTableName } from 'drizzle-orm';
import type { PgColumn, PgTable } from 'drizzle-orm/pg-core';
import type { BlindIndexValue, SealedValue } from '../store/column-types.js';
import { SYSTEM_SCOPE } from './binding.js';
import { SealOpenError } from './errors.js';
import type { NormaliserKind } from '../domain/normalise.js';
import type { Keyring, Sealer } from './sealer.js';

export interface BlindIndexSpec {
  /** The TS property of the blind-index column in the Drizzle table. */
  property: string;
  normaliser: NormaliserKind;
  /** 8–32 bytes; see docs/sealing.md for the trade-off. */
  lengthBytes: number;
}

export interface SealedFieldSpec {
  blindIndex?: BlindIndexSpec;
}

/**
 * The one declaration of a table's sealed columns. Repositories seal and open through it;
 * encrypt-existing, re-encryption and `keys status` walk every declaration; a test checks that
 * every sealed column in the schema is declared here and nowhere written by hand.
 */
export interface SealedTable<Field extends string = string> {
  table: PgTable;
  /** SQL table name, bound into every value's AAD. */
  name: string;
  /** TS property of the primary key (a uuid), bound into the AAD as the row id. */
  idProperty: string;
  /** TS property of the tenant id, or 'system' for system-wide tables; `self` when the row id is the tenant. */
  scope: { property: string } | 'system' | 'self';
  fields: Record<Field, SealedFieldSpec>;
}

export interface ResolvedField {
  property: string;
  sqlName: string;
  blindIndex?: BlindIndexSpec & { sqlName: string };
}

export function declareSealedTable<Field extends string>(declaration: Omit<SealedTable<Field>, 'name'>): SealedTable<Field> {
  const columns = getTableColumns(declaration.table) as Record<string, PgColumn>;
  const mustExist = (property: string) => {
    if (!columns[property]) throw new Error(`sealed table ${getTableName(declaration.table)}: no column ${property}`);
  };
  mustExist(declaration.idProperty);
  if (typeof declaration.scope === 'object') mustExist(declaration.scope.property);
  for (const [property, spec] of Object.entries(declaration.fields) as Array<[string, SealedFieldSpec]>) {
    mustExist(property);
    if (columns[property]!.getSQLType() !== 'bytea') throw new Error(`sealed column ${property} must be bytea`);
    if (spec.blindIndex) mustExist(spec.blindIndex.property);
  }
  return { ...declaration, name: getTableName(declaration.table) };
}

/** SQL names of a declaration's columns, for the maintenance jobs that work in raw SQL. */
export function resolveFields(declaration: SealedTable): ResolvedField[] {
  const columns = getTableColumns(declaration.table) as Record<string, PgColumn>;
  return (Object.entries(declaration.fields) as Array<[string, SealedFieldSpec]>).map(([property, spec]) => ({
    property,
    sqlName: columns[property]!.name,
    ...(spec.blindIndex ? { blindIndex: { ...spec.blindIndex, sqlName: columns[spec.blindIndex.property]!.name } } : {}),
  }));
}

export function sqlNameOf(declaration: SealedTable, property: string): string {
  return (getTableColumns(declaration.table) as Record<string, PgColumn>)[property]!.name;
}

/**
 * Seals and opens whole rows by their declaration: the only path between plaintext and a
 * sealed column. Values are bound to (scope, table, column, row id), so a value copied to
 * another row, column or tenant fails to open.
 */
export class SealedFields {
  constructor(
    readonly sealer: Sealer,
    readonly keyring: Keyring & { refresh?: () => Promise<void> },
  ) {}

  /**
   * Column values to write for `plaintext` (by field; null stays null): each sealed field
   * becomes an envelope and, where declared, its blind index is computed alongside.
   */
  sealRow<Field extends string>(
    declaration: SealedTable<Field>,
    row: { scope: string; id: string },
    plaintext: Partial<Record<Field, string | null>>,
  ): Record<string, SealedValue | BlindIndexValue | null> {
    const columns = getTableColumns(declaration.table) as Record<string, PgColumn>;
    const out: Record<string, SealedValue | BlindIndexValue | null> = {};
    for (const [field, value] of Object.entries(plaintext) as Array<[Field, string | null | undefined]>) {
      const spec = declaration.fields[field];
      if (!spec) throw new Error(`${declaration.name}.${field} is not a sealed field`);
      if (value === undefined) continue;
      const column = columns[field]!.name;
      if (value === null) {
        out[field] = null;
        if (spec.blindIndex) out[spec.blindIndex.property] = null;
        continue;
      }
      out[field] = this.sealer.seal({ tenantId: row.scope, table: declaration.name, column, rowId: row.id }, value) as SealedValue;
      if (spec.blindIndex) {
        out[spec.blindIndex.property] = this.sealer.blindIndex({ tenantId: row.scope, table: declaration.name, column }, value, spec.blindIndex) as BlindIndexValue;
      }
    }
    return out;
  }

  /** Opens the named fields of a row read from the database; throws SealOpenError, never guesses. */
  openRow<Field extends string>(
    declaration: SealedTable<Field>,
    row: { scope: string; id: string },
    sealed: Partial<Record<Field, Buffer | null>>,
  ): Record<Field, string | null> {
    const columns = getTableColumns(declaration.table) as Record<string, PgColumn>;
    const out = {} as Record<Field, string | null>;
    for (const [field, value] of Object.entries(sealed) as Array<[Field, Buffer | null | undefined]>) {
      if (!declaration.fields[field]) throw new Error(`${declaration.name}.${field} is not a sealed field`);
      out[field] = value == null ? null : this.sealer.openString({ tenantId: row.scope, table: declaration.name, column: columns[field]!.name, rowId: row.id }, value);
    }
    return out;
  }

  /**
   * openRow for code that can wait: when a value names a key version this process has not
   * loaded yet (another instance rotated and wrote since our last refresh), the keyring is
   * refreshed once and the row opened again. Any other failure is thrown as it is.
   */
  async openRowFresh<Field extends string>(
    declaration: SealedTable<Field>,
    row: { scope: string; id: string },
    sealed: Partial<Record<Field, Buffer | null>>,
  ): Promise<Record<Field, string | null>> {
    try {
      return this.openRow(declaration, row, sealed);
    } catch (error) {
      if (!(error instanceof SealOpenError) || error.reason !== 'unknown-key-version' || !this.keyring.refresh) throw error;
      await this.keyring.refresh();
      return this.openRow(declaration, row, sealed);
    }
  }

  /** Opens one value; when its key version is unknown here (rotated elsewhere), refreshes the keyring once. */
  async openFresh(context: { scope: string; table: string; column: string; rowId: string }, value: Buffer): Promise<string> {
    const sealContext = { tenantId: context.scope, table: context.table, column: context.column, rowId: context.rowId };
    try {
      return this.sealer.openString(sealContext, value);
    } catch (error) {
      if (!(error instanceof SealOpenError) || error.reason !== 'unknown-key-version' || !this.keyring.refresh) throw error;
      await this.keyring.refresh();
      return this.sealer.openString(sealContext, value);
    }
  }

  /** Every blind index the value may be stored under (one per active key version), for `= ANY(...)`. */
  lookupIndexes<Field extends string>(declaration: SealedTable<Field>, field: Field, scope: string, value: string): BlindIndexValue[] {
    const spec = declaration.fields[field].blindIndex;
    if (!spec) throw new Error(`${declaration.name}.${field} has no blind index`);
    const column = sqlNameOf(declaration, field);
    return this.sealer.blindIndexAllVersions({ tenantId: scope, table: declaration.name, column }, value, spec) as BlindIndexValue[];
  }
}

export { SYSTEM_SCOPE };
