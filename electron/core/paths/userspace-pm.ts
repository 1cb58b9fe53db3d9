/**
 * Braid as the network namespace's MPTCP path manager (the kernel's userspace path manager, see
 * pm-sysctl.ts): it follows every MPTCP connection through the kernel's events and opens, closes
 * and flags its subflows as subflow-plan.ts says, per connection.
 *
 * Braid's own connections come with a wish (their rule, whether their secondary paths are needed)
 * registered by the dialer right after connecting. Every other program's client connections get
 * the interface policies alone, as the kernel's own path manager would give them, a moment after
 * they are established (so a wish on its way is not overtaken). Connections this host accepted
 * (servers) open no subflows of their own; the peer's joins are accepted because this process
 * listens to the events (the kernel accepts joins for a userspace-managed connection only while
 * some process does).
 */
import { EventEmitter } from 'node:events';
import { BraidError, errorCode, errorMessage } from '../errors';
import type { PmEvent, SubflowCreateOptions, SubflowSelector } from '../native/netlink';
import type { Logger } from '../proxy/session';
import { planConnection, subflowKey, type ConnState, type ConnWish, type PathInfo, type SubflowAction, type SubflowState } from './subflow-plan';

export interface SubflowApi {
  create(o: SubflowCreateOptions): void;
  destroy(o: SubflowSelector): void;
  priority(o: { token: number; localAddress: string; localPort?: number; remoteAddress: string; remotePort?: number; backup: boolean }): void;
  /** resets a subflow's TCP socket (sock_diag); false: no such socket */
  abort?(o: { localAddress: string; localPort: number; remoteAddress: string; remotePort: number; ifindex?: number }): boolean;
}

interface Conn extends ConnState {
  localAddress: string;
  localPort: number;
  serverSide: boolean;
  established: boolean;
  wish: ConnWish | null;
  foreignTimer: NodeJS.Timeout | null;
  /** iface|remote -> when a create was sent and with which flag (waiting for sub_established / sub_closed) */
  pending: Map<string, { at: number; backup: boolean }>;
  /** iface|remote -> failures in a row and when the last one was */
  failures: Map<string, { count: number; at: number }>;
  /** localAddress|localPort of subflows Braid destroyed: their sub_closed is no failure */
  destroyed: Set<string>;
  unmanageable: string | null;
  retries: number;
}

export interface UserspacePmOptions {
  api: SubflowApi;
  paths: () => PathInfo[];
  /** interfaces whose routes reach an address as well as its best route (route-choice.ts) */
  reaches?: (address: string) => ReadonlySet<string> | null;
  maxSubflows: () => number;
  log: Logger;
  /** how long a client connection nobody registered waits before it is handled as another program's */
  foreignGraceMs?: number;
  now?: () => number;
}

const PENDING_MS = 10_000;
const MAX_CONNECTIONS = 65_536;
const RETRY_NOT_ESTABLISHED_MS = 200;

/** Per-address subflow ids: the kernel wants the same id for the same address on a connection. */
class LocalIds {
  private readonly ids = new Map<string, number>();
  get(address: string): number {
    let id = this.ids.get(address);
    if (id !== undefined) return id;
    const used = new Set(this.ids.values());
    for (id = 1; id <= 255 && used.has(id); id++);
    if (id > 255) {
      // More addresses than ids over the process's life: start over (old connections may refuse).
      this.ids.clear();
      id = 1;
    }
    this.ids.set(address, id);
    return id;
  }
}

export interface PmConnectionView {
  token: number;
  mine: boolean;
  subflows: { iface: string | null; localAddress: string; backup: boolean; initial: boolean }[];
  unmanageable: string | null;
}

export class UserspacePm extends EventEmitter<{ applied: [number, SubflowAction[]] }> {
  private readonly conns = new Map<number, Conn>();
  /** wishes registered before the connection's 'created' event reached us (with the first subflow's port, when it must match) */
  private readonly early = new Map<number, { wish: ConnWish; port: number | null }>();
  private readonly ids = new LocalIds();
  private readonly now: () => number;

  constructor(private readonly opts: UserspacePmOptions) {
    super();
    this.now = opts.now ?? Date.now;
  }

  get size(): number {
    return this.conns.size;
  }

  /** Braid's own connection: what it wants. Applied at once when the connection is established. */
  register(token: number, wish: ConnWish, known?: { family: 4 | 6; localAddress: string; localPort: number; remoteAddress: string; remotePort: number; iface: string | null }, expectLocalPort?: number): void {
    let c = this.conns.get(token);
    // For another process's wish (through the helper): the token must be the connection it named.
    if (c && expectLocalPort !== undefined && c.localPort !== expectLocalPort) throw new BraidError('EACCES', `connection ${token} is not the one on local port ${expectLocalPort}`);
    if (!c && known) {
      // Its 'created' event may still be queued (or was lost to an overflow): start from the socket.
      c = this.newConn(token, known.family, known.localAddress, known.localPort, known.remoteAddress, known.remotePort, false);
      c.subflows[0]!.iface = known.iface;
    }
    if (!c) {
      this.early.set(token, { wish, port: expectLocalPort ?? null });
      return;
    }
    c.wish = wish;
    if (c.foreignTimer) clearTimeout(c.foreignTimer);
    c.foreignTimer = null;
    this.apply(c);
  }

  /** A change of what Braid wants for its connection (its secondary paths needed or not). */
  update(token: number, change: Partial<ConnWish>): void {
    const c = this.conns.get(token);
    if (!c?.wish) return;
    c.wish = { ...c.wish, ...change };
    this.apply(c);
  }

  wishOf(token: number): ConnWish | null {
    return this.conns.get(token)?.wish ?? this.early.get(token)?.wish ?? null;
  }

  view(token: number): PmConnectionView | null {
    const c = this.conns.get(token);
    if (!c) return null;
    return {
      token,
      mine: c.wish !== null,
      subflows: c.subflows.map((s) => ({ iface: s.iface, localAddress: s.localAddress, backup: s.backup, initial: s.initial })),
      unmanageable: c.unmanageable,
    };
  }

  /** Paths or policies changed: every connection is brought in line. */
  refresh(): void {
    const paths = this.opts.paths();
    for (const c of this.conns.values()) this.apply(c, paths);
  }

  stop(): void {
    for (const c of this.conns.values()) if (c.foreignTimer) clearTimeout(c.foreignTimer);
    this.conns.clear();
    this.early.clear();
  }

  onEvent(ev: PmEvent): void {
    if (!('type' in ev)) return;
    switch (ev.type) {
      case 'created': {
        if (this.conns.has(ev.token)) return;
        const serverSide = ev.serverSide === true || ((ev.flags ?? 0) & 2) !== 0;
        const c = this.newConn(ev.token, ev.family, ev.saddr, ev.sport, ev.daddr, ev.dport, serverSide);
        const early = this.early.get(ev.token);
        if (early) {
          this.early.delete(ev.token);
          if (early.port === null || early.port === ev.sport) c.wish = early.wish;
          else this.opts.log.warn(`path manager: a wish for connection ${ev.token} named local port ${early.port}, not its ${ev.sport}; ignored`);
        }
        return;
      }
      case 'established': {
        const c = this.conns.get(ev.token) ?? this.newConn(ev.token, ev.family, ev.saddr, ev.sport, ev.daddr, ev.dport, ev.serverSide === true);
        c.established = true;
        if (c.serverSide) return;
        if (c.wish) this.apply(c);
        else if (!c.foreignTimer) {
          c.foreignTimer = setTimeout(() => {
            c.foreignTimer = null;
            if (this.conns.get(c.token) === c) this.apply(c);
          }, this.opts.foreignGraceMs ?? 150);
          c.foreignTimer.unref?.();
        }
        return;
      }
      case 'sub_established': {
        const c = this.conns.get(ev.token);
        if (!c) return;
        const s: SubflowState = {
          localAddress: ev.saddr, localPort: ev.sport, remoteAddress: ev.daddr, remotePort: ev.dport,
          iface: ev.ifname ?? this.ifaceOf(ev.saddr), backup: ev.backup === true, initial: false,
        };
        c.subflows = c.subflows.filter((x) => !(x.localAddress === s.localAddress && x.localPort === s.localPort));
        c.subflows.push(s);
        if (s.iface) {
          const key = subflowKey(s.iface, s.remoteAddress);
          // The event does not always carry the flag the subflow was opened with.
          if (c.pending.get(key)?.backup) s.backup = true;
          c.pending.delete(key);
          c.failures.delete(key);
        }
        // A flag it was created with may since have changed (the need for a secondary path ended).
        this.apply(c);
        return;
      }
      case 'sub_closed': {
        const c = this.conns.get(ev.token);
        if (!c) return;
        const iface = ev.ifname ?? this.ifaceOf(ev.saddr);
        const was = c.subflows.find((x) => x.localAddress === ev.saddr && x.localPort === ev.sport && x.remoteAddress === ev.daddr);
        c.subflows = c.subflows.filter((x) => x !== was);
        // Closed by Braid on purpose (its path closed for this connection, or reopened as backup): no hold-off.
        const ours = c.destroyed.delete(`${ev.saddr}|${ev.sport}`);
        if (iface && !ours) {
          // Not reopened at once, whatever closed it: a subflow that never came up, a path that
          // went away, or a connection that is closing (its own 'closed' event follows).
          const key = subflowKey(iface, ev.daddr);
          c.pending.delete(key);
          const f = c.failures.get(key);
          c.failures.set(key, { count: (f?.count ?? 0) + 1, at: this.now() });
        }
        this.apply(c);
        return;
      }
      case 'sub_priority': {
        const c = this.conns.get(ev.token);
        const s = c?.subflows.find((x) => x.localAddress === ev.saddr && x.localPort === ev.sport);
        if (s) s.backup = ev.backup === true;
        return;
      }
      case 'announced': {
        const c = this.conns.get(ev.token);
        if (!c || c.serverSide) return;
        if (!c.announced.some((a) => a.address === ev.daddr) && ev.daddr !== c.remoteAddress) {
          c.announced.push({ address: ev.daddr, port: ev.dport || c.remotePort });
          if (c.established) this.apply(c);
        }
        return;
      }
      case 'closed': {
        const c = this.conns.get(ev.token);
        if (c?.foreignTimer) clearTimeout(c.foreignTimer);
        this.conns.delete(ev.token);
        this.early.delete(ev.token);
        return;
      }
      default:
        return;
    }
  }

  private newConn(token: number, family: 4 | 6, saddr: string, sport: number, daddr: string, dport: number, serverSide: boolean): Conn {
    // Bounded even if 'closed' events were lost (an event queue overflow): the oldest go first.
    if (this.conns.size >= MAX_CONNECTIONS) {
      const oldest = this.conns.keys().next().value as number;
      const o = this.conns.get(oldest);
      if (o?.foreignTimer) clearTimeout(o.foreignTimer);
      this.conns.delete(oldest);
    }
    const c: Conn = {
      token, family, localAddress: saddr, localPort: sport, remoteAddress: daddr, remotePort: dport, serverSide,
      established: false, wish: null, foreignTimer: null, pending: new Map(), failures: new Map(), destroyed: new Set(), unmanageable: null, retries: 0,
      subflows: [{ localAddress: saddr, localPort: sport, remoteAddress: daddr, remotePort: dport, iface: this.ifaceOf(saddr), backup: false, initial: true }],
      announced: [],
    };
    this.conns.set(token, c);
    return c;
  }

  private ifaceOf(address: string): string | null {
    return this.opts.paths().find((p) => p.addresses.some((a) => a.address === address))?.name ?? null;
  }

  private hold(c: Conn): Set<string> {
    const now = this.now();
    const out = new Set<string>();
    for (const [k, { at }] of c.pending) {
      if (now - at < PENDING_MS) out.add(k);
      else {
        c.pending.delete(k);
        const f = c.failures.get(k);
        c.failures.set(k, { count: (f?.count ?? 0) + 1, at: now });
      }
    }
    for (const [k, f] of c.failures) {
      const backoff = Math.min(60_000, 2000 * 2 ** Math.min(5, f.count - 1));
      if (now - f.at < backoff) out.add(k);
    }
    return out;
  }

  private apply(c: Conn, paths?: PathInfo[]): void {
    if (!c.established || c.serverSide || c.unmanageable || this.conns.get(c.token) !== c) return;
    const actions = planConnection(c, paths ?? this.opts.paths(), c.wish, { maxSubflows: this.opts.maxSubflows(), hold: this.hold(c), reaches: this.opts.reaches });
    if (actions.length === 0) return;
    const done: SubflowAction[] = [];
    for (const a of actions) {
      try {
        this.run(c, a);
        done.push(a);
      } catch (err) {
        const code = errorCode(err);
        if (code === 'ENOTCONN' && c.retries < 10) {
          // Not fully established yet for the kernel (its event can run ahead of the socket's state).
          c.retries++;
          setTimeout(() => this.apply(c), RETRY_NOT_ESTABLISHED_MS).unref?.();
          break;
        }
        if (code === 'ESRCH' && a.op !== 'create') {
          c.subflows = c.subflows.filter((s) => s !== a.subflow);
          continue;
        }
        if (code === 'EINVAL' && /not selected|invalid token/i.test(errorMessage(err))) {
          // Created before Braid became the path manager, or gone: nothing to do for it.
          c.unmanageable = errorMessage(err);
          if (/invalid token/i.test(errorMessage(err))) this.conns.delete(c.token);
          return;
        }
        if (a.op === 'create') {
          const key = subflowKey(a.iface, a.remoteAddress);
          const f = c.failures.get(key);
          c.failures.set(key, { count: (f?.count ?? 0) + 1, at: this.now() });
        }
        this.opts.log.debug(`path manager: connection ${c.token}: ${a.op} failed: ${errorMessage(err)}`);
      }
    }
    if (done.length) {
      for (const a of done) this.opts.log.debug(`path manager: connection ${c.token}: ${describeAction(a)}`);
      this.emit('applied', c.token, done);
    }
  }

  private run(c: Conn, a: SubflowAction): void {
    const { api } = this.opts;
    if (a.op === 'create') {
      api.create({
        token: c.token, localAddress: a.localAddress, localId: this.ids.get(a.localAddress), ifindex: a.ifindex,
        backup: a.backup, remoteAddress: a.remoteAddress, remotePort: a.remotePort,
      });
      c.pending.set(subflowKey(a.iface, a.remoteAddress), { at: this.now(), backup: a.backup });
    } else if (a.op === 'destroy') {
      const s = a.subflow;
      api.destroy({ token: c.token, localAddress: s.localAddress, localPort: s.localPort, remoteAddress: s.remoteAddress, remotePort: s.remotePort });
      c.subflows = c.subflows.filter((x) => x !== s);
      if (c.destroyed.size < 64) c.destroyed.add(`${s.localAddress}|${s.localPort}`);
      if (s.initial && api.abort) {
        // The kernel keeps a connection's first subflow: SUBFLOW_DESTROY only shuts its sending
        // side (a FIN), the peer closes its end and resends what was unacknowledged over the other
        // subflows, yet still sends out what it had queued there, at the slow path's rate (about
        // 1 Mbit/s over 2 s was measured). A reset makes the peer drop that queue.
        try {
          // The dialer binds it to its path's device: the kernel finds it only with that ifindex
          // (which finds an unbound socket as well).
          const ifindex = s.iface ? this.opts.paths().find((p) => p.name === s.iface)?.ifindex : undefined;
          if (!api.abort({ localAddress: s.localAddress, localPort: s.localPort, remoteAddress: s.remoteAddress, remotePort: s.remotePort, ifindex })) this.opts.log.debug(`path manager: connection ${c.token}: its first subflow's socket was already gone`);
        } catch (err) {
          this.opts.log.debug(`path manager: connection ${c.token}: resetting its first subflow failed: ${errorMessage(err)}`);
        }
      }
    } else {
      const s = a.subflow;
      api.priority({ token: c.token, localAddress: s.localAddress, localPort: s.localPort, remoteAddress: s.remoteAddress, remotePort: s.remotePort, backup: a.backup });
      s.backup = a.backup;
    }
  }
}

export function describeAction(a: SubflowAction): string {
  if (a.op === 'create') return `subflow via ${a.iface} (${a.localAddress} -> ${a.remoteAddress})${a.backup ? ' as backup' : ''}: ${a.why}`;
  if (a.op === 'destroy') return `subflow via ${a.subflow.iface ?? a.subflow.localAddress} closed: ${a.why}`;
  return `subflow via ${a.subflow.iface ?? a.subflow.localAddress} ${a.backup ? 'flagged backup' : 'no longer backup'}: ${a.why}`;
}
