import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { phoneRecipientKey } from '../../src/identity/limits/recipient-keys.js';
import type { TwilioFake } from '../fakes/twilio.js';
import { describeEachBackend } from '../helpers/database.js';
import { type IdentityHarness } from '../helpers/identity.js';
import { freshAddresses } from '../helpers/addresses.js';
import { assertProblem } from '../helpers/problems.js';
import { randomPhone } from '../helpers/relay.js';
import { openSmsHarness, type SmsHarness } from '../helpers/sms-sender.js';

/**
 * Issue #13 item 4: SMS codes were limited per user only (5 an hour), so every account anyone
 * made could text a victim's number five codes an hour. Now one phone gets at most five codes an
 * hour, whichever users ask, keyed by a keyed hash of the number in E.164 (however it is written).
 */

const PER_PHONE_PER_HOUR = 5;

await describeEachBackend('SMS codes to one phone from many accounts', (backend) => {
  let harness: IdentityHarness;
  let twilio: TwilioFake;
  const freshIp = freshAddresses('10.64');

  let sms: SmsHarness;
  before(async () => {
    sms = await openSmsHarness(backend);
    ({ harness, twilio } = sms);
  });
  after(() => sms?.close());

  test('a phone gets at most five codes an hour, however many accounts ask and however the number is written', async () => {
    const victim = randomPhone();
    const national = victim.slice(2).replace(/^(\d{3})(\d{3})(\d{4})$/, '($1) $2-$3');
    const textsToVictim = () => twilio.messages.filter((message) => message.to === victim).length;
    const answers: number[] = [];
    for (let account = 1; account <= PER_PHONE_PER_HOUR + 3; account++) {
      const user = await harness.createUser({ role: 'employee' });
      const { accessToken } = await harness.signIn(user);
      const started = await harness.request({
        method: 'POST',
        url: '/api/v1/auth/phone',
        body: { phone: account % 2 === 0 ? national : victim, currentPassword: user.password },
        token: accessToken,
        remoteAddress: freshIp(),
      });
      answers.push(started.statusCode);
      if (started.statusCode === 429) {
        const problem = assertProblem(started, 429, 'sms-throttled');
        assert.ok(Number(started.headers['retry-after']) > 30 && Number(started.headers['retry-after']) <= 3600);
        assert.equal(problem.retryAfter, Number(started.headers['retry-after']));
      }
    }
    assert.deepEqual(answers, [...Array(PER_PHONE_PER_HOUR).fill(204), 429, 429, 429]);
    assert.equal(textsToVictim(), PER_PHONE_PER_HOUR);
    // Another number is not held up.
    const user = await harness.createUser({ role: 'employee' });
    const { accessToken } = await harness.signIn(user);
    const other = randomPhone();
    assert.equal((await harness.request({ method: 'POST', url: '/api/v1/auth/phone', body: { phone: other, currentPassword: user.password }, token: accessToken, remoteAddress: freshIp() })).statusCode, 204);
  });

  test('the limit key is a keyed hash of the number in E.164, never the number', () => {
    const phone = randomPhone();
    const key = phoneRecipientKey(harness.sealing.fields, phone);
    assert.match(key, /^tel:[0-9a-f]{32}$/);
    assert.equal(phoneRecipientKey(harness.sealing.fields, phone.slice(2).replace(/^(\d{3})(\d{3})(\d{4})$/, '($1) $2-$3')), key);
    assert.ok(!key.includes(phone.slice(2)));
    assert.notEqual(phoneRecipientKey(harness.sealing.fields, randomPhone()), key);
  });
});
