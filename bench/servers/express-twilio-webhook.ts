// The baseline of bench/inbound-sms.bench.ts: the Express 4 handler of Twilio's own quick start,
// `express.urlencoded()` + `twilio.webhook()`, answering the same empty TwiML Ciphergate answers.
// It checks the signature (HMAC-SHA1 over the URL and the sorted form parameters, with the same
// auth token and the same public URL Ciphergate uses) and stores nothing: the message stays in
// plain text in memory and is dropped. What "verify and answer" costs without sealing or a commit.
//
// Environment: PORT, TWILIO_AUTH_TOKEN, WEBHOOK_URL (the full public URL Twilio signed; given
// explicitly, as `twilio.webhook()` would otherwise rebuild it from the Host header:
// https://www.twilio.com/docs/usage/webhooks/webhooks-security#validating-signatures-from-twilio).
import express from 'express';
import twilio from 'twilio';

const EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>';

const authToken = process.env.TWILIO_AUTH_TOKEN;
const webhookUrl = process.env.WEBHOOK_URL;
if (!authToken || !webhookUrl) throw new Error('TWILIO_AUTH_TOKEN and WEBHOOK_URL are required');

const app = express();
app.get('/healthz', (_request, response) => {
  response.json({ status: 'ok' });
});
app.post(
  new URL(webhookUrl).pathname,
  // twilio.webhook() reads the parsed form from request.body; Twilio sends flat keys.
  express.urlencoded({ extended: false }),
  // validate is the default, written out because the comparison depends on it: a bad or missing
  // signature gets 403 / 400 here, which the benchmark checks before it measures.
  twilio.webhook({ validate: true, url: webhookUrl }, authToken),
  (request, response) => {
    // "Parses": the fields a handler would read. Nothing is kept.
    const { MessageSid: sid, From: from, Body: body } = request.body as Record<string, string | undefined>;
    if (!sid || !from || body === undefined) {
      response.status(400).type('text/plain').send('missing fields');
      return;
    }
    response.type('text/xml').send(EMPTY_TWIML);
  },
);

const server = app.listen(Number(process.env.PORT), '127.0.0.1');
process.on('SIGTERM', () => {
  server.close(() => process.exit(0));
  // Idle keep-alive sockets of the load generator would otherwise hold close() open.
  server.closeIdleConnections();
});
