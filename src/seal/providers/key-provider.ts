/**
 * A key provider holds the root key-encryption key (KEK) and wraps/unwraps data keys (DEKs)
 * with it. Callers never see the KEK and never branch on which provider is active.
 */
export interface KeyProvider {
  /** `local` or `pkcs11`; recorded next to each wrapped DEK. */
  readonly kind: 'local' | 'pkcs11';
  /**
   * A stable, non-secret identifier of the KEK in use (for `local`: a short fingerprint of
   * the key; for `pkcs11`: the key label). Stored with each wrapped DEK so that `keys status`
   * can show which KEK a DEK is wrapped under and `keys rewrap` knows what is left to move.
   */
  readonly kekId: string;
  /** Wraps a 32-byte DEK. The result is opaque and self-describing for this provider. */
  wrapKey(dek: Buffer, context: WrapContext): Promise<Buffer>;
  /** Unwraps; throws KeyUnwrapError when the wrapped value is not valid under this KEK. */
  unwrapKey(wrapped: Buffer, context: WrapContext): Promise<Buffer>;
  /** Proves the KEK is usable (start-up and /readyz); throws KeyProviderError otherwise. */
  check(): Promise<void>;
  close(): Promise<void>;
}

/** Bound into the wrapping as additional authenticated data, so a wrapped DEK cannot be moved. */
export interface WrapContext {
  /** Tenant id, or `system` for system-wide data. */
  scope: string;
  version: number;
}

export class KeyProviderError extends Error {
  override readonly name = 'KeyProviderError';
}

export class KeyUnwrapError extends Error {
  override readonly name = 'KeyUnwrapError';
}
