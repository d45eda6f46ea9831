import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import decodeQR from '@paulmillr/qr/decode.js';
import { encode } from 'uqr';
import { QUIET_ZONE_MODULES, otpauthQrSvg } from '../../src/identity/factors/totp/qr-code.js';
import { describeEachBackend } from '../helpers/database.js';
import { openIdentityHarness, type IdentityHarness } from '../helpers/identity.js';

/**
 * TOTP enrollment shows its otpauth URI as a QR code (SVG). The SVG is read back the way a
 * camera would: its drawn squares are turned into pixels and decoded by an independent QR
 * reader (@paulmillr/qr), which must find exactly the URI; the squares are also compared with
 * the module matrix of the encoder.
 */

const URI = 'otpauth://totp/Ciphergate:jonathan.smith%40example.com?issuer=Ciphergate&secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&algorithm=SHA1&digits=6&period=30';

/** The dark modules the SVG draws, as a square grid; throws when the SVG is not the one shape expected. */
function modulesOf(svg: string): boolean[][] {
  const viewBox = /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" viewBox="0 0 (\d+) (\d+)"><rect fill="white" width="\1" height="\2"\/><path fill="black" d="([^"]*)"\/><\/svg>$/.exec(svg);
  assert.ok(viewBox, `unexpected SVG shape: ${svg.slice(0, 200)}`);
  const side = Number(viewBox[1]);
  const squares = [...viewBox[3]!.matchAll(/M(\d+),(\d+)h(\d+)v\3h-\3z/g)];
  assert.ok(squares.length > 0);
  assert.equal(squares.map((square) => square[0]).join(''), viewBox[3], 'the path is squares only');
  const pixel = Number(squares[0]![3]);
  assert.equal(side % pixel, 0);
  const size = side / pixel;
  const grid = Array.from({ length: size }, () => new Array<boolean>(size).fill(false));
  for (const [, x, y, w] of squares) {
    assert.equal(Number(w), pixel);
    grid[Number(y) / pixel]![Number(x) / pixel] = true;
  }
  return grid;
}

/** The grid as an RGBA image, `scale` pixels a module, for a QR reader. */
function imageOf(grid: boolean[][], scale: number) {
  const width = grid.length * scale;
  const data = new Uint8Array(width * width * 4);
  for (let y = 0; y < width; y += 1) {
    for (let x = 0; x < width; x += 1) {
      const value = grid[Math.floor(y / scale)]![Math.floor(x / scale)] ? 0 : 255;
      data.set([value, value, value, 255], (y * width + x) * 4);
    }
  }
  return { width, height: width, data };
}

test('the SVG draws the encoder’s modules, with a white quiet zone of 4 modules', () => {
  const grid = modulesOf(otpauthQrSvg(URI));
  assert.deepEqual(grid, encode(URI, { ecc: 'M', border: QUIET_ZONE_MODULES }).data);
  const edge = [...grid.slice(0, 4).flat(), ...grid.slice(-4).flat(), ...grid.flatMap((row) => [...row.slice(0, 4), ...row.slice(-4)])];
  assert.ok(edge.every((dark) => !dark), 'the quiet zone is white');
});

test('an independent QR reader decodes the SVG to exactly the otpauth URI', () => {
  assert.equal(decodeQR(imageOf(modulesOf(otpauthQrSvg(URI)), 4)), URI);
  const other = URI.replace('JBSWY3DPEHPK3PXP', 'KRSXG5CTMVZXEZLU');
  assert.equal(decodeQR(imageOf(modulesOf(otpauthQrSvg(other)), 4)), other);
});

await describeEachBackend('TOTP enrollment answers a QR code', (backend) => {
  let harness: IdentityHarness;
  before(async () => {
    harness = await openIdentityHarness(backend);
  });
  after(() => harness?.close());

  test('POST /auth/totp/enroll: qrCodeSvg decodes to the otpauthUri of the same answer', async () => {
    const user = await harness.createUser({ role: 'employee', withTotp: false });
    const login = await harness.request({ method: 'POST', url: '/api/v1/auth/login', body: { email: user.email, password: user.password }, remoteAddress: '10.64.0.1' });
    assert.equal(login.json().type, 'second-factor-enrollment-required', login.body);
    const enroll = await harness.request({ method: 'POST', url: '/api/v1/auth/totp/enroll', body: { challengeToken: login.json().challengeToken }, remoteAddress: '10.64.0.1' });
    assert.equal(enroll.statusCode, 200, enroll.body);
    const { otpauthUri, secret, qrCodeSvg } = enroll.json() as { otpauthUri: string; secret: string; qrCodeSvg: string };
    assert.equal(new URL(otpauthUri).searchParams.get('secret'), secret);
    assert.equal(decodeQR(imageOf(modulesOf(qrCodeSvg), 4)), otpauthUri);
    assert.equal(enroll.headers['cache-control'], 'no-store');
  });
});
