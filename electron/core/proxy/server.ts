/**
 * The local proxy: one listener that serves SOCKS5 and HTTP on the same port, told apart by the
 * first byte (SOCKS5 starts with 0x05, an HTTP request with an ASCII method name).
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import type { BraidConfig, DialMode } from '../config/schema';
import { BraidError, errorMessage } from '../errors';
import { connectionsForFds, currentFdLimit, isFdExhaustion } from '../fd-limit';
import { ClientSession, type SessionHost } from './client-session';
import { closeWhenClientGone } from './client-gone';
import { Dialer, type DialRouting, type Upstream } from './dialer';
import { FallbackMemory } from './fallback-memory';
import { loadNative, mptcpUnavailableReason } from './native';
import { programs } from './program';
import type { Logger } from './session';
import { handleTransparent } from './transparent';
import { ConnectionTracker } from './tracker';

export const silentLogger: Logger = { info() {}, warn() {}, debug() {} };

export interface ProxyServerOptions {
  logger?: Logger;
  /** Delay before starting the next address's connect attempt (RFC 8305 suggests 250 ms). */
  attemptDelayMs?: number;
  /** Replaces direct dialling, e.g. with a relay; it gets the direct dialer to build on. */
  upstream?: (direct: Dialer) => Upstream;
  /** SO_MARK for outbound sockets (transparent mode lets Braid's own connections through by it); 0 = none. */
  mark?: () => number;
  /** The path policy's say in dialling (paths/routing.ts); null = the routing table decides. */
  routing?: () => DialRouting | null;
}

/** How long a redirected connection's CONNECT through a relay waits for the client to name its host. */
export const SNIFF_MS = 10;

export interface ProxyServerEvents {
  warning: [string];
}

/**
 * Clients over the connection limit that still get a "too many connections" reply; past that they
 * are closed at once. Bounded so that the descriptors fd-limit.ts reserves cover them.
 */
const REFUSED_WITH_REPLY = 64;
/**
 * Descriptors the process holds besides its proxied sockets (listeners, epoll, netlink, stdio, ...).
 * An accept that fails with EMFILE is handled inside libuv (it accepts and closes the client) and
 * never reaches JavaScript, so running out is noticed when the sockets come this close to the limit.
 */
const FD_MARGIN = 32;

export class ProxyServer extends EventEmitter<ProxyServerEvents> {
  readonly tracker: ConnectionTracker;
  private server: net.Server | null = null;
  private dialer: Upstream | null = null;
  private readonly sockets = new Set<net.Socket>();
  private clients = 0;
  private readonly log: Logger;
  /** Limits already reported: each is logged once per server, not once per refused client. */
  private readonly limitsReported = new Set<'connections' | 'fds'>();
  private fdSoftLimit = Infinity;
  private bound: net.AddressInfo | null = null;
  private effectiveDial: DialMode;
  /** Destinations that do not speak MPTCP, dialled plain TCP (fallback-memory.ts). */
  private readonly fallbackMemory = new FallbackMemory();
  /** What every ClientSession uses of this server; one object, and one copy of each listener. */
  private readonly host: SessionHost;
  private readonly untrack: (this: net.Socket) => void;
  private readonly onClientError: (err: Error) => void;
  private transparent: { servers: net.Server[]; port: number; ipv6: boolean } | null = null;

  constructor(readonly config: BraidConfig, private readonly opts: ProxyServerOptions = {}) {
    super();
    this.log = opts.logger ?? silentLogger;
    this.tracker = new ConnectionTracker(config.limits.maxConnections);
    this.effectiveDial = config.proxy.dial;
    const sockets = this.sockets;
    this.untrack = function (this: net.Socket) {
      sockets.delete(this);
    };
    this.onClientError = (err) => this.log.debug(`client socket: ${errorMessage(err)}`);
    const server = this;
    this.host = {
      config,
      get dialer() {
        return server.dialer!;
      },
      log: this.log,
      track: (socket) => this.track(socket),
      clientClosed: () => void this.clients--,
      transparent: (session) => {
        const s = session.socket;
        const onGone = (): void => this.log.debug(`${s.remoteAddress}:${s.remotePort}: client closed its socket; closing`);
        handleTransparent(session, { sniffMs: SNIFF_MS, viaRelay: this.opts.upstream !== undefined, isSelf: (a, p) => this.isSelf(a, p), onGone });
      },
    };
  }

  /** The dial mode in force: 'tcp' when MPTCP was asked for but is not available here. */
  get dialMode(): DialMode {
    return this.effectiveDial;
  }

  get address(): net.AddressInfo | null {
    return this.bound;
  }

  async start(): Promise<net.AddressInfo> {
    if (this.server) throw new BraidError('EALREADY', 'proxy server already started');
    const native = loadNative().mod;
    if (this.config.proxy.dial === 'mptcp') {
      const why = mptcpUnavailableReason();
      if (why) {
        this.effectiveDial = 'tcp';
        const msg = `MPTCP is not available (${why}); dialling plain TCP`;
        this.log.warn(msg);
        this.emit('warning', msg);
      }
    }
    const direct = new Dialer({
      mode: this.effectiveDial,
      connectMs: this.config.timeouts.connectMs,
      native,
      attemptDelayMs: this.opts.attemptDelayMs,
      isSelf: (address, port) => this.isSelf(address, port),
      mark: this.opts.mark,
      routing: this.opts.routing,
      fallbackMemory: this.fallbackMemory,
    });
    const upstream = this.opts.upstream ? this.opts.upstream(direct) : direct;
    this.dialer = {
      get mode() {
        return upstream.mode;
      },
      dial: (target) =>
        upstream.dial(target).catch((err: unknown) => {
          if (isFdExhaustion(err)) this.reportFdExhaustion('EMFILE on connect');
          throw err;
        }),
    };

    const server = net.createServer({ allowHalfOpen: true }, (socket) => this.onConnection(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => {
        this.server = null;
        reject(err);
      };
      server.once('error', onError);
      server.listen({ host: this.config.proxy.host, port: this.config.proxy.port }, () => {
        server.off('error', onError);
        resolve();
      });
    });
    // Later listener errors (EMFILE on accept) are logged; they must not crash the process.
    server.on('error', (err) => {
      if (isFdExhaustion(err)) this.reportFdExhaustion('EMFILE on accept');
      else this.log.warn(`listener error: ${errorMessage(err)}`);
    });
    this.bound = server.address() as net.AddressInfo;
    this.fdSoftLimit = currentFdLimit().soft;
    const max = this.config.limits.maxConnections;
    this.log.debug(`limits: up to ${max} connections (limits.maxConnections), open-file limit ${this.fdSoftLimit}`);
    if (max > connectionsForFds(this.fdSoftLimit)) {
      this.log.warn(`limits.maxConnections is ${max} but the open-file limit (${this.fdSoftLimit}) allows about ${connectionsForFds(this.fdSoftLimit)}: ` +
        'connections past that will fail; raise the limit (ulimit -n, LimitNOFILE=) or lower the setting');
    }
    return this.bound;
  }

  /**
   * The listener nftables redirects to (transparent mode, `braid run`): loopback only, the same port
   * on 127.0.0.1 and ::1 because one `redirect to :PORT` serves both families. `ipv6` is false where
   * this host has no IPv6 loopback; the rules then leave IPv6 alone.
   */
  async startTransparent(): Promise<{ port: number; ipv6: boolean }> {
    if (this.transparent) return { port: this.transparent.port, ipv6: this.transparent.ipv6 };
    if (!this.server) throw new BraidError('ENOTRUNNING', 'the proxy is not running');
    const listen = (host: string, port: number): Promise<net.Server> =>
      new Promise((resolve, reject) => {
        const srv = net.createServer({ allowHalfOpen: true }, (socket) => this.onConnection(socket, 'transparent'));
        srv.once('error', reject);
        srv.listen({ host, port, exclusive: true }, () => {
          srv.off('error', reject);
          srv.on('error', (err) => {
            if (isFdExhaustion(err)) this.reportFdExhaustion('EMFILE on accept');
            else this.log.warn(`transparent listener error: ${errorMessage(err)}`);
          });
          resolve(srv);
        });
      });
    for (let attempt = 0; attempt < 8; attempt++) {
      const v4 = await listen('127.0.0.1', 0);
      const port = (v4.address() as net.AddressInfo).port;
      try {
        const v6 = await listen('::1', port);
        this.transparent = { servers: [v4, v6], port, ipv6: true };
        break;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EADDRINUSE') {
          v4.close();
          continue;
        }
        // No IPv6 loopback here: IPv4 only.
        this.transparent = { servers: [v4], port, ipv6: false };
        break;
      }
    }
    if (!this.transparent) throw new BraidError('EADDRINUSE', 'no loopback port free on both 127.0.0.1 and ::1 for the transparent listener');
    return { port: this.transparent.port, ipv6: this.transparent.ipv6 };
  }

  get transparentPort(): number | null {
    return this.transparent?.port ?? null;
  }

  async stopTransparent(): Promise<void> {
    const t = this.transparent;
    this.transparent = null;
    if (t) await Promise.all(t.servers.map((srv) => new Promise<void>((resolve) => srv.close(() => resolve()))));
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    await this.stopTransparent();
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    // Every socket still in the set has not emitted 'close' yet (the set drops it on 'close').
    const live = [...this.sockets].map((s) => {
      const done = new Promise<void>((resolve) => s.once('close', () => resolve()));
      s.destroy();
      return done;
    });
    await Promise.all([closed, ...live]);
    this.server = null;
  }

  private reportLimit(kind: 'connections' | 'fds', message: string): void {
    if (this.limitsReported.has(kind)) return;
    this.limitsReported.add(kind);
    this.log.warn(message);
    this.emit('warning', message);
  }

  private reportFdExhaustion(detail: string): void {
    const max = this.config.limits.maxConnections;
    this.reportLimit('fds', `out of file descriptors (${detail}, open-file limit ${currentFdLimit().soft}): new connections fail; ` +
      `raise the limit (ulimit -n, or LimitNOFILE= in a systemd unit) or lower limits.maxConnections (now ${max})`);
  }

  private isSelf(address: string, port: number): boolean {
    const b = this.bound;
    if (!b) return false;
    const norm = (a: string): string => a.replace(/^::ffff:/, '');
    const target = norm(address);
    const loopback = target.startsWith('127.') || target === '::1';
    // The transparent listener is on loopback only.
    if (this.transparent && port === this.transparent.port && loopback) return true;
    if (port !== b.port) return false;
    if (target === norm(b.address)) return true;
    // A wildcard listener is reachable through every local address; loopback is the usual loop.
    const wildcard = b.address === '0.0.0.0' || b.address === '::';
    return wildcard && (loopback || target === '0.0.0.0' || target === '::');
  }

  private track(socket: net.Socket): void {
    this.sockets.add(socket);
    if (this.sockets.size + FD_MARGIN >= this.fdSoftLimit) this.reportFdExhaustion(`${this.sockets.size} sockets open`);
    socket.once('close', this.untrack);
  }

  private onConnection(socket: net.Socket, kind: 'proxy' | 'transparent' = 'proxy'): void {
    this.track(socket);
    this.clients++;
    socket.on('error', this.onClientError);
    socket.setNoDelay(true);
    const client = { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 };
    const conn = this.tracker.open(client);
    conn?.onKill(socket);
    if (!conn) {
      const max = this.config.limits.maxConnections;
      this.reportLimit('connections', `connection limit reached: ${max} concurrent connections; new clients are refused until some close ` +
        `(setting: limits.maxConnections; its default is sized from the open-file limit, now ${currentFdLimit().soft})`);
      // Past a few over the limit, even the courtesy of an error reply is not worth a descriptor.
      if (this.clients > max + REFUSED_WITH_REPLY) {
        socket.once('close', this.host.clientClosed);
        socket.destroy();
        return;
      }
    }
    if (kind === 'proxy') {
      // A FIN does not say whether the client gave up or only half-closed; the kernel does, for a local one.
      closeWhenClientGone(socket, { onGone: () => this.log.debug(`${client.address}:${client.port}: client closed its socket; closing`) });
      // Which program opened it (a local client's socket owner); a redirected one is looked up by its original destination.
      if (conn) void programs.lookup(client, { address: socket.localAddress ?? '', port: socket.localPort ?? 0 }).then((p) => void (conn.program = p));
    }
    new ClientSession(this.host, socket, conn, kind);
  }
}
