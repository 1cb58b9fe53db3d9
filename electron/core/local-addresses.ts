/**
 * This host's addresses and the interface each belongs to, from a cached read of the interface
 * table (a netlink dump, 0.1-0.6 ms; several ms after a sleep on a busy host). Stats name the subflows of many sockets per tick and the
 * client-gone check looks up many clients at once; addresses change far less often than either.
 * A read serves lookups that find their address for HIT_TTL_MS; a lookup that misses reads again,
 * at most once per MISS_TTL_MS, so a new address is known within a second. What can be late (up to
 * HIT_TTL_MS) is an address that moved to another interface or went away.
 */
import net from 'node:net';
import os from 'node:os';

const HIT_TTL_MS = 30_000;
const MISS_TTL_MS = 1000;
let cache: { at: number; map: Map<string, string> } | null = null;

function table(now: number, ttl: number): Map<string, string> {
  if (cache && now >= cache.at && now - cache.at < ttl) return cache.map;
  const map = new Map<string, string>();
  for (const [name, addrs] of Object.entries(os.networkInterfaces())) {
    for (const a of addrs ?? []) map.set(a.address, name);
  }
  cache = { at: now, map };
  return map;
}

/** The interface a local address (as Node prints it) belongs to, or undefined when it is not this host's. */
export function interfaceOf(address: string): string | undefined {
  const now = Date.now();
  return table(now, HIT_TTL_MS).get(address) ?? table(now, MISS_TTL_MS).get(address);
}

/** `::ffff:1.2.3.4` -> `1.2.3.4`; anything else unchanged. */
export const unmapIPv4 = (address: string): string => (address.startsWith('::ffff:') && net.isIPv4(address.slice(7)) ? address.slice(7) : address);

/** Whether `address` (IPv4-mapped or not) is one of this host's own, loopback included. */
export function isLocalAddress(address: string): boolean {
  const a = unmapIPv4(address);
  return a.startsWith('127.') || a === '::1' || interfaceOf(a) !== undefined;
}
