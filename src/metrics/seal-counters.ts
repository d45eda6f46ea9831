/**
 * Values sealed, opened and blind-indexed by this process: counted by the Sealer (src/seal),
 * served by `/metrics` (process-metrics.ts). Process-wide because a process may hold several
 * sealers (the server's, a test's) and the figures are the process's. Only ever incremented.
 *
 * The keys of `openFailuresByReason` are the reasons of `SealOpenError`: the Sealer's use of
 * them is type-checked against its `SealOpenFailure` union.
 */
export const sealCounters = {
  seals: 0,
  opens: 0,
  openFailures: 0,
  openFailuresByReason: {
    'not-sealed': 0,
    'unsupported-format': 0,
    truncated: 0,
    'unknown-key-version': 0,
    'authentication-failed': 0,
  },
  blindIndexes: 0,
};
