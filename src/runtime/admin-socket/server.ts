import { randomUUID } from 'node:crypto';
import { chmodSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { Readable, Writable } from 'node:stream';
import type { Logger } from '../../log/logger.js';
import { adminSocketPath, isHostedCommand, MAX_COMMAND_REQUEST_BYTES, type CommandFrame, type CommandRequest } from './protocol.js';

/** What a hosted command gets instead of the process's own streams. */
export interface HostedStreams {
  cwd: string;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  stdin: NodeJS.ReadableStream;
}

/** Runs one command line and answers its exit code; never throws for a command's failure. */
export type RunHostedCommand = (argv: string[], streams: HostedStreams) => Promise<number>;

export interface AdminSocket {
  readonly path: string;
  /** Stops accepting commands and waits for the ones running to finish. */
  close(): Promise<void>;
}

/**
 * Listens on `<dataDir>/admin.sock` (see protocol.ts). The caller holds the data directory's
 * lock, so a socket file found there is a crashed server's and is replaced.
 */
export async function startAdminSocket(options: { dataDir: string; logger: Logger; run: RunHostedCommand }): Promise<AdminSocket> {
  const path = adminSocketPath(options.dataDir);
  rmSync(path, { force: true });
  const pendingStdin = new Map<string, (body: IncomingMessage, response: ServerResponse) => void>();
  const server = createServer((request, response) => {
    void handle(request, response).catch((error: unknown) => {
      options.logger.error({ err: error }, 'admin socket request failed');
      if (!response.headersSent) answerPlain(response, 500, 'internal error');
      else response.destroy();
    });
  });

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = request.url ?? '';
    const stdinMatch = /^\/v1\/commands\/([0-9a-f-]{36})\/stdin$/.exec(url);
    if (request.method === 'POST' && stdinMatch) {
      const deliver = pendingStdin.get(stdinMatch[1]!);
      if (!deliver) return answerPlain(response, 404, 'no command waits for stdin under this id');
      pendingStdin.delete(stdinMatch[1]!);
      return deliver(request, response);
    }
    if (request.method !== 'POST' || url !== '/v1/commands') return answerPlain(response, 404, 'unknown admin request');
    const command = parseCommandRequest(await readBody(request, MAX_COMMAND_REQUEST_BYTES));
    if (!command) return answerPlain(response, 400, 'expected {argv: string[], cwd: string, stdinIsTTY: boolean}');
    const id = randomUUID();
    response.writeHead(200, { 'content-type': 'application/x-ndjson' });
    const send = (frame: CommandFrame) => {
      if (!response.destroyed) response.write(`${JSON.stringify(frame)}\n`);
    };
    send({ id });
    if (!isHostedCommand(command.argv)) {
      // The client only forwards hosted commands; anything else is refused, never run.
      send({ stderr: `ciphergate: ${command.argv[0] ?? 'this'}: not run by a running server; stop the server first\n` });
      send({ exit: 1 });
      response.end();
      return;
    }
    const stdin = stdinOnDemand(command.stdinIsTTY, () => {
      send({ stdin: 'wanted' });
      return new Promise((resolve) => pendingStdin.set(id, (body, stdinResponse) => resolve({ body, stdinResponse })));
    });
    const started = Date.now();
    let exitCode = 1;
    try {
      exitCode = await options.run(command.argv, { cwd: command.cwd, stdout: frameWriter('stdout', send), stderr: frameWriter('stderr', send), stdin });
    } finally {
      pendingStdin.delete(id);
      // The command line may name e-mail addresses or slugs: the log keeps the command only.
      options.logger.info({ command: command.argv[0], exitCode, ms: Date.now() - started }, 'ran an operator command for the CLI');
      send({ exit: exitCode });
      response.end();
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
  // Created under the process umask (0077, see cli/main.ts) already; said again for anyone who
  // starts the server another way.
  chmodSync(path, 0o600);
  return {
    path,
    async close() {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(path, { force: true });
    },
  };
}

function answerPlain(response: ServerResponse, status: number, text: string): void {
  response.writeHead(status, { 'content-type': 'text/plain' });
  response.end(`${text}\n`);
}

async function readBody(request: IncomingMessage, limit: number): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > limit) return undefined;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function parseCommandRequest(text: string | undefined): CommandRequest | undefined {
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const { argv, cwd, stdinIsTTY } = value as Record<string, unknown>;
  if (!Array.isArray(argv) || !argv.every((arg) => typeof arg === 'string')) return undefined;
  if (typeof cwd !== 'string' || typeof stdinIsTTY !== 'boolean') return undefined;
  return { argv: argv as string[], cwd, stdinIsTTY };
}

function frameWriter(stream: 'stdout' | 'stderr', send: (frame: CommandFrame) => void): Writable {
  return new Writable({
    write(chunk: Buffer | string, _encoding, callback) {
      send(stream === 'stdout' ? { stdout: chunk.toString() } : { stderr: chunk.toString() });
      callback();
    },
  });
}

/**
 * The CLI's stdin, asked for on the first read. The request body is paused whenever the
 * command has not caught up, so a large import streams instead of piling up in memory.
 */
function stdinOnDemand(isTTY: boolean, request: () => Promise<{ body: IncomingMessage; stdinResponse: ServerResponse }>): Readable {
  let body: IncomingMessage | undefined;
  let asked = false;
  const stdin = new Readable({
    read() {
      if (body) {
        body.resume();
        return;
      }
      if (asked) return;
      asked = true;
      void request().then(({ body: incoming, stdinResponse }) => {
        body = incoming;
        incoming.on('data', (chunk: Buffer) => {
          if (!stdin.push(chunk)) incoming.pause();
        });
        incoming.on('end', () => {
          stdin.push(null);
          stdinResponse.writeHead(204).end();
        });
        incoming.on('error', (error) => stdin.destroy(error));
      });
    },
  });
  // readStdin and readPassword refuse a terminal before reading; the CLI's answer is theirs.
  (stdin as Readable & { isTTY?: boolean }).isTTY = isTTY;
  return stdin;
}
