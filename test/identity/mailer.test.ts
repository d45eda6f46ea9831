import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { describe, test, type TestContext } from 'node:test';
import { format } from 'node:util';
import { MailConfigError, MailDeliveryError, SmtpMailer, openMailer, type MailFailure } from '../../src/providers/smtp/mailer.js';
import { renderVerificationEmail } from '../../src/identity/email/emails.js';
import { renderSetupEmail } from '../../src/identity/email/emails.js';
import { captureLogs } from '../helpers/log-capture.js';
import { startSmtpServer } from '../helpers/smtp.js';

const RECIPIENT = 'ada.lovelace@example.org';
const FROM = 'Ciphergate <no-reply@gate.example.org>';
const SMTP_USER = 'gateway';
const SMTP_PASSWORD = 'smtp-Pa55word-that-must-not-leak';
/** Long enough that nodemailer has to wrap the line (quoted-printable), as real setup links are. */
const setupLink = () => `https://gate.example.org/account/setup?token=${randomBytes(48).toString('base64url')}`;

describe('SmtpMailer', () => {
  test('delivers a setup email whose link arrives intact, and logs only a message id', async (t) => {
    const smtp = closeAfter(t, await startSmtpServer());
    const logs = captureLogs();
    const mailer = closeAfter(t, openMailer({ smtpUrl: smtp.url, publicUrl: 'https://gate.example.org' }, logs.logger) ?? assert.fail('no mailer'));
    const link = setupLink();

    const printed = await consoleOutputOf(() => mailer.send({ to: RECIPIENT, ...renderSetupEmail(link) }));

    const received = await smtp.waitForMessage(RECIPIENT);
    assert.deepEqual(received.to, [RECIPIENT]);
    assert.equal(received.from, 'no-reply@gate.example.org');
    assert.match(received.raw, /^From: Ciphergate <no-reply@gate\.example\.org>$/m);
    assert.equal(received.subject, 'Set up your Ciphergate account');
    assert.ok(received.text.split('\n').includes(link), 'the link stands on a line of its own');

    const lines = logs.lines();
    assert.equal(lines.length, 1);
    assert.equal(lines[0]?.msg, 'email sent');
    assert.match(String(lines[0]?.messageId), /^<.+@gate\.example\.org>$/);
    assertNothingLeaks([logs.text()], [RECIPIENT, link, link.slice(link.indexOf('token=') + 'token='.length), 'Set up your']);
    assert.equal(printed, '', 'nodemailer prints nothing of its own');
  });

  test('writes an IP host of the public URL as an address literal', async (t) => {
    const smtp = closeAfter(t, await startSmtpServer());
    const mailer = closeAfter(t, openMailer({ smtpUrl: smtp.url, publicUrl: 'http://127.0.0.1:8080' }, captureLogs().logger) ?? assert.fail('no mailer'));
    await mailer.send({ to: RECIPIENT, subject: 'hello', text: 'hello' });
    assert.equal((await smtp.waitForMessage(RECIPIENT)).from, 'no-reply@[127.0.0.1]');
  });

  test('no SMTP URL means no mailer', () => {
    assert.equal(openMailer({ publicUrl: 'https://gate.example.org' }, captureLogs().logger), undefined);
  });

  test('a refused recipient is a permanent MailDeliveryError that names neither the address nor the link', async (t) => {
    // The helper's refusal echoes the address, as Postfix's "<a@b>: Recipient address rejected" does.
    const smtp = closeAfter(t, await startSmtpServer({ failWith: 550 }));
    const logs = captureLogs();
    const mailer = closeAfter(t, new SmtpMailer({ url: smtp.url, from: FROM, logger: logs.logger }));
    const link = setupLink();

    const error = await rejection(mailer.send({ to: RECIPIENT, ...renderSetupEmail(link) }));

    assertFailure(error, 'recipient-refused');
    assert.equal(error.responseCode, 550);
    assert.equal(error.permanent, true);
    assert.equal(error.cause, undefined, 'the original error quotes the server reply, so it is not kept');
    assert.equal(smtp.messages.length, 0);
    assertNothingLeaks([...errorTexts(error), logs.text()], [RECIPIENT, 'ada.lovelace', link]);
    assert.equal(logs.lines()[0]?.reason, 'recipient-refused');
  });

  test('a message refused after DATA is reported as such', async (t) => {
    const smtp = closeAfter(t, await startSmtpServer({ failWith: 554, failAt: 'data' }));
    const logs = captureLogs();
    const mailer = closeAfter(t, new SmtpMailer({ url: smtp.url, from: FROM, logger: logs.logger }));
    const link = setupLink();

    const error = await rejection(mailer.send({ to: RECIPIENT, ...renderVerificationEmail(link) }));

    assertFailure(error, 'message-refused');
    assert.equal(error.responseCode, 554);
    assertNothingLeaks([...errorTexts(error), logs.text()], [RECIPIENT, link]);
  });

  test('a recipient that is not one plain address is refused before anything is sent', async (t) => {
    const smtp = closeAfter(t, await startSmtpServer());
    const mailer = closeAfter(t, new SmtpMailer({ url: smtp.url, from: FROM, logger: captureLogs().logger }));
    const smuggled = [
      `${RECIPIENT}, thief@example.net`,
      `team: ${RECIPIENT}, thief@example.net;`,
      `"Ada" <${RECIPIENT}>`,
      `${RECIPIENT}\r\nBcc: thief@example.net`,
      'no-at-sign',
    ];
    for (const to of smuggled) {
      assertFailure(await rejection(mailer.send({ to, subject: 'x', text: 'x' })), 'invalid-recipient');
    }
    assert.equal(smtp.messages.length, 0);
  });
});

describe('SmtpMailer against a dead or stalling server', () => {
  test('a closed port fails fast as unreachable, without the password in the error or logs', async (t) => {
    const port = await closedPort();
    const logs = captureLogs();
    const url = `smtp://${SMTP_USER}:${SMTP_PASSWORD}@127.0.0.1:${port}`;
    const mailer = closeAfter(t, new SmtpMailer({ url, from: FROM, logger: logs.logger, timeoutMs: 500 }));
    const started = performance.now();

    const error = await rejection(mailer.send({ to: RECIPIENT, subject: 'x', text: setupLink() }));

    assertFailure(error, 'unreachable');
    assert.ok(performance.now() - started < 500);
    assertNothingLeaks([...errorTexts(error), logs.text()], [RECIPIENT, SMTP_PASSWORD]);
    assert.equal(logs.lines()[0]?.systemError, 'ECONNREFUSED');
  });

  test('a server that accepts the connection but never greets times out instead of hanging', async (t) => {
    const silent = closeAfter(t, await stallingServer({ replyAfterMs: undefined }));
    const mailer = closeAfter(t, new SmtpMailer({ url: `smtp://127.0.0.1:${silent.port}`, from: FROM, logger: captureLogs().logger, timeoutMs: 200 }));
    const started = performance.now();

    const error = await rejection(mailer.send({ to: RECIPIENT, subject: 'x', text: 'x' }));

    assertFailure(error, 'timeout');
    assert.ok(performance.now() - started < 1000, 'bounded by our timeout, not by nodemailer defaults');
  });

  test('a server that answers every command just inside the timeout is cut off by the overall deadline', async (t) => {
    // Each reply comes after 240 ms, inside the 400 ms per-wait timeout, so only the deadline
    // (three waits, 1200 ms) stops the six round trips of a send from taking 1440 ms or more.
    const slow = closeAfter(t, await stallingServer({ replyAfterMs: 240 }));
    const logs = captureLogs();
    const mailer = closeAfter(t, new SmtpMailer({ url: `smtp://127.0.0.1:${slow.port}`, from: FROM, logger: logs.logger, timeoutMs: 400 }));
    const started = performance.now();

    const error = await rejection(mailer.send({ to: RECIPIENT, subject: 'x', text: 'x' }));
    const elapsed = performance.now() - started;

    assertFailure(error, 'timeout');
    assert.equal(logs.lines()[0]?.smtpError, 'EABORT', 'the deadline fired, not a per-wait timeout');
    assert.ok(elapsed < 1800, `stopped near the deadline, took ${Math.round(elapsed)} ms`);
  });
});

describe('SMTP credentials', () => {
  test('the password in the URL is used to log in and never logged', async (t) => {
    const smtp = closeAfter(t, await startSmtpServer({ auth: { user: SMTP_USER, pass: SMTP_PASSWORD } }));
    const logs = captureLogs();
    const url = `smtp://${SMTP_USER}:${SMTP_PASSWORD}@127.0.0.1:${smtp.port}`;
    const mailer = closeAfter(t, openMailer({ smtpUrl: url, publicUrl: 'https://gate.example.org' }, logs.logger) ?? assert.fail('no mailer'));

    await mailer.send({ to: RECIPIENT, subject: 'x', text: 'x' });

    assert.equal((await smtp.waitForMessage(RECIPIENT)).authenticatedUser, SMTP_USER);
    assertNothingLeaks([logs.text()], [SMTP_PASSWORD, RECIPIENT]);
  });

  test('a percent-encoded password is decoded before it is sent', async (t) => {
    const password = 'p@ss:w/rd%?#';
    const smtp = closeAfter(t, await startSmtpServer({ auth: { user: SMTP_USER, pass: password } }));
    const url = `smtp://${SMTP_USER}:${encodeURIComponent(password)}@127.0.0.1:${smtp.port}`;
    const mailer = closeAfter(t, new SmtpMailer({ url, from: FROM, logger: captureLogs().logger }));
    await mailer.send({ to: RECIPIENT, subject: 'x', text: 'x' });
    assert.equal(smtp.messages.length, 1);
  });

  test('a wrong password is auth-failed, and neither the error nor the logs contain it', async (t) => {
    const smtp = closeAfter(t, await startSmtpServer({ auth: { user: SMTP_USER, pass: 'the-right-one' } }));
    const logs = captureLogs();
    const url = `smtp://${SMTP_USER}:${SMTP_PASSWORD}@127.0.0.1:${smtp.port}`;
    const mailer = closeAfter(t, new SmtpMailer({ url, from: FROM, logger: logs.logger }));

    const error = await rejection(mailer.send({ to: RECIPIENT, subject: 'x', text: 'x' }));

    assertFailure(error, 'auth-failed');
    assert.equal(error.responseCode, 535);
    assert.equal(smtp.messages.length, 0);
    assertNothingLeaks([...errorTexts(error), logs.text()], [SMTP_PASSWORD, RECIPIENT]);
  });

  test('a URL with query parameters is refused without repeating the URL', () => {
    // nodemailer would read `?logger=true` over our options and print every message, links included.
    const url = `smtp://${SMTP_USER}:${SMTP_PASSWORD}@mail.example.org?logger=true&debug=true`;
    assert.throws(
      () => new SmtpMailer({ url, from: FROM, logger: captureLogs().logger }),
      (error: unknown) => error instanceof MailConfigError && /query/.test(error.message) && !error.message.includes(SMTP_PASSWORD),
    );
  });

  test('only smtp:// and smtps:// are accepted', () => {
    const url = `http://${SMTP_USER}:${SMTP_PASSWORD}@mail.example.org`;
    assert.throws(
      () => new SmtpMailer({ url, from: FROM, logger: captureLogs().logger }),
      (error: unknown) => error instanceof MailConfigError && !error.message.includes(SMTP_PASSWORD),
    );
  });
});

describe('email texts', () => {
  const link = 'https://gate.example.org/account/setup?token=abc';

  for (const [name, render, subject] of [
    ['setup', renderSetupEmail, /set up/i],
    ['verification', renderVerificationEmail, /confirm/i],
  ] as const) {
    test(`${name}: plain text with the link on its own line, single use, 24 h`, () => {
      const email = render(link);
      assert.match(email.subject, subject);
      assert.ok(email.text.split('\n').includes(link));
      assert.match(email.text, /only once/);
      assert.match(email.text, /expires 24 hours after/);
      assert.doesNotMatch(email.text, /<[a-z]/i, 'no HTML');
    });
  }

  test('verification: says the password is chosen there, and the lifetime it is given (CIPHERGATE_SIGNUP_PENDING_HOURS)', () => {
    assert.match(renderVerificationEmail(link).text, /choose its password/);
    assert.match(renderVerificationEmail(link, 1).text, /expires 1 hour after/);
    assert.match(renderVerificationEmail(link, 72).text, /expires 72 hours after/);
  });
});

/** Closed when the test ends, pass or fail, so a failed assertion cannot leave a socket holding the run open. */
function closeAfter<T extends { close(): Promise<void> }>(t: TestContext, resource: T): T {
  t.after(() => resource.close());
  return resource;
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  return assert.fail('expected the send to fail');
}

function assertFailure(error: unknown, reason: MailFailure): asserts error is MailDeliveryError {
  assert.ok(error instanceof MailDeliveryError, `expected MailDeliveryError, got ${String(error)}`);
  assert.equal(error.name, 'MailDeliveryError');
  assert.equal(error.reason, reason);
}

/** Everywhere a failure can be read: the message, the stack, and the own fields a logger would serialise. */
function errorTexts(error: MailDeliveryError): string[] {
  return [error.message, String(error.stack), JSON.stringify(error)];
}

function assertNothingLeaks(places: string[], secrets: string[]): void {
  for (const place of places) {
    for (const secret of secrets) assert.ok(!place.includes(secret), `leaked ${JSON.stringify(secret)} in ${place}`);
  }
}

/**
 * What a library prints through `console` while `work` runs (nodemailer's own logger uses
 * console.log). process.stdout itself is left alone: the test runner reports through it.
 */
async function consoleOutputOf(work: () => Promise<unknown>): Promise<string> {
  const printed: string[] = [];
  const methods = ['log', 'info', 'warn', 'error', 'debug', 'trace'] as const;
  const originals = methods.map((method) => console[method]);
  for (const method of methods) console[method] = (...args: unknown[]) => void printed.push(format(...args));
  try {
    await work();
  } finally {
    methods.forEach((method, index) => (console[method] = originals[index] as (typeof console)[typeof method]));
  }
  return printed.join('\n');
}

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * A wedged SMTP server: it accepts TCP connections and then either says nothing at all
 * (`replyAfterMs: undefined`) or accepts everything but waits that long before each reply.
 */
async function stallingServer(options: { replyAfterMs: number | undefined }): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
    const delay = options.replyAfterMs;
    if (delay === undefined) return;
    const reply = (line: string) => setTimeout(() => socket.writable && socket.write(`${line}\r\n`), delay);
    let inData = false;
    let buffered = '';
    reply('220 stalling.test ESMTP');
    socket.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('latin1');
      for (let end = buffered.indexOf('\r\n'); end !== -1; end = buffered.indexOf('\r\n')) {
        const line = buffered.slice(0, end);
        buffered = buffered.slice(end + 2);
        if (inData) {
          if (line === '.') {
            inData = false;
            reply('250 queued');
          }
        } else if (/^DATA$/i.test(line)) {
          inData = true;
          reply('354 go ahead');
        } else {
          reply('250 ok');
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
