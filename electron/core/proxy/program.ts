/**
 * Which program opened a connection: for a client on this host, the owner of the client's socket.
 * The kernel finds the socket by its 4-tuple (one sock_diag lookup through the addon; without it,
 * /proc/net/tcp{,6}) and gives its inode; the process holding that inode has it among its
 * /proc/PID/fd links. Clients on other hosts have no program here (null).
 *
 * Cost is what matters, since a burst of thousands of connections each asks: lookups are batched
 * every 50 ms, only processes of the sockets' owners are scanned, processes that opened connections
 * lately are looked at first (a browser or a download tool opens many), and what their descriptors
 * pointed to is remembered, so the full scan is the exception.
 */
import fs from 'node:fs';
import net from 'node:net';
import { tcpSocketOwner } from '../native/kernel-socket';
import { procHexAddress, type Endpoint } from './client-gone';

export interface ProgramInfo {
  name: string;
  pid: number;
}

interface Query {
  key: string;
  v6: boolean;
  client: Endpoint;
  server: Endpoint;
  resolve(p: ProgramInfo | null): void;
}

const BATCH_MS = 50;
const RECENT = 32;
/** A full /proc scan reads at most this many fd directories (a bound, not a expectation). */
const MAX_SCAN = 20_000;

const unmap = (a: string): string => (a.startsWith('::ffff:') && net.isIPv4(a.slice(7)) ? a.slice(7) : a);
const hexPort = (p: number): string => p.toString(16).toUpperCase().padStart(4, '0');

export class ProgramResolver {
  private pending: Query[] = [];
  private timer: NodeJS.Timeout | null = null;
  /** Pids that owned recent connections, most recent last. */
  private recent: number[] = [];

  constructor(private readonly opts: { procRoot?: string } = {}) {}

  private get proc(): string {
    return this.opts.procRoot ?? '/proc';
  }

  /** The program whose socket `client` is connected to `server` (our end, or the original destination). */
  lookup(client: Endpoint, server: Endpoint): Promise<ProgramInfo | null> {
    if (process.platform !== 'linux') return Promise.resolve(null);
    return new Promise((resolve) => {
      const c = { address: unmap(client.address), port: client.port };
      const s = { address: unmap(server.address), port: server.port };
      const v6 = !net.isIPv4(c.address);
      const key = `${procHexAddress(c.address)}:${hexPort(c.port)} ${procHexAddress(s.address)}:${hexPort(s.port)}`;
      this.pending.push({ key, v6, client: c, server: s, resolve });
      this.timer ??= setTimeout(() => this.flush(), BATCH_MS);
      this.timer.unref?.();
    });
  }

  private flush(): void {
    this.timer = null;
    const batch = this.pending.splice(0);
    // inode -> the queries for it, with the owners' uids to narrow the scan
    const inodeOf = new Map<Query, string>();
    const uids = new Set<number>();
    const viaTable: Query[] = [];
    for (const q of batch) {
      const owner = this.owner(q);
      if (owner === undefined) viaTable.push(q);
      else if (owner) {
        inodeOf.set(q, owner.inode);
        uids.add(owner.uid);
      }
    }
    if (viaTable.length) this.fromTables(viaTable, inodeOf, uids);
    const found = inodeOf.size ? this.findOwners(new Set(inodeOf.values()), uids) : new Map<string, ProgramInfo>();
    for (const q of batch) {
      const inode = inodeOf.get(q);
      q.resolve(inode === undefined ? null : found.get(inode) ?? null);
    }
  }

  /** The client's socket by one sock_diag lookup: null when there is none, undefined when the addon cannot say. */
  private owner(q: Query): { inode: string; uid: number } | null | undefined {
    if (this.opts.procRoot || this.nativeFailed) return undefined;
    try {
      const o = tcpSocketOwner(q.client, q.server);
      return o && o.inode !== 0 ? { inode: String(o.inode), uid: o.uid } : null;
    } catch {
      // No addon (or a kernel without inet_diag): the socket tables in /proc say the same, slower.
      this.nativeFailed = true;
      return undefined;
    }
  }
  private nativeFailed = false;

  /** The same from /proc/net/tcp{,6}: the whole table is read, so it serves a batch at once. */
  private fromTables(qs: Query[], inodeOf: Map<Query, string>, uids: Set<number>): void {
    for (const v6 of [false, true]) {
      const these = qs.filter((q) => q.v6 === v6);
      if (these.length === 0) continue;
      let text = '';
      try {
        text = fs.readFileSync(`${this.proc}/net/${v6 ? 'tcp6' : 'tcp'}`, 'latin1');
      } catch {
        /* not readable: these stay unknown */
      }
      for (const q of these) {
        const at = text.indexOf(`: ${q.key} `);
        if (at < 0) continue;
        const end = text.indexOf('\n', at);
        const f = text.slice(at + 2, end < 0 ? undefined : end).trim().split(/\s+/);
        const inode = f[8];
        if (!inode || inode === '0') continue;
        uids.add(Number(f[6]));
        inodeOf.set(q, inode);
      }
    }
  }

  /**
   * inode -> program, looking at recent owners first, then every process of `uids`. A process's
   * descriptors are remembered (fd -> inode) between batches, so a program that opens connection
   * after connection costs one directory listing and a readlink per new descriptor, not one per
   * descriptor it holds; a descriptor number reused for another socket is re-read when a wanted
   * inode was not found among the remembered ones.
   */
  private findOwners(inodes: Set<string>, uids: Set<number>): Map<string, ProgramInfo> {
    const out = new Map<string, ProgramInfo>();
    const tried = new Set<number>();
    const visit = (pid: number): void => {
      if (tried.has(pid) || out.size === inodes.size) return;
      tried.add(pid);
      let fds: string[];
      try {
        fds = fs.readdirSync(`${this.proc}/${pid}/fd`);
      } catch {
        this.fdCache.delete(pid);
        return;
      }
      const known = this.fdCache.get(pid) ?? new Map<string, string>();
      const next = new Map<string, string>();
      let hits = 0;
      const read = (fd: string): string => {
        try {
          return fs.readlinkSync(`${this.proc}/${pid}/fd/${fd}`);
        } catch {
          return '';
        }
      };
      const take = (fd: string, target: string): void => {
        next.set(fd, target);
        if (!target.startsWith('socket:[')) return;
        const inode = target.slice(8, -1);
        if (inodes.has(inode) && !out.has(inode)) {
          hits++;
          out.set(inode, { name: '', pid });
        }
      };
      for (const fd of fds) take(fd, known.get(fd) ?? read(fd));
      // Some wanted inode may sit behind a remembered descriptor number that now holds another socket.
      if (out.size < inodes.size && known.size > 0) for (const fd of fds) if (known.has(fd)) take(fd, read(fd));
      this.fdCache.set(pid, next);
      if (this.fdCache.size > RECENT * 2) this.fdCache.delete(this.fdCache.keys().next().value!);
      if (hits > 0) {
        const name = this.nameOf(pid);
        for (const p of out.values()) if (p.pid === pid) p.name = name;
        this.remember(pid);
      }
    };
    for (const pid of [...this.recent].reverse()) visit(pid);
    if (out.size < inodes.size) {
      let pids: number[] = [];
      try {
        pids = fs.readdirSync(this.proc).filter((d) => /^\d+$/.test(d)).map(Number);
      } catch {
        /* no /proc */
      }
      let scanned = 0;
      for (const pid of pids) {
        if (out.size === inodes.size || scanned >= MAX_SCAN) break;
        if (pid === process.pid) continue;
        try {
          if (!uids.has(fs.statSync(`${this.proc}/${pid}`).uid)) continue;
        } catch {
          continue;
        }
        scanned++;
        visit(pid);
      }
    }
    return out;
  }

  /** pid -> (fd -> link target) as last read, for the processes that own connections lately. */
  private readonly fdCache = new Map<number, Map<string, string>>();

  private nameOf(pid: number): string {
    try {
      return fs.readFileSync(`${this.proc}/${pid}/comm`, 'utf8').trim() || `pid ${pid}`;
    } catch {
      return `pid ${pid}`;
    }
  }

  private remember(pid: number): void {
    this.recent = this.recent.filter((p) => p !== pid);
    this.recent.push(pid);
    if (this.recent.length > RECENT) this.recent.shift();
  }
}

export const programs = new ProgramResolver();
