import { BlockList, isIP } from 'node:net';

/**
 * Whether a caller's address is in a provider's allowlist from tenant.json. An empty list
 * means no restriction (CONTRACT.md). The address is the one Fastify settled on through
 * CIPHERGATE_TRUST_PROXY (@fastify/proxy-addr semantics): X-Forwarded-For is believed only
 * from the listed proxies, so a caller cannot name its own address.
 */
export function isAddressAllowed(list: readonly string[], address: string): boolean {
  if (list.length === 0) return true;
  return compiled(list).check(...familyOf(address));
}

const cache = new WeakMap<readonly string[], BlockList>();

function compiled(list: readonly string[]): BlockList {
  let blockList = cache.get(list);
  if (!blockList) {
    blockList = new BlockList();
    for (const entry of list) {
      const [address, prefix] = entry.split('/') as [string, string | undefined];
      const type = isIP(address) === 6 ? 'ipv6' : 'ipv4';
      if (prefix === undefined) blockList.addAddress(address, type);
      else blockList.addSubnet(address, Number(prefix), type);
    }
    cache.set(list, blockList);
  }
  return blockList;
}

/** An IPv4 peer on a dual-stack socket shows as ::ffff:a.b.c.d; it is matched as the IPv4 address it is. */
function familyOf(address: string): [string, 'ipv4' | 'ipv6'] {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return [mapped[1]!, 'ipv4'];
  return [address, isIP(address) === 6 ? 'ipv6' : 'ipv4'];
}
