/**
 * Destinations that answered an MPTCP dial with plain TCP, so that the dialer hands the connection
 * a real TCP socket instead of an MPTCP socket that fell back.
 *
 * Why: a fallen-back MPTCP socket still receives through the MPTCP layer, and on kernel 6.18 that
 * layer drops in-order data as "beyond its window" (MPTcpExtNoDSSInWindow) on such sockets. With no
 * MPTCP-level retransmission on a fallback, the download then stalls for good or reads as ended
 * early. It happens without Braid too (`mptcpize run curl` to a plain-TCP server, README). A plain
 * TCP socket gives up nothing: a destination that does not speak MPTCP gets one path either way.
 *
 * The memory is per address and port (MPTCP support is the listener's) and per path the first
 * subflow left by, interface and local address: a middlebox on one network strips MPTCP for every
 * destination behind it, and should not cost other paths, or the next network the interface joins,
 * their MPTCP. Entries expire like the kernel's own MPTCP blackhole memory
 * (net.mptcp.blackhole_timeout, 3600 s by default), so that a server that learns MPTCP is tried
 * again, and the memory is bounded: the entry remembered longest ago goes first.
 */

export interface FallbackMemoryOptions {
  ttlMs?: number;
  max?: number;
  now?: () => number;
}

export const FALLBACK_TTL_MS = 3600_000;
export const FALLBACK_MAX = 4096;

export class FallbackMemory {
  private readonly until = new Map<string, number>();
  private readonly ttlMs: number;
  private readonly max: number;
  private readonly now: () => number;

  constructor(opts: FallbackMemoryOptions = {}) {
    this.ttlMs = opts.ttlMs ?? FALLBACK_TTL_MS;
    this.max = Math.max(1, opts.max ?? FALLBACK_MAX);
    this.now = opts.now ?? Date.now;
  }

  /** True while `address:port` is known not to speak MPTCP over `path` (interface and local address; null: the routing table's choice). */
  has(address: string, port: number, path: string | null = null): boolean {
    const key = keyOf(address, port, path);
    const until = this.until.get(key);
    if (until === undefined) return false;
    if (until > this.now()) return true;
    this.until.delete(key);
    return false;
  }

  /** `address:port` answered an MPTCP SYN without MP_CAPABLE (or the kernel gave up on MPTCP for it). */
  remember(address: string, port: number, path: string | null = null): void {
    const key = keyOf(address, port, path);
    this.until.delete(key); // re-inserted last: the Map's order is the order of expiry
    this.until.set(key, this.now() + this.ttlMs);
    while (this.until.size > this.max) this.until.delete(this.until.keys().next().value as string);
  }

  get size(): number {
    return this.until.size;
  }
}

function keyOf(address: string, port: number, path: string | null): string {
  return `${path ?? ''}|${address.toLowerCase()}|${port}`;
}
