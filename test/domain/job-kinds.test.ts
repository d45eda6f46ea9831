import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { JOB } from '../../src/domain/job-kinds.js';

describe('job kinds', () => {
  test('each kind has its own name, a short lower-case token as stored in jobs.kind', () => {
    const names = Object.values(JOB);
    assert.equal(new Set(names).size, names.length);
    for (const name of names) assert.match(name, /^[a-z][a-z-]{0,31}$/);
  });
});
