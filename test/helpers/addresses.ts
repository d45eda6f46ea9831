/**
 * A new IPv4 address in `network` (its first two octets, e.g. `10.20`) at each call. Tests that
 * sign in from addresses of their own keep the per-address sign-in budget and the
 * account+address lock of one test from reaching another that shares the harness.
 */
export function freshAddresses(network: string): () => string {
  let hosts = 0;
  return () => {
    hosts += 1;
    return `${network}.${hosts >> 8}.${hosts & 255}`;
  };
}
