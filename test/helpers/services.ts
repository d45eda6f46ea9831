import assert from 'node:assert/strict';
import { test } from 'node:test';

/**
 * A suite that needs a service which is absent skips with a one-line reason on a developer
 * machine; under CI=true the same absence is a failure, so CI always runs everything.
 */
export function serviceGate(service: string, reason: string | undefined): { skip: string | false } {
  if (reason === undefined) return { skip: false };
  if (process.env.CI === 'true') {
    test(`${service} is available (required with CI=true)`, () => {
      assert.fail(`${service} unavailable: ${reason}`);
    });
  }
  return { skip: `${service} unavailable: ${reason}` };
}
