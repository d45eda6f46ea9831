import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { providersOf } from '../../src/domain/tenant.js';

describe('providersOf', () => {
  const allowIps = { twilio: [], airtable: [], podium: [] };

  test('no provider block, no provider', () => {
    assert.deepEqual(providersOf({ allowIps }), []);
  });

  test('the configured providers, in a fixed order whatever the settings order', () => {
    assert.deepEqual(
      providersOf({
        podium: { locationUid: 'loc' },
        allowIps,
        airtable: { baseId: 'app1', table: 'Conversations', fields: {} },
        twilio: { accountSid: 'AC1', fromNumber: '+15550000001' },
      }),
      ['twilio', 'airtable', 'podium'],
    );
  });
});
