declare const sealedBrand: unique symbol;
declare const blindIndexBrand: unique symbol;

/**
 * A sealed envelope. Only the seal layer makes one (SealedFields.sealRow), so a plain string
 * or Buffer written to a sealed column is a type error, not a leak. The brands are symbols
 * nobody can name outside this module. The two other places that assert the type are the
 * column types reading bytes back from the database (src/store/column-types.ts);
 * test/store/sealing-by-construction.test.ts proves that no repository method or raw insert
 * accepts anything else, and that no other file asserts these types.
 */
export type SealedValue = Buffer & { readonly [sealedBrand]: true };
/** A keyed blind index, made only by the seal layer. */
export type BlindIndexValue = Buffer & { readonly [blindIndexBrand]: true };
