import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { setImmediate as tick } from 'node:timers/promises';
import { test } from 'node:test';
import type { DestinationStream } from 'pino';
import { createLogger } from '../../src/log/logger.js';
import { humanOrJson } from '../../src/log/pretty.js';

/** A stream that says it is (or is not) a terminal and keeps what it is given. */
function terminal(isTTY: boolean): Writable & { isTTY: boolean; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      chunks.push(chunk.toString());
      done();
    },
  }) as Writable & { isTTY: boolean; text: () => string };
  stream.isTTY = isTTY;
  stream.text = () => chunks.join('');
  return stream;
}

test('not a terminal: the JSON destination, unchanged', () => {
  const json = { write: () => undefined } as DestinationStream;
  assert.equal(
    humanOrJson(terminal(false), () => json),
    json,
  );
});

test('a terminal: readable lines, still redacted', async () => {
  const tty = terminal(true);
  const logger = createLogger({ level: 'info', destination: humanOrJson(tty, () => assert.fail('JSON chosen for a terminal')) });
  logger.info({ password: 'hunter2-never-logged', tenantId: 't-1' }, 'ciphergate listening');
  await tick();
  await tick();
  const text = tty.text();
  assert.match(text, /INFO.*ciphergate listening/);
  assert.doesNotMatch(text, /^\{/, 'not JSON');
  assert.equal(text.includes('hunter2-never-logged'), false);
  assert.match(text, /\[redacted\]/);
});
