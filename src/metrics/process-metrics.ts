import { collectDefaultMetrics, Counter, Registry } from 'prom-client';
import { sealCounters } from './seal-counters.js';

let shared: Registry | undefined;

/**
 * What belongs to the process rather than to one app: Node's default metrics (CPU, memory, event
 * loop lag, handles) and the seal/open counts, which the Sealer keeps process-wide. Built once:
 * the default collectors start an event-loop monitor each time they are installed, so every app
 * of a process (tests build many) shares this one registry.
 */
export function processMetrics(): Registry {
  if (shared) return shared;
  const registry = new Registry();
  // Unprefixed (process_cpu_seconds_total, nodejs_heap_size_used_bytes, …): the names existing Node dashboards expect.
  collectDefaultMetrics({ register: registry });
  new Counter({
    name: 'ciphergate_seal_operations_total',
    help: 'Values sealed, opened and blind-indexed by this process, by operation',
    labelNames: ['operation'] as const,
    registers: [registry],
    collect() {
      this.reset();
      this.inc({ operation: 'seal' }, sealCounters.seals);
      this.inc({ operation: 'open' }, sealCounters.opens);
      this.inc({ operation: 'blind-index' }, sealCounters.blindIndexes);
    },
  });
  new Counter({
    name: 'ciphergate_seal_open_failures_total',
    help: 'Sealed values that could not be opened by this process, by reason (authentication-failed means tampering or a wrong key)',
    labelNames: ['reason'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [reason, count] of Object.entries(sealCounters.openFailuresByReason)) this.inc({ reason }, count);
    },
  });
  shared = registry;
  return registry;
}
