import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { startAdminSocket, type AdminSocket } from '../../../src/runtime/admin-socket/server.js';
import { MAX_COMMAND_REQUEST_BYTES, type CommandFrame } from '../../../src/runtime/admin-socket/protocol.js';

/**
 * The admin socket's own rules, with a recording `run` in place of the CLI: private file, only
 * hosted commands run, malformed or oversized requests change nothing, stdin only on demand and
 * only to the command that asked for it.
 */
function post(path: string, socketPath: string, body: string | Buffer): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const outgoing = request({ socketPath, path, method: 'POST' }, (response) => {
      let text = '';
      response.on('data', (chunk: Buffer) => (text += chunk.toString()));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, text }));
    });
    outgoing.on('error', reject);
    outgoing.end(body);
  });
}

const frames = (text: string) => text.trim().split('\n').map((line) => JSON.parse(line) as CommandFrame);

describe('admin socket', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'cg-admin-'));
  const ran: string[][] = [];
  let socket: AdminSocket;

  before(async () => {
    // A crashed server's leftover file is replaced.
    writeFileSync(join(dataDir, 'admin.sock'), 'stale');
    socket = await startAdminSocket({
      dataDir,
      logger: pino({ level: 'silent' }),
      async run(argv, streams) {
        ran.push(argv);
        if (argv[1] === 'echo-stdin') {
          let input = '';
          for await (const chunk of streams.stdin) input += (chunk as Buffer).toString();
          streams.stdout.write(`got ${input}`);
          return 0;
        }
        streams.stdout.write('out\n');
        streams.stderr.write('err\n');
        return 3;
      },
    });
  });
  after(async () => {
    await socket.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('the socket is a socket, mode 0600 (the stale file there was replaced)', () => {
    const stat = statSync(socket.path);
    assert.ok(stat.isSocket());
    assert.equal(stat.mode & 0o777, 0o600);
  });

  test('a hosted command runs; its output and exit code come back as frames, stdin is never asked for unread', async () => {
    const answer = await post('/v1/commands', socket.path, JSON.stringify({ argv: ['jobs', 'list'], cwd: '/', stdinIsTTY: false }));
    assert.equal(answer.status, 200);
    const [first, ...rest] = frames(answer.text);
    assert.ok(first && 'id' in first);
    assert.deepEqual(rest, [{ stdout: 'out\n' }, { stderr: 'err\n' }, { exit: 3 }]);
  });

  test('stdin is asked for when read, and only the command with that id gets it', async () => {
    const socketPath = socket.path;
    const answer = await new Promise<string>((resolve, reject) => {
      const outgoing = request({ socketPath, path: '/v1/commands', method: 'POST' }, (response) => {
        let text = '';
        let sent = false;
        response.on('data', (chunk: Buffer) => {
          text += chunk.toString();
          const lines = text.split('\n').filter(Boolean).map((line) => JSON.parse(line) as CommandFrame);
          const id = lines.find((frame): frame is { id: string } => 'id' in frame)?.id;
          if (id && lines.some((frame) => 'stdin' in frame) && !sent) {
            sent = true;
            void (async () => {
              assert.equal((await post(`/v1/commands/${'0'.repeat(8)}-0000-0000-0000-${'0'.repeat(12)}/stdin`, socketPath, 'intruder')).status, 404);
              await post(`/v1/commands/${id}/stdin`, socketPath, 'tenant.json');
            })();
          }
        });
        response.on('end', () => resolve(text));
      });
      outgoing.on('error', reject);
      outgoing.end(JSON.stringify({ argv: ['tenants', 'echo-stdin'], cwd: '/', stdinIsTTY: false }));
    });
    assert.ok(answer.includes('{"stdout":"got tenant.json"}'), answer);
    assert.ok(answer.includes('{"exit":0}'), answer);
  });

  test('serve, worker, store and unknown commands are refused and never run', async () => {
    const before = ran.length;
    for (const argv of [['serve'], ['worker'], ['store', 'copy', '--to', 'postgres://x'], ['launch'], []]) {
      const answer = await post('/v1/commands', socket.path, JSON.stringify({ argv, cwd: '/', stdinIsTTY: false }));
      assert.equal(answer.status, 200);
      const last = frames(answer.text).at(-1);
      assert.deepEqual(last, { exit: 1 });
      assert.match(answer.text, /stop the server first/);
    }
    assert.equal(ran.length, before);
  });

  test('malformed, oversized and unknown requests are refused with 4xx and run nothing', async () => {
    const before = ran.length;
    assert.equal((await post('/v1/commands', socket.path, 'not json')).status, 400);
    assert.equal((await post('/v1/commands', socket.path, JSON.stringify({ argv: 'users create', cwd: '/', stdinIsTTY: false }))).status, 400);
    assert.equal((await post('/v1/commands', socket.path, JSON.stringify({ argv: [1], cwd: '/', stdinIsTTY: false }))).status, 400);
    const oversized = JSON.stringify({ argv: ['users', 'x'.repeat(MAX_COMMAND_REQUEST_BYTES)], cwd: '/', stdinIsTTY: false });
    assert.equal((await post('/v1/commands', socket.path, oversized)).status, 400);
    assert.equal((await post('/v1/other', socket.path, '{}')).status, 404);
    assert.equal(ran.length, before);
  });
});
