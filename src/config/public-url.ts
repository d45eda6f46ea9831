import { isIP } from 'node:net';

/**
 * Whether a public URL (CIPHERGATE_PUBLIC_URL, or the one derived from host and port) points at
 * this machine only: `localhost`, `*.localhost`, 127.0.0.0/8, ::1 or 0.0.0.0. Providers cannot
 * call such a URL, so the webhook URLs `tenants put` prints from it would never receive anything.
 */
export function isLoopbackUrl(url: string): boolean {
  let hostname: string;
  try {
    hostname = new URL(url).hostname.toLowerCase();
  } catch {
    return false;
  }
  const bare = hostname.startsWith('[') ? hostname.slice(1, -1) : hostname;
  if (bare === 'localhost' || bare.endsWith('.localhost')) return true;
  if (isIP(bare) === 4) return bare.startsWith('127.') || bare === '0.0.0.0';
  if (isIP(bare) === 6) return bare === '::1' || bare === '::' || bare.startsWith('::ffff:127.');
  return false;
}
