import { existsSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { createInterface } from 'node:readline';
import { loadConfig } from '../config/load.js';
import { adminSocketPath, isHostedCommand, type CommandFrame, type CommandRequest } from '../runtime/admin-socket/protocol.js';
import type { CliIo } from './runtime.js';

/**
 * Runs `argv` inside the server that holds the embedded database, when one is running (see
 * runtime/admin-socket/protocol.ts), and answers its exit code; `undefined` means "run it
 * here": PostgreSQL (every process opens it), no server, a command a server does not run,
 * or settings that do not load (the local run reports them in its one line).
 */
export async function runInRunningServer(argv: string[], io: CliIo): Promise<number | undefined> {
  if (!isHostedCommand(argv)) return undefined;
  let dataDir: string;
  try {
    const config = loadConfig(io.env, io.cwd);
    if (config.database.url) return undefined;
    dataDir = config.dataDir;
  } catch {
    return undefined;
  }
  const socketPath = adminSocketPath(dataDir);
  if (!existsSync(socketPath)) return undefined;
  const command: CommandRequest = { argv, cwd: io.cwd, stdinIsTTY: Boolean((io.stdin as NodeJS.ReadStream).isTTY) };
  let response: IncomingMessage;
  try {
    response = await post(socketPath, '/v1/commands', JSON.stringify(command));
  } catch (error) {
    // A socket file with nobody listening: a server that crashed. The local run then opens the
    // database (or names the process that holds it).
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ECONNREFUSED' || code === 'ENOENT') return undefined;
    throw error;
  }
  if (response.statusCode !== 200) {
    response.resume();
    throw new Error(`the running server refused the command (admin socket answered ${response.statusCode})`);
  }
  let id: string | undefined;
  let exit: number | undefined;
  for await (const line of createInterface({ input: response, crlfDelay: Infinity })) {
    if (line === '') continue;
    const frame = JSON.parse(line) as CommandFrame;
    if ('id' in frame) id = frame.id;
    else if ('stdout' in frame) io.stdout.write(frame.stdout);
    else if ('stderr' in frame) io.stderr.write(frame.stderr);
    else if ('stdin' in frame && id !== undefined) void sendStdin(socketPath, id, io.stdin);
    else if ('exit' in frame) exit = frame.exit;
  }
  // The server stopped in the middle (or crashed): the command may or may not have finished.
  if (exit === undefined) throw new Error('the running server ended the command without an answer; see its log, then check and run it again');
  return exit;
}

function post(socketPath: string, path: string, body: string | NodeJS.ReadableStream): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const request = httpRequest({ socketPath, path, method: 'POST', headers: { 'content-type': typeof body === 'string' ? 'application/json' : 'application/octet-stream' } }, resolve);
    request.once('error', reject);
    if (typeof body === 'string') request.end(body);
    else body.pipe(request);
  });
}

async function sendStdin(socketPath: string, id: string, stdin: NodeJS.ReadableStream): Promise<void> {
  const response = await post(socketPath, `/v1/commands/${id}/stdin`, stdin).catch(() => undefined);
  response?.resume();
}
