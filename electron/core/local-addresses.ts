/**
 * This host's addresses and the interface each belongs to, from one cached read of the interface
 * table (a netlink dump). Stats sample many sockets per tick and the client-gone check looks up
 * many clients at once; addresses change far less often than either, so a read serves a second.
 */
import net from 'node:net';
import os from 'node:os';

const TTL_MS = 1000;
let cache: { at: number; map: Map<string, string> } | null = null;

/** Local address (as Node prints it) -> interface name. */
export function interfaceNames(): Map<string, string> {
  const now = Date.now();
  if (cache && now - cache.at < TTL_MS) return cache.map;
  const map = new Map<string, string>();
  for (const [name, addrs] of Object.entries(os.networkInterfaces())) {
    for (const a of addrs ?? []) map.set(a.address, name);
  }
  cache = { at: now, map };
  return map;
}

/** `::ffff:1.2.3.4` -> `1.2.3.4`; anything else unchanged. */
export const unmapIPv4 = (address: string): string => (address.startsWith('::ffff:') && net.isIPv4(address.slice(7)) ? address.slice(7) : address);

/** Whether `address` (IPv4-mapped or not) is one of this host's own, loopback included. */
export function isLocalAddress(address: string): boolean {
  const a = unmapIPv4(address);
  return a.startsWith('127.') || a === '::1' || interfaceNames().has(a);
}
