import { openIdentity, type Identity } from '../identity/identity.js';
import { openSealingRuntime, type RuntimeSurroundings, type SealingRuntime } from './open-runtime.js';

/**
 * Runs `action` with identity open over the data and keys of this deployment, then closes
 * everything. No Redis: a revocation made here reaches running servers through the database
 * within their session-cache age (1 s, see LIVENESS_CACHE_MS), which is the promise anyway.
 */
export async function withIdentity<T>(io: RuntimeSurroundings, action: (identity: Identity, runtime: SealingRuntime) => Promise<T>): Promise<T> {
  const runtime = await openSealingRuntime(io, { logTo: 'stderr', defaultLogLevel: 'warn' });
  try {
    const identity = await openIdentity({ config: runtime.config, db: runtime.database.db, fields: runtime.sealing.fields, logger: runtime.logger });
    try {
      return await action(identity, runtime);
    } finally {
      await identity.close();
    }
  } finally {
    await runtime.close();
  }
}
