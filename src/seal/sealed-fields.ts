import type { BlindIndexValue, SealedValue } from './sealed-value.js';
import { SYSTEM_SCOPE } from './binding.js';
import { SealOpenError } from './errors.js';
import type { NormaliserKind } from '../domain/normalise.js';
import type { Keyring, Sealer } from './sealer.js';

export interface BlindIndexSpec<Property extends string = string> {
  /** The TS property of the blind-index column in the Drizzle table. */
  property: Property;
  normaliser: NormaliserKind;
  /** 8–32 bytes; see docs/sealing.md for the trade-off. */
  lengthBytes: number;
}

export interface SealedFieldSpec {
  blindIndex?: BlindIndexSpec;
}

/** A declaration's fields: each sealed column's TS property, with its blind index if it has one. */
export type SealedFieldSpecs = Record<string, SealedFieldSpec>;

/** The blind-index column a field's spec names, or never. */
type BlindIndexPropertyOf<Spec> = Spec extends { blindIndex: { property: infer Property extends string } } ? Property : never;

/** `Value` (a sealed or index type) with the nullness of the plaintext it was made from. */
type LikeNullness<Plaintext, Value> = Plaintext extends null ? null : null extends Plaintext ? Value | null : Value;

/**
 * Plaintext for some of a declaration's fields: a string, or null to clear the column. A key
 * the declaration does not name is a type error (and a runtime error).
 */
export type SealedInput<Fields extends SealedFieldSpecs> = { [Field in keyof Fields]?: string | null };

/**
 * Refuses keys of `Input` that `Fields` does not declare. The constraint alone does not: a
 * generic argument may carry extra properties (`{ body, bogus }`, or a variable built
 * elsewhere), which would then be left unsealed or, for a blind-index property, be taken as
 * plaintext.
 */
type OnlyDeclared<Fields extends SealedFieldSpecs, Input> = { [Field in Exclude<keyof Input, keyof Fields>]: never };

/**
 * Exactly the columns `sealRow` writes for `Input`: each given field as a SealedValue and, where
 * the field has one, its blind-index column as a BlindIndexValue, each null where the plaintext
 * was. Spread into an insert or update of the declared table, these are the only values its
 * sealed columns accept (the column types are branded), so plaintext cannot reach them.
 */
export type SealedColumns<Fields extends SealedFieldSpecs, Input> = {
  [Field in keyof Input & keyof Fields]: LikeNullness<Input[Field], SealedValue>;
} & {
  [Field in keyof Input & keyof Fields as BlindIndexPropertyOf<Fields[Field]>]: LikeNullness<Input[Field], BlindIndexValue>;
};

/**
 * The one declaration of a table's sealed columns. Repositories seal and open through it;
 * encrypt-existing, re-encryption and `keys status` walk every declaration; a test checks that
 * every sealed column in the schema is declared and nowhere written by hand. The store makes
 * one per table from its schema (src/store/sealed-tables.ts), so this layer needs no ORM.
 */
export interface SealedTable<Fields extends SealedFieldSpecs = SealedFieldSpecs> {
  /** SQL table name, bound into every value's AAD. */
  name: string;
  /** TS property of the primary key (a uuid), bound into the AAD as the row id. */
  idProperty: string;
  /** TS property of the tenant id, or 'system' for system-wide tables; `self` when the row id is the tenant. */
  scope: { property: string } | 'system' | 'self';
  fields: Fields;
  /**
   * The SQL name of every column named above (each field, each blind index, the id, the scope),
   * by TS property. A field's SQL name is bound into the AAD of its values.
   */
  columnNames: Readonly<Record<string, string>>;
}

export interface ResolvedField {
  property: string;
  sqlName: string;
  blindIndex?: BlindIndexSpec & { sqlName: string };
}

/** SQL names of a declaration's columns, for the maintenance jobs that work in raw SQL. */
export function resolveFields(declaration: SealedTable): ResolvedField[] {
  return (Object.entries(declaration.fields) as Array<[string, SealedFieldSpec]>).map(([property, spec]) => ({
    property,
    sqlName: sqlNameOf(declaration, property),
    ...(spec.blindIndex ? { blindIndex: { ...spec.blindIndex, sqlName: sqlNameOf(declaration, spec.blindIndex.property) } } : {}),
  }));
}

export function sqlNameOf(declaration: SealedTable, property: string): string {
  const name = Object.hasOwn(declaration.columnNames, property) ? declaration.columnNames[property] : undefined;
  if (name === undefined) throw new Error(`sealed table ${declaration.name}: no column ${property}`);
  return name;
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
  sealRow<Fields extends SealedFieldSpecs, const Input extends SealedInput<Fields>>(
    declaration: SealedTable<Fields>,
    row: { scope: string; id: string },
    plaintext: Input & OnlyDeclared<Fields, Input>,
  ): SealedColumns<Fields, Input> {
    const out: Record<string, SealedValue | BlindIndexValue | null> = {};
    for (const [field, value] of Object.entries(plaintext) as Array<[string, string | null | undefined]>) {
      const spec = Object.hasOwn(declaration.fields, field) ? declaration.fields[field] : undefined;
      if (!spec) throw new Error(`${declaration.name}.${field} is not a sealed field`);
      if (value === undefined) continue;
      const column = sqlNameOf(declaration, field);
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
    // Built key by key from the declaration above; the type says which keys those are.
    return out as SealedColumns<Fields, Input>;
  }

  /** Opens the named fields of a row read from the database; throws SealOpenError, never guesses. */
  openRow<Fields extends SealedFieldSpecs, Field extends keyof Fields & string>(
    declaration: SealedTable<Fields>,
    row: { scope: string; id: string },
    sealed: Partial<Record<Field, Buffer | null>>,
  ): Record<Field, string | null> {
    const out = {} as Record<Field, string | null>;
    for (const [field, value] of Object.entries(sealed) as Array<[Field, Buffer | null | undefined]>) {
      if (!Object.hasOwn(declaration.fields, field)) throw new Error(`${declaration.name}.${field} is not a sealed field`);
      out[field] = value == null ? null : this.sealer.openString({ tenantId: row.scope, table: declaration.name, column: sqlNameOf(declaration, field), rowId: row.id }, value);
    }
    return out;
  }

  /**
   * openRow for code that can wait: when a value names a key version this process has not
   * loaded yet (another instance rotated and wrote since our last refresh), the keyring is
   * refreshed once and the row opened again. Any other failure is thrown as it is.
   */
  async openRowFresh<Fields extends SealedFieldSpecs, Field extends keyof Fields & string>(
    declaration: SealedTable<Fields>,
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
  lookupIndexes<Fields extends SealedFieldSpecs>(declaration: SealedTable<Fields>, field: keyof Fields & string, scope: string, value: string): BlindIndexValue[] {
    const spec = declaration.fields[field]?.blindIndex;
    if (!spec) throw new Error(`${declaration.name}.${field} has no blind index`);
    const column = sqlNameOf(declaration, field);
    return this.sealer.blindIndexAllVersions({ tenantId: scope, table: declaration.name, column }, value, spec) as BlindIndexValue[];
  }
}

export { SYSTEM_SCOPE };
