/**
 * Every live client connection, what it asked for and how it is being carried. The desktop UI and
 * `braid status` read this; the relay counts bytes into it.
 */
import { EventEmitter } from 'node:events';
import type net from 'node:net';
import type { MptcpInfo } from '../native/mptcp';
import type { DialRoute } from './dialer';
import { loadNative, type NativeModule } from './native';
import { socketFd } from '../socket-fd';

export type ProxyProtocol = 'socks5' | 'http-connect' | 'http' | 'transparent';
/**
 * mptcp: MPTCP end to end; fallback: MPTCP was dialled and the destination does not speak it (the
 * dialer then puts a plain TCP socket in place of the fallen-back one); tcp: dialled plain TCP.
 */
export type Transport = 'mptcp' | 'fallback' | 'tcp' | 'unknown';

export interface Destination {
  host: string;             // as the client asked
  port: number;
  address: string | null;   // resolved address that connected, null until connected
}

/** How a connection's paths were chosen, and where its secondary paths stand (paths/secondary.ts). */
export interface ConnectionRoute extends DialRoute {
  state: 'idle' | 'trial' | 'active' | 'standby' | null;
}

export interface ConnectionSnapshot {
  id: number;
  /** The local program that opened it (owner of the client's socket), when known. */
  program: { name: string; pid: number } | null;
  client: { address: string; port: number };
  protocol: ProxyProtocol | null;  // null while the first bytes are still being read
  destination: Destination | null;
  startedAt: number;               // ms since epoch
  bytesUp: number;
  bytesDown: number;
  transport: Transport;
  route: ConnectionRoute | null;
}

export class TrackedConnection {
  protocol: ProxyProtocol | null = null;
  destination: Destination | null = null;
  private up = 0;
  private down = 0;
  transport: Transport = 'unknown';
  program: { name: string; pid: number } | null = null;
  private routeValue: ConnectionRoute | null = null;
  /** the socket toward the client (whether it keeps up shows in the kernel's queue for it) */
  clientFd: number | null = null;
  readonly startedAt = Date.now();
  /** ms during which reading from the side was held back for the other side (pump backpressure) */
  private readonly heldMs = { up: 0, down: 0 };
  private readonly heldSince: { up: number | null; down: number | null } = { up: null, down: null };
  private upstream: net.Socket | null = null;
  private upstreamFd: number | null = null;
  private killer: { resetAndDestroy(): unknown } | null = null;
  private closed = false;

  constructor(
    readonly id: number,
    readonly client: { address: string; port: number },
    private readonly tracker: ConnectionTracker,
  ) {}

  /** How its paths were chosen; one with secondary paths is listed for the secondary controller. */
  get route(): ConnectionRoute | null {
    return this.routeValue;
  }

  set route(r: ConnectionRoute | null) {
    this.routeValue = r;
    this.tracker.routed(this);
  }

  /** Bytes from the client to the destination; a change puts the connection on the tracker's moved list. */
  get bytesUp(): number {
    return this.up;
  }

  set bytesUp(n: number) {
    this.up = n;
    if (!this.closed) this.tracker.touched(this);
  }

  get bytesDown(): number {
    return this.down;
  }

  set bytesDown(n: number) {
    this.down = n;
    if (!this.closed) this.tracker.touched(this);
  }

  /**
   * Records the outbound socket; reads MPTCP status from it right away (known after the handshake).
   * Dialled MPTCP, a plain TCP socket (the dialer's replacement for a fallen-back one) reads as a
   * fallback, which is what it is to the user.
   */
  setUpstream(socket: net.Socket, destination: Destination, dialedMptcp: boolean, fd?: number | null): void {
    this.upstream = socket;
    this.upstreamFd = fd ?? socketFd(socket);
    this.destination = destination;
    if (!dialedMptcp) {
      this.transport = 'tcp';
      return;
    }
    const status = this.mptcpStatus();
    this.transport = status === null ? 'unknown' : status.mptcp && !status.fallback ? 'mptcp' : 'fallback';
  }

  private mptcpStatus(): { mptcp: boolean; fallback: boolean } | null {
    return this.readUpstream((mod, fd) => mod.mptcpStatus(fd));
  }

  /** Current MPTCP state of the outbound socket, or null when it cannot be read. */
  subflows(withBackupFlags = true): MptcpInfo | null {
    return this.readUpstream((mod, fd) => mod.socketInfo(fd, withBackupFlags));
  }

  /** A getsockopt on the live outbound socket through the addon; null when there is none to read. */
  private readUpstream<T>(read: (mod: NativeModule, fd: number) => T): T | null {
    const { mod } = loadNative();
    const fd = this.upstreamFd;
    if (!mod || !this.upstream || this.upstream.destroyed || fd === null) return null;
    try {
      return read(mod, fd);
    } catch {
      return null;
    }
  }

  hold(direction: 'up' | 'down', held: boolean): void {
    const now = Date.now();
    if (held) this.heldSince[direction] ??= now;
    else if (this.heldSince[direction] !== null) {
      this.heldMs[direction] += now - this.heldSince[direction]!;
      this.heldSince[direction] = null;
    }
  }

  /**
   * Total ms the direction was held back so far. 'down' held: the client reads slower than the
   * destination sends (the application, not the network, sets the pace).
   */
  heldTime(direction: 'up' | 'down', now = Date.now()): number {
    const since = this.heldSince[direction];
    return this.heldMs[direction] + (since === null ? 0 : now - since);
  }

  /** The outbound MPTCP socket's fd (for the path manager's per-connection view), or null. */
  get fd(): number | null {
    return this.upstream && !this.upstream.destroyed ? this.upstreamFd : null;
  }

  /**
   * What to destroy to end this connection from outside (the UI's close button): the client's socket.
   * A reset, so the client does not first read what was buffered for it.
   */
  onKill(killer: { resetAndDestroy(): unknown }): void {
    this.killer = killer;
  }

  /** Ends the connection: both sockets are destroyed, and close() follows from the client's close. */
  kill(): boolean {
    if (this.closed || !this.killer) return false;
    this.killer.resetAndDestroy();
    return true;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.clientFd = null;
    this.upstream = null;
    this.upstreamFd = null;
    this.killer = null;
    this.tracker.remove(this);
  }

  snapshot(): ConnectionSnapshot {
    return {
      id: this.id,
      program: this.program ? { ...this.program } : null,
      client: { ...this.client },
      protocol: this.protocol,
      destination: this.destination ? { ...this.destination } : null,
      startedAt: this.startedAt,
      bytesUp: this.bytesUp,
      bytesDown: this.bytesDown,
      transport: this.transport,
      route: this.route ? { ...this.route, secondary: [...this.route.secondary], use: [...this.route.use] } : null,
    };
  }
}

export interface TrackerEvents {
  opened: [ConnectionSnapshot];
  closed: [ConnectionSnapshot];
  /** the number of live connections with secondary paths changed */
  secondary: [number];
  /** the first byte count moved since takeMoved() (the stats engine wakes from its idle pace) */
  moved: [];
}

export class ConnectionTracker extends EventEmitter<TrackerEvents> {
  private nextId = 1;
  private readonly live = new Map<number, TrackedConnection>();
  /** Connections whose byte counts changed since takeMoved() was last called. */
  private moved = new Set<TrackedConnection>();
  private readonly secondaryRouted = new Set<TrackedConnection>();

  constructor(readonly maxConnections: number) {
    super();
  }

  get size(): number {
    return this.live.size;
  }

  get full(): boolean {
    return this.live.size >= this.maxConnections;
  }

  /** A new entry, or null when the limit is reached (the caller then refuses the client). */
  open(client: { address: string; port: number }): TrackedConnection | null {
    if (this.full) return null;
    const conn = new TrackedConnection(this.nextId++, client, this);
    this.live.set(conn.id, conn);
    this.emit('opened', conn.snapshot());
    return conn;
  }

  /** @internal called by TrackedConnection.close */
  remove(conn: TrackedConnection): void {
    this.moved.delete(conn);
    if (this.secondaryRouted.delete(conn)) this.emit('secondary', this.secondaryRouted.size);
    if (this.live.delete(conn.id)) this.emit('closed', conn.snapshot());
  }

  /** @internal called by TrackedConnection when its route is set */
  routed(conn: TrackedConnection): void {
    const before = this.secondaryRouted.size;
    if (conn.route?.secondary.length && this.live.has(conn.id)) this.secondaryRouted.add(conn);
    else this.secondaryRouted.delete(conn);
    if (this.secondaryRouted.size !== before) this.emit('secondary', this.secondaryRouted.size);
  }

  /** How many live connections have secondary paths. */
  get secondaryCount(): number {
    return this.secondaryRouted.size;
  }

  /**
   * The live connections that have secondary paths: the secondary controller looks at these four
   * times a second, and an idle proxy's thousands of others need not be walked for it.
   */
  withSecondaryPaths(): IterableIterator<TrackedConnection> {
    return this.secondaryRouted.values();
  }

  /** @internal called by TrackedConnection when its byte counts change */
  touched(conn: TrackedConnection): void {
    const first = this.moved.size === 0;
    this.moved.add(conn);
    if (first) this.emit('moved');
  }

  /**
   * The live connections whose byte counts changed since the last call (the stats engine visits only
   * these and a slice of the rest each tick), and starts a new list.
   */
  takeMoved(): Set<TrackedConnection> {
    const out = this.moved;
    this.moved = new Set();
    return out;
  }

  get(id: number): TrackedConnection | undefined {
    return this.live.get(id);
  }

  /** The live connections themselves (for sampling); do not keep references past a tick. */
  connections(): IterableIterator<TrackedConnection> {
    return this.live.values();
  }

  list(): ConnectionSnapshot[] {
    return [...this.live.values()].map((c) => c.snapshot());
  }
}
