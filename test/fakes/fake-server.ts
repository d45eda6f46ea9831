import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * The shared part of every provider fake: an HTTP server on a free local port that records each
 * request (method, path, query, headers, raw body) and can fail on demand the way real
 * providers fail. Each fake (twilio.ts, openai.ts, airtable.ts, podium.ts) supplies only the
 * provider's own routes and wire format.
 */

/** The failure modes a provider shows in production. */
export type Fault =
  | { kind: 'status'; status: number; body?: unknown }
  | { kind: 'rate-limit'; retryAfterSeconds: number; body?: unknown }
  | { kind: 'slow'; delayMs: number }
  /**
   * The connection closes with no answer. With `afterHandling` the fake first acts on the request
   * (a message is created) and then drops: the case where the caller cannot know it succeeded.
   */
  | { kind: 'drop'; afterHandling?: boolean };

export interface RecordedRequest {
  method: string;
  /** Path without the query string. */
  path: string;
  query: URLSearchParams;
  headers: IncomingMessage['headers'];
  rawBody: Buffer;
}

export interface FakeResponse {
  status: number;
  headers?: Record<string, string>;
  /** An object is sent as JSON; a string or Buffer as is. */
  body?: unknown;
}

export type FakeHandler = (request: RecordedRequest) => FakeResponse | Promise<FakeResponse>;

export interface FakeServer {
  readonly url: string;
  /** Every request that reached the fake, in arrival order (including those that got a fault). */
  readonly requests: RecordedRequest[];
  /** The next `times` requests (matching `match`, when given) get `fault` instead of an answer. */
  failNext(fault: Fault, options?: { times?: number; match?: (request: RecordedRequest) => boolean }): void;
  /** Problems found in requests (spec violations, bad auth); tests assert this stays empty. */
  readonly violations: string[];
  close(): Promise<void>;
}

interface PendingFault {
  fault: Fault;
  remaining: number;
  match: ((request: RecordedRequest) => boolean) | undefined;
}

export async function startFakeServer(handler: FakeHandler, options: { check?: (request: RecordedRequest) => string[] } = {}): Promise<FakeServer> {
  const requests: RecordedRequest[] = [];
  const violations: string[] = [];
  const faults: PendingFault[] = [];
  const server = createServer((incoming, outgoing) => {
    const chunks: Buffer[] = [];
    incoming.on('data', (chunk: Buffer) => chunks.push(chunk));
    incoming.on('end', () => {
      const url = new URL(incoming.url ?? '/', 'http://fake.invalid');
      const request: RecordedRequest = {
        method: incoming.method ?? 'GET',
        path: url.pathname,
        query: url.searchParams,
        headers: incoming.headers,
        rawBody: Buffer.concat(chunks),
      };
      requests.push(request);
      if (options.check) violations.push(...options.check(request));
      const pending = faults.find((candidate) => candidate.remaining > 0 && (!candidate.match || candidate.match(request)));
      if (pending) {
        pending.remaining -= 1;
        void applyFault(pending.fault, outgoing, () => answer(handler, request, outgoing));
        return;
      }
      void answer(handler, request, outgoing);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    violations,
    failNext(fault, failOptions = {}) {
      faults.push({ fault, remaining: failOptions.times ?? 1, match: failOptions.match });
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function answer(handler: FakeHandler, request: RecordedRequest, outgoing: ServerResponse): Promise<void> {
  try {
    send(outgoing, await handler(request));
  } catch (error) {
    send(outgoing, { status: 500, body: { message: `fake failed: ${(error as Error).message}` } });
  }
}

async function applyFault(fault: Fault, outgoing: ServerResponse, proceed: () => Promise<void>): Promise<void> {
  switch (fault.kind) {
    case 'status':
      send(outgoing, { status: fault.status, body: fault.body ?? { message: `injected ${fault.status}` } });
      return;
    case 'rate-limit':
      send(outgoing, { status: 429, headers: { 'retry-after': String(fault.retryAfterSeconds) }, body: fault.body ?? { message: 'Too Many Requests' } });
      return;
    case 'slow':
      await new Promise((resolve) => setTimeout(resolve, fault.delayMs));
      if (!outgoing.destroyed) await proceed();
      return;
    case 'drop':
      if (fault.afterHandling) await proceedSilently(proceed, outgoing);
      outgoing.socket?.destroy();
      return;
  }
}

/** Runs the handler for its effect on the fake's state, discarding its answer. */
async function proceedSilently(proceed: () => Promise<void>, outgoing: ServerResponse): Promise<void> {
  const realEnd = outgoing.end.bind(outgoing);
  const realWriteHead = outgoing.writeHead.bind(outgoing);
  outgoing.writeHead = (() => outgoing) as unknown as typeof outgoing.writeHead;
  outgoing.end = (() => outgoing) as unknown as typeof outgoing.end;
  try {
    await proceed();
  } finally {
    outgoing.end = realEnd;
    outgoing.writeHead = realWriteHead;
  }
}

function send(outgoing: ServerResponse, response: FakeResponse): void {
  if (outgoing.destroyed) return;
  const headers = { ...(response.headers ?? {}) };
  let payload: string | Buffer = '';
  if (Buffer.isBuffer(response.body) || typeof response.body === 'string') payload = response.body;
  else if (response.body !== undefined) {
    payload = JSON.stringify(response.body);
    headers['content-type'] ??= 'application/json';
  }
  outgoing.writeHead(response.status, headers);
  outgoing.end(payload);
}
