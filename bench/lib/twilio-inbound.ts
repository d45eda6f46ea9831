// Signed Twilio inbound-SMS deliveries for bench/inbound-sms.bench.ts, and the autocannon run that
// sends them. Each delivery has its own MessageSid (Ciphergate de-duplicates on it, so a repeated
// sid would measure the duplicate path instead of an ingest) and a valid X-Twilio-Signature.
import { randomBytes } from 'node:crypto';
import { Agent, request as httpRequest } from 'node:http';
import { performance } from 'node:perf_hooks';
import autocannon from 'autocannon';
import twilio from 'twilio';
import { normaliseE164 } from '../../src/domain/normalise.js';

export interface TwilioAccount {
  accountSid: string;
  authToken: string;
  /** The tenant's number, the `To` of every inbound message. */
  fromNumber: string;
}

export interface SignedDelivery {
  sid: string;
  /** application/x-www-form-urlencoded, as Twilio posts it. */
  body: string;
  signature: string;
}

/**
 * `count` distinct valid US numbers (+1 415 2xx-xxxx …). Checked with the same normaliser the
 * gateway uses, so no delivery is acknowledged-but-ignored as an unanswerable sender.
 */
export function phonePool(count: number): string[] {
  const phones: string[] = [];
  for (let index = 0; index < count; index += 1) {
    const phone = `+1415${200 + (index % 800)}${String(1000 + Math.floor(index / 800)).padStart(4, '0')}`;
    if (normaliseE164(phone) !== phone) throw new Error(`phone pool: ${phone} does not normalise to itself`);
    phones.push(phone);
  }
  return phones;
}

/** Ordinary customer texts (no carrier keyword such as STOP, so each one is answerable by the AI). */
const BODIES = [
  'Hi, can I move my appointment on Thursday to the afternoon?',
  'Do you have any openings next week for a cleaning? Mornings are best for me.',
  'Thanks! See you then.',
  'Is the office open on Saturday? I need to pick up my prescription, and my card ends in 4242.',
  'Running about 10 minutes late, sorry. Please let the doctor know.',
  'What is the address again? My GPS keeps sending me to the old building on Main Street.',
];

/**
 * Makes signed deliveries in the shape of Twilio's inbound-message webhook
 * (https://www.twilio.com/docs/messaging/guides/webhook-request): the same parameter set a real
 * delivery carries, a fresh MessageSid each, senders drawn round-robin from `phones`.
 *
 * Signing costs CPU (HMAC-SHA1 plus building the form), and the load generator shares the
 * machine's cores with the server measured. `prepare(n)` does that work before a measurement,
 * so that during it the generator only hands out ready strings; `next()` signs inline only when
 * the prepared stock runs out, and `signedInline` says how often that happened.
 */
export class SignedDeliveries {
  private readonly sidPrefix = randomBytes(8).toString('hex');
  private counter = 0;
  /** Prepared deliveries; each slot is emptied when taken, so a long run does not keep them all alive. */
  private stock: Array<SignedDelivery | undefined> = [];
  private taken = 0;
  signedInline = 0;

  constructor(
    private readonly account: TwilioAccount,
    /** The full public URL Twilio was given for the webhook: what the signature covers. */
    private readonly webhookUrl: string,
    private readonly phones: string[],
  ) {}

  prepare(count: number): void {
    this.stock = this.stock.slice(this.taken);
    this.taken = 0;
    while (this.stock.length < count) this.stock.push(this.make());
  }

  next(): SignedDelivery {
    const delivery = this.stock[this.taken];
    if (delivery) {
      this.stock[this.taken] = undefined;
      this.taken += 1;
      return delivery;
    }
    this.signedInline += 1;
    return this.make();
  }

  /** A delivery whose signature was made with another token: both servers must refuse it. */
  forged(): SignedDelivery {
    const delivery = this.make();
    return { ...delivery, signature: twilio.getExpectedTwilioSignature('not-the-auth-token-0123456789ab', this.webhookUrl, Object.fromEntries(new URLSearchParams(delivery.body))) };
  }

  private make(): SignedDelivery {
    const sequence = this.counter;
    this.counter += 1;
    const sid = `SM${this.sidPrefix}${sequence.toString(16).padStart(16, '0')}`;
    const from = this.phones[sequence % this.phones.length]!;
    const params: Record<string, string> = {
      ToCountry: 'US',
      ToState: 'CA',
      SmsMessageSid: sid,
      NumMedia: '0',
      ToCity: 'SAN FRANCISCO',
      FromZip: '94105',
      SmsSid: sid,
      FromState: 'CA',
      SmsStatus: 'received',
      FromCity: 'SAN FRANCISCO',
      Body: `${BODIES[sequence % BODIES.length]!} (${sequence})`,
      FromCountry: 'US',
      To: this.account.fromNumber,
      ToZip: '94105',
      NumSegments: '1',
      MessageSid: sid,
      AccountSid: this.account.accountSid,
      From: from,
      ApiVersion: '2010-04-01',
    };
    return { sid, body: new URLSearchParams(params).toString(), signature: twilio.getExpectedTwilioSignature(this.account.authToken, this.webhookUrl, params) };
  }
}

export interface SmsLoadResult {
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** Answers with a 2xx status; `acknowledged` holds their MessageSids. */
  ok: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  /** Requests written but never answered (in flight when the run ended, or timed out). */
  unanswered: number;
  acknowledged: string[];
}

/**
 * Posts deliveries from `deliveries` to `url` over `connections` keep-alive connections for
 * `durationSeconds`. Each connection has one request in flight at a time, so the sid of an answer
 * is the sid its connection last sent: that is how every 2xx is tied to its MessageSid, for the
 * durability check afterwards.
 */
export async function loadSignedSms(options: { url: string; deliveries: SignedDeliveries; connections: number; durationSeconds: number }): Promise<SmsLoadResult> {
  const acknowledged: string[] = [];
  const target = new URL(options.url);
  const result = await autocannon({
    url: target.origin,
    connections: options.connections,
    pipelining: 1,
    duration: options.durationSeconds,
    requests: [
      {
        method: 'POST',
        path: target.pathname,
        setupRequest: (request, context) => {
          const delivery = options.deliveries.next();
          (context as { sid?: string }).sid = delivery.sid;
          return {
            ...request,
            headers: {
              ...request.headers,
              'content-type': 'application/x-www-form-urlencoded',
              'user-agent': 'TwilioProxy/1.1',
              'x-twilio-signature': delivery.signature,
            },
            body: delivery.body,
          };
        },
        onResponse: (status, _body, context) => {
          const sid = (context as { sid?: string }).sid;
          if (status >= 200 && status < 300 && sid) acknowledged.push(sid);
        },
      },
    ],
  });
  const answered = result['2xx'] + result.non2xx;
  return {
    requestsPerSecond: result.requests.average,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    ok: result['2xx'],
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    unanswered: Math.max(0, result.requests.sent - answered),
    acknowledged,
  };
}

/**
 * Deliveries at a fixed rate, each sent at its scheduled time whether or not earlier ones were
 * answered (an open loop, as texts arrive), over at most `connections` keep-alive sockets.
 * autocannon's own rate limit sends each connection's quota for a second in one burst at the
 * start of the second, which measures the burst's queue, not the service time.
 * Latency is from the scheduled time to the answer, so a server that falls behind is charged
 * for the wait.
 */
export async function pacedSignedSms(options: { url: string; deliveries: SignedDeliveries; connections: number; durationSeconds: number; rate: number }): Promise<SmsLoadResult> {
  const target = new URL(options.url);
  const agent = new Agent({ keepAlive: true, maxSockets: options.connections });
  const latencies: number[] = [];
  const acknowledged: string[] = [];
  let non2xx = 0;
  let errors = 0;
  const total = Math.round(options.rate * options.durationSeconds);
  const startedAt = performance.now();
  const pending: Array<Promise<void>> = [];
  for (let index = 0; index < total; index += 1) {
    const scheduledAt = startedAt + (index * 1000) / options.rate;
    const wait = scheduledAt - performance.now();
    if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
    const delivery = options.deliveries.next();
    pending.push(
      new Promise<void>((resolve) => {
        const request = httpRequest(
          {
            agent,
            host: target.hostname,
            port: target.port,
            path: target.pathname,
            method: 'POST',
            headers: { 'content-type': 'application/x-www-form-urlencoded', 'user-agent': 'TwilioProxy/1.1', 'x-twilio-signature': delivery.signature, 'content-length': Buffer.byteLength(delivery.body) },
          },
          (response) => {
            response.resume();
            response.on('end', () => {
              latencies.push(performance.now() - scheduledAt);
              const status = response.statusCode ?? 0;
              if (status >= 200 && status < 300) acknowledged.push(delivery.sid);
              else non2xx += 1;
              resolve();
            });
          },
        );
        request.on('error', () => {
          errors += 1;
          resolve();
        });
        request.end(delivery.body);
      }),
    );
  }
  await Promise.all(pending);
  const elapsedSeconds = (performance.now() - startedAt) / 1000;
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const percentile = (p: number) => (latencies.length ? Math.round(latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))]! * 10) / 10 : Number.NaN);
  return {
    requestsPerSecond: (acknowledged.length + non2xx) / elapsedSeconds,
    p50Ms: percentile(50),
    p99Ms: percentile(99),
    ok: acknowledged.length,
    non2xx,
    errors,
    timeouts: 0,
    unanswered: 0,
    acknowledged,
  };
}

/** One request outside the load, to check what a server answers (a forged signature, a good one). */
export async function postDelivery(url: string, delivery: SignedDelivery): Promise<number> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': delivery.signature },
    body: delivery.body,
  });
  await response.arrayBuffer();
  return response.status;
}
