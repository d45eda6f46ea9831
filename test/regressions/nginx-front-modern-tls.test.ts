import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { REPO_ROOT } from '../helpers/cli.js';
import { freePort } from '../helpers/ports.js';
import { serviceGate } from '../helpers/services.js';

// The nginx front that docs/operations.md documented offered no TLS 1.3, CBC suites and suites
// without forward secrecy, and named its version in every answer (an outside review's
// testssl.sh run). This starts nginx with the block from the page as written, only the listen
// address, the certificate paths and the upstream port swapped, and asks it with openssl.

const HOST = 'gate.example.com';

function onPath(binary: string): string | undefined {
  const directories = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin'];
  for (const directory of directories) {
    const candidate = join(directory, binary);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not here.
    }
  }
  return undefined;
}

/** The one ```nginx block of docs/operations.md, with what a test machine must change swapped. */
function documentedServerBlock(replacements: { port: number; certificate: string; key: string; upstreamPort: number }): string {
  const page = readFileSync(join(REPO_ROOT, 'docs', 'operations.md'), 'utf8');
  const blocks = [...page.matchAll(/```nginx\n([\s\S]*?)```/g)].map((match) => match[1]!);
  assert.equal(blocks.length, 1, 'docs/operations.md has exactly one nginx block');
  let block = blocks[0]!;
  const swap = (pattern: RegExp, replacement: string) => {
    assert.equal(block.match(new RegExp(pattern.source, 'gm'))?.length, 1, `the block has exactly one ${pattern.source}`);
    block = block.replace(new RegExp(pattern.source, 'm'), replacement);
  };
  swap(/^(\s*)listen 443 ssl;$/, `$1listen 127.0.0.1:${replacements.port} ssl;`);
  swap(/^(\s*)ssl_certificate\s+\S+;$/, `$1ssl_certificate ${replacements.certificate};`);
  swap(/^(\s*)ssl_certificate_key\s+\S+;$/, `$1ssl_certificate_key ${replacements.key};`);
  swap(/proxy_pass http:\/\/127\.0\.0\.1:8080;/, `proxy_pass http://127.0.0.1:${replacements.upstreamPort};`);
  return block;
}

interface Handshake {
  ok: boolean;
  protocol?: string;
  cipher?: string;
  output: string;
}

/** One `openssl s_client` handshake with `flags`; `-brief` prints the protocol and suite it agreed. */
function handshake(openssl: string, port: number, flags: string[]): Handshake {
  const result = spawnSync(openssl, ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', HOST, '-brief', ...flags], { input: '', encoding: 'utf8', timeout: 20_000 });
  const output = `${result.stdout}${result.stderr}`;
  const protocol = /Protocol version: (\S+)/.exec(output)?.[1];
  const cipher = /Ciphersuite: (\S+)/.exec(output)?.[1];
  return { ok: result.status === 0 && protocol !== undefined, ...(protocol ? { protocol } : {}), ...(cipher ? { cipher } : {}), output };
}

function get(port: number, ca: string): Promise<{ status: number; rawHeaders: string[]; body: string }> {
  return new Promise((resolve, reject) => {
    const request = httpsRequest({ host: '127.0.0.1', port, servername: HOST, path: '/healthz', ca, checkServerIdentity: () => undefined }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, rawHeaders: response.rawHeaders, body }));
    });
    request.on('error', reject);
    request.end();
  });
}

function headerValues(rawHeaders: string[], name: string): string[] {
  const values: string[] = [];
  for (let index = 0; index < rawHeaders.length; index += 2) if (rawHeaders[index]!.toLowerCase() === name) values.push(rawHeaders[index + 1]!);
  return values;
}

async function waitForTls(port: number, deadlineMs: number): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const connected = await new Promise<boolean>((resolve) => {
      const socket = tlsConnect({ host: '127.0.0.1', port, servername: HOST, rejectUnauthorized: false }, () => {
        // Closed outright, not ended: `openssl s_server` serves one connection at a time, and a
        // half-closed probe (Node 24 waits for the peer's close_notify) held the control server
        // busy, so the first control handshake timed out.
        socket.destroy();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (connected) return;
    if (Date.now() > deadline) throw new Error(`nginx did not accept TLS on ${port} in time`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const nginx = onPath('nginx');
const openssl = onPath('openssl');
/** What the page says it was checked against; the test names the version it ran. */
const version = nginx ? (/nginx\/(\S+)/.exec(spawnSync(nginx, ['-v'], { encoding: 'utf8' }).stderr)?.[1] ?? 'unknown') : 'absent';
const gate = serviceGate('nginx and openssl', nginx && openssl ? undefined : `${nginx ? 'openssl' : 'nginx'} is not installed (Debian: apt-get install nginx openssl)`);

describe('the documented nginx front: Mozilla intermediate TLS, no version shown', { skip: gate.skip, timeout: 120_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'cg-nginx-'));
  const certificate = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  let port: number;
  let controlPort: number;
  let upstream: Server;
  let server: ChildProcess | undefined;
  let control: ChildProcess | undefined;

  before(async () => {
    // An RSA certificate, as most deployments have: with it a static-RSA suite (no forward
    // secrecy) could be negotiated at all, so refusing it proves something.
    const made = spawnSync(openssl!, ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', certificate, '-days', '1', '-subj', `/CN=${HOST}`], { encoding: 'utf8' });
    assert.equal(made.status, 0, made.stderr);
    upstream = createHttpServer((_request, response) => {
      // What the front must not pass on: the upstream's own Server and HSTS headers.
      response.writeHead(200, { server: 'upstream/9.9', 'strict-transport-security': 'max-age=1', 'content-type': 'text/plain' });
      response.end('ok');
    });
    upstream.listen(0, '127.0.0.1');
    await once(upstream, 'listening');
    port = await freePort();
    const serverBlock = documentedServerBlock({ port, certificate, key, upstreamPort: (upstream.address() as AddressInfo).port });
    const conf = join(dir, 'nginx.conf');
    writeFileSync(
      conf,
      [
        'daemon off;',
        ...(process.getuid?.() === 0 ? ['user root;'] : []),
        'worker_processes 1;',
        `pid ${join(dir, 'nginx.pid')};`,
        `error_log ${join(dir, 'error.log')} warn;`,
        'events { worker_connections 64; }',
        'http {',
        '    access_log off;',
        ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((kind) => `    ${kind}_temp_path ${join(dir, kind)};`),
        serverBlock,
        '}',
      ].join('\n'),
    );
    const checked = spawnSync(nginx!, ['-t', '-p', dir, '-e', join(dir, 'error.log'), '-c', conf], { encoding: 'utf8' });
    assert.equal(checked.status, 0, `nginx -t: ${checked.stderr}`);
    server = spawn(nginx!, ['-p', dir, '-e', join(dir, 'error.log'), '-c', conf], { stdio: 'ignore' });
    await waitForTls(port, 20_000);

    // The control: a server that takes anything, so a refusal below is nginx's, not the client's.
    controlPort = await freePort();
    control = spawn(openssl!, ['s_server', '-accept', `127.0.0.1:${controlPort}`, '-cert', certificate, '-key', key, '-cipher', 'ALL:@SECLEVEL=0', '-www', '-quiet'], { stdio: 'ignore' });
    await waitForTls(controlPort, 20_000);
  });

  after(async () => {
    for (const child of [server, control]) {
      if (child && child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await once(child, 'exit');
      }
    }
    upstream?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('TLS 1.3 and TLS 1.2 with an ECDHE AEAD suite connect', () => {
    const tls13 = handshake(openssl!, port, ['-tls1_3']);
    assert.ok(tls13.ok, tls13.output);
    assert.equal(tls13.protocol, 'TLSv1.3');
    for (const cipher of ['ECDHE-RSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES256-GCM-SHA384', 'ECDHE-RSA-CHACHA20-POLY1305']) {
      const tls12 = handshake(openssl!, port, ['-tls1_2', '-cipher', cipher]);
      assert.ok(tls12.ok, tls12.output);
      assert.deepEqual([tls12.protocol, tls12.cipher], ['TLSv1.2', cipher]);
    }
  });

  test('TLS 1.1 and 1.0, CBC suites, suites without forward secrecy and DHE are refused (a permissive server takes each)', () => {
    const refused: Array<[label: string, flags: string[]]> = [
      ['TLS 1.1', ['-tls1_1', '-cipher', 'ALL:@SECLEVEL=0']],
      ['TLS 1.0', ['-tls1', '-cipher', 'ALL:@SECLEVEL=0']],
      ['CBC with SHA-1', ['-tls1_2', '-cipher', 'ECDHE-RSA-AES128-SHA:@SECLEVEL=0']],
      ['CBC with SHA-256', ['-tls1_2', '-cipher', 'ECDHE-RSA-AES256-SHA384:ECDHE-RSA-AES128-SHA256:@SECLEVEL=0']],
      ['static RSA key exchange (no forward secrecy)', ['-tls1_2', '-cipher', 'AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-SHA:@SECLEVEL=0']],
      ['DHE', ['-tls1_2', '-cipher', 'DHE-RSA-AES128-GCM-SHA256:DHE-RSA-CHACHA20-POLY1305:@SECLEVEL=0']],
    ];
    for (const [label, flags] of refused) {
      const permissive = handshake(openssl!, controlPort, flags);
      assert.ok(permissive.ok, `control: ${label} should connect to a permissive server: ${permissive.output}`);
      const answer = handshake(openssl!, port, flags);
      assert.ok(!answer.ok, `${label} was accepted: ${answer.protocol} ${answer.cipher}`);
    }
  });

  test('answers carry Server: nginx without a version, and one HSTS header of two years', async () => {
    const response = await get(port, readFileSync(certificate, 'utf8'));
    assert.equal(response.status, 200, response.body);
    assert.deepEqual(headerValues(response.rawHeaders, 'server'), ['nginx']);
    assert.deepEqual(headerValues(response.rawHeaders, 'strict-transport-security'), ['max-age=63072000']);
  });

  test(`nginx's own error page names no version either (nginx ${version})`, async () => {
    upstream.close();
    await once(upstream, 'close');
    const response = await get(port, readFileSync(certificate, 'utf8'));
    assert.equal(response.status, 502);
    assert.deepEqual(headerValues(response.rawHeaders, 'server'), ['nginx']);
    assert.doesNotMatch(response.body, /nginx\/\d/);
    assert.deepEqual(headerValues(response.rawHeaders, 'strict-transport-security'), ['max-age=63072000']);
  });
});
