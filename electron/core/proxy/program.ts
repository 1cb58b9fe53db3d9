/**
 * Which program opened a connection: for a client on this host, the owner of the client's socket.
 * The kernel lists the socket (local and remote address, uid, inode) in /proc/net/tcp{,6}; the
 * process holding that inode has it among its /proc/PID/fd links. Clients on other hosts have no
 * program here (null).
 *
 * Cost is what matters: one read of the socket tables serves every lookup of a 50 ms batch, only
 * processes of the sockets' owners are scanned, and processes that opened connections lately are
 * looked at first (a browser or a download tool opens many), so the full scan is the exception.
 */
import fs from 'node:fs';
import net from 'node:net';
import { procHexAddress, type Endpoint } from './client-gone';

export interface ProgramInfo {
  name: string;
  pid: number;
}

interface Query {
  key: string;
  v6: boolean;
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
      this.pending.push({ key, v6, resolve });
      this.timer ??= setTimeout(() => this.flush(), BATCH_MS);
      this.timer.unref?.();
    });
  }

  private flush(): void {
    this.timer = null;
    const batch = this.pending.splice(0);
    // inode -> query, with the owners' uids to narrow the scan
    const byInode = new Map<string, Query[]>();
    const uids = new Set<number>();
    for (const v6 of [false, true]) {
      const qs = batch.filter((q) => q.v6 === v6);
      if (qs.length === 0) continue;
      let text = '';
      try {
        text = fs.readFileSync(`${this.proc}/net/${v6 ? 'tcp6' : 'tcp'}`, 'latin1');
      } catch {
        /* not readable: these stay unknown */
      }
      // A few lookups search the text; many (a burst of connections) index it once.
      const index = qs.length > 16 ? indexTable(text) : null;
      for (const q of qs) {
        let f: string[];
        if (index) f = index.get(q.key) ?? [];
        else {
          const at = text.indexOf(`: ${q.key} `);
          if (at < 0) continue;
          const end = text.indexOf('\n', at);
          f = text.slice(at + 2, end < 0 ? undefined : end).trim().split(/\s+/);
        }
        const inode = f[8];
        if (!inode || inode === '0') continue;
        uids.add(Number(f[6]));
        byInode.set(inode, [...(byInode.get(inode) ?? []), q]);
      }
    }
    const found = byInode.size ? this.findOwners(new Set(byInode.keys()), uids) : new Map<string, ProgramInfo>();
    for (const q of batch) {
      let answer: ProgramInfo | null = null;
      for (const [inode, qs] of byInode) if (qs.includes(q)) answer = found.get(inode) ?? null;
      q.resolve(answer);
    }
  }

  /** inode -> program, looking at recent owners first, then every process of `uids`. */
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
        return;
      }
      for (const fd of fds) {
        let target: string;
        try {
          target = fs.readlinkSync(`${this.proc}/${pid}/fd/${fd}`);
        } catch {
          continue;
        }
        if (!target.startsWith('socket:[')) continue;
        const inode = target.slice(8, -1);
        if (inodes.has(inode) && !out.has(inode)) out.set(inode, { name: this.nameOf(pid), pid });
      }
      if ([...out.values()].some((p) => p.pid === pid)) this.remember(pid);
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

/** "local remote" -> the line's fields, for a batch of many lookups. */
function indexTable(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length >= 10) out.set(`${f[1]} ${f[2]}`, f.slice(1));
  }
  return out;
}

export const programs = new ProgramResolver();
