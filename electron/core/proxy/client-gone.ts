/**
 * Has a client that sent FIN closed its socket, or only shut down its sending side?
 *
 * TCP does not say: both arrive as the same FIN. A proxy must keep a half-closed client (request,
 * FIN, then wait for the answer is legal, and tested), so Braid keeps the connection after a FIN.
 * But a client that gave up (curl --max-time, a killed program, a browser dropping a speculative
 * connection) sends that same FIN, and its connection then stayed tracked until the destination
 * spoke or the idle timeout (5 minutes) fired, or until a pending dial timed out.
 *
 * For a client on this host the kernel does know: a socket its program closed is orphaned, with
 * inode 0 (FIN_WAIT2, or the timewait socket that stands in for it), while a socket only shut down
 * keeps its inode. So after a client's FIN, Braid looks its socket up by the 4-tuple (one exact
 * sock_diag lookup through the addon; without the addon, /proc/net/tcp{,6}, which costs the kernel
 * a walk of every socket of the host per read), and closes the connection when the client's socket
 * is gone. Clients on other hosts cannot be checked; their connections keep the half-close behaviour.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { isLocalAddress, unmapIPv4 } from '../local-addresses';
import { tcpSocketOwner } from '../native/kernel-socket';

export type PeerState = 'open' | 'closed' | 'unknown';

export interface Endpoint {
  address: string;
  port: number;
}

interface Query {
  key: string;
  client: Endpoint;
  server: Endpoint;
  wanted: () => boolean;
  v6: boolean;
  address: string;
  resolve(state: PeerState): void;
}

/** An address as /proc/net/tcp prints it: the 32-bit words of the address in host byte order, %08X each. */
export function procHexAddress(address: string): string {
  const a = unmapIPv4(address);
  const bytes = net.isIPv4(a) ? a.split('.').map(Number) : ipv6Bytes(a);
  const little = os.endianness() === 'LE';
  let out = '';
  for (let i = 0; i < bytes.length; i += 4) {
    const word = bytes.slice(i, i + 4);
    if (little) word.reverse();
    out += word.map((b) => b.toString(16).padStart(2, '0')).join('');
  }
  return out.toUpperCase();
}

function ipv6Bytes(address: string): number[] {
  const [head, tail] = address.split('%')[0]!.split('::');
  const groups = (s: string | undefined): string[] => (s ? s.split(':') : []);
  const h = groups(head);
  const t = groups(tail);
  const all = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return all.flatMap((g) => {
    const v = parseInt(g, 16) || 0;
    return [v >> 8, v & 0xff];
  });
}

const procKey = (from: Endpoint, to: Endpoint): string =>
  `${procHexAddress(from.address)}:${from.port.toString(16).toUpperCase().padStart(4, '0')} ${procHexAddress(to.address)}:${to.port.toString(16).toUpperCase().padStart(4, '0')}`;

/**
 * Looks client sockets up, by sock_diag or in /proc/net/tcp{,6}. Lookups arriving within `batchMs`
 * are answered together: lookups no longer wanted by then cost nothing, and with /proc many
 * clients closing at once cost one read of the tables, not one each.
 */
export class PeerSocketProbe {
  private pending: Query[] = [];
  private timer: NodeJS.Timeout | null = null;
  /** The addon could not answer once (missing, or no inet_diag): /proc from then on. */
  private diagFailed = false;

  /** `procNet`: read this directory's tcp tables instead (tests); `lookup: 'proc'` forces /proc/net. */
  constructor(private readonly opts: { procNet?: string; batchMs?: number; lookup?: 'diag' | 'proc' } = {}) {}

  /** How lookups are answered now. */
  get method(): 'diag' | 'proc' {
    return this.opts.procNet || this.opts.lookup === 'proc' || this.diagFailed ? 'proc' : 'diag';
  }

  /**
   * The state of the socket at `client` connected to `server` (our end), as seen from this host.
   * A lookup no longer `wanted` when the batch is read (the connection ended meanwhile, as most
   * do right after a FIN) resolves 'unknown' without costing a read.
   */
  state(client: Endpoint, server: Endpoint, wanted: () => boolean = () => true): Promise<PeerState> {
    return new Promise((resolve) => {
      const v6 = !net.isIPv4(unmapIPv4(client.address));
      this.pending.push({ key: procKey(client, server), client, server, wanted, v6, address: client.address, resolve });
      this.timer ??= setTimeout(() => this.flush(), this.opts.batchMs ?? 250);
      this.timer.unref?.();
    });
  }

  private flush(): void {
    this.timer = null;
    const batch: Query[] = [];
    for (const q of this.pending.splice(0)) {
      if (q.wanted()) batch.push(q);
      else q.resolve('unknown');
    }
    if (this.method === 'diag') {
      const rest: Query[] = [];
      for (const q of batch) {
        const state = this.diag(q);
        if (state) q.resolve(state);
        else rest.push(q);
      }
      if (rest.length === 0) return;
      batch.splice(0, batch.length, ...rest);
    }
    const dir = this.opts.procNet ?? '/proc/net';
    const keys = (v6: boolean): Set<string> | null => {
      const set = new Set(batch.filter((q) => q.v6 === v6).map((q) => q.key));
      return set.size ? set : null;
    };
    const k4 = keys(false);
    const k6 = keys(true);
    const tables = { 4: k4 && readTable(`${dir}/tcp`, k4), 6: k6 && readTable(`${dir}/tcp6`, k6) };
    for (const q of batch) {
      const table = q.v6 ? tables[6] : tables[4];
      if (!table) {
        q.resolve('unknown');
        continue;
      }
      const inode = table.get(q.key);
      // No socket at all under a local address: it was closed and is gone (reset, or timed out).
      if (inode === undefined) q.resolve(isLocalAddress(q.address) ? 'closed' : 'unknown');
      else q.resolve(inode === '0' ? 'closed' : 'open');
    }
  }

  /** One exact lookup; null when the addon cannot answer (the caller reads /proc instead). */
  private diag(q: Query): PeerState | null {
    const client = unmapIPv4(q.client.address);
    const server = unmapIPv4(q.server.address);
    if (net.isIPv4(client) !== net.isIPv4(server)) return 'unknown';
    try {
      const o = tcpSocketOwner({ address: client, port: q.client.port }, { address: server, port: q.server.port });
      // No socket at all under a local address: it was closed and is gone (reset, or timed out).
      if (o === null) return isLocalAddress(client) ? 'closed' : 'unknown';
      return o.inode === 0 ? 'closed' : 'open';
    } catch {
      this.diagFailed = true;
      return null;
    }
  }
}

/**
 * "local remote" -> inode for the `wanted` pairs in a /proc/net/tcp-format file; null when it
 * cannot be read (not Linux). Lines are found by searching for their address pair rather than by
 * splitting every line: with thousands of sockets that is most of the cost.
 */
function readTable(file: string, wanted: Set<string>): Map<string, string> | null {
  let text: string;
  try {
    text = fs.readFileSync(file, 'latin1');
  } catch {
    return null;
  }
  const out = new Map<string, string>();
  for (const key of wanted) {
    // "  sl  local_address rem_address   st tx_queue:rx_queue tr:tm->when retrnsmt   uid  timeout inode"
    const at = text.indexOf(`: ${key} `);
    if (at < 0) continue;
    const end = text.indexOf('\n', at);
    const f = text.slice(at + 2, end < 0 ? text.length : end).trim().split(/\s+/);
    if (f.length >= 9) out.set(key, f[8]!);
  }
  return out;
}

const sharedProbe = new PeerSocketProbe();

/**
 * When to look after a FIN. Not at once: most connections end within a second of a FIN anyway (the
 * destination closes too), costing no lookup at all (and without the addon, a read of
 * /proc/net/tcp makes the kernel walk its whole socket hash, 10 to 30 ms here). Then
 * again later, in case a client that only half-closed closes afterwards; capped, so that a live
 * half-closed one costs little.
 */
const CHECK_AFTER_MS = [1000, 2000, 5000, 10_000, 30_000];

/**
 * Once the client's FIN arrives (now, if it already has), checks whether the client's socket is
 * gone and, if so, destroys ours: the connection's 'close' handling then ends the dial or the
 * tunnel. Call it again after removing the socket's 'end' listeners; checks start only once.
 */
export function closeWhenClientGone(socket: net.Socket, opts: { probe?: PeerSocketProbe; onGone?: () => void; server?: Endpoint } = {}): void {
  // Read now: once the socket is destroyed these are gone.
  const client = { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 };
  // A redirected connection's client socket still names the original destination as its peer
  // (remembered: the tunnel calls again without knowing it).
  if (opts.server) peerOf.set(socket, opts.server);
  const server = peerOf.get(socket) ?? { address: socket.localAddress ?? '', port: socket.localPort ?? 0 };
  if (!client.address || !server.address) return;
  const probe = opts.probe ?? sharedProbe;
  const check = (i: number): void => {
    if (socket.destroyed) return;
    void probe.state(client, server, () => !socket.destroyed).then((state) => {
      if (socket.destroyed || state === 'unknown') return;
      if (state === 'closed') {
        opts.onGone?.();
        socket.destroy();
        return;
      }
      later(i + 1);
    });
  };
  const later = (i: number): void => void setTimeout(() => check(i), CHECK_AFTER_MS[Math.min(i, CHECK_AFTER_MS.length - 1)]).unref();
  const start = (): void => {
    if (started.has(socket)) return;
    started.add(socket);
    later(0);
  };
  if (socket.readableEnded) start();
  else socket.once('end', start);
}

const started = new WeakSet<net.Socket>();
const peerOf = new WeakMap<net.Socket, Endpoint>();
