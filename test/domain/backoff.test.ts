import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { backoffDelayMs } from '../../src/domain/backoff.js';

describe('backoffDelayMs', () => {
  test('equal jitter: half the ceiling fixed, half random, the ceiling doubling per attempt', () => {
    const options = { baseMs: 100, capMs: 10_000 };
    assert.equal(backoffDelayMs(0, { ...options, random: () => 0 }), 50);
    assert.equal(backoffDelayMs(0, { ...options, random: () => 0.999999 }), 100);
    assert.equal(backoffDelayMs(3, { ...options, random: () => 0 }), 400);
    assert.equal(backoffDelayMs(3, { ...options, random: () => 0.5 }), 600);
  });

  test('never retries at once with equal jitter, and never waits past the cap', () => {
    for (let attempt = 0; attempt < 40; attempt += 1) {
      for (const draw of [0, 0.25, 0.999999]) {
        const delay = backoffDelayMs(attempt, { baseMs: 200, capMs: 5_000, random: () => draw });
        assert.ok(delay >= 100, `attempt ${attempt}: ${delay}`);
        assert.ok(delay <= 5_000, `attempt ${attempt}: ${delay}`);
      }
    }
  });

  test('full jitter: anywhere from 0 to the ceiling', () => {
    assert.equal(backoffDelayMs(2, { baseMs: 100, capMs: 1_000, jitter: 'full', random: () => 0 }), 0);
    assert.equal(backoffDelayMs(2, { baseMs: 100, capMs: 1_000, jitter: 'full', random: () => 0.5 }), 200);
    assert.equal(backoffDelayMs(10, { baseMs: 100, capMs: 1_000, jitter: 'full', random: () => 0.5 }), 500);
  });

  test('a negative or huge attempt is bounded instead of overflowing', () => {
    assert.equal(backoffDelayMs(-5, { baseMs: 100, capMs: 1_000, random: () => 0 }), 50);
    assert.equal(backoffDelayMs(Number.MAX_SAFE_INTEGER, { baseMs: 1, capMs: 1_000_000_000, random: () => 0 }), 2 ** 16 / 2);
  });
});
