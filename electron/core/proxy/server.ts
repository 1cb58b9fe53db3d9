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
import { Dialer, type Upstream } from './dialer';
import { loadNative, mptcpUnavailableReason } from './native';
import type { Logger } from './session';
import { ConnectionTracker } from './tracker';

export const silentLogger: Logger = { info() {}, warn() {}, debug() {} };

export interface ProxyServerOptions {
  logger?: Logger;
  /** Delay before starting the next address's connect attempt (RFC 8305 suggests 250 ms). */
  attemptDelayMs?: number;
  /** Replaces direct dialling, e.g. with a relay; it gets the direct dialer to build on. */
  upstream?: (direct: Dialer) => Upstream;
}

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
  /** What every ClientSession uses of this server; one object, and one copy of each listener. */
  private readonly host: SessionHost;
  private readonly untrack: (this: net.Socket) => void;
  private readonly onClientError: (err: Error) => void;

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

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
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
    if (!b || port !== b.port) return false;
    const norm = (a: string): string => a.replace(/^::ffff:/, '');
    const target = norm(address);
    if (target === norm(b.address)) return true;
    // A wildcard listener is reachable through every local address; loopback is the usual loop.
    const wildcard = b.address === '0.0.0.0' || b.address === '::';
    return wildcard && (target.startsWith('127.') || target === '::1' || target === '0.0.0.0' || target === '::');
  }

  private track(socket: net.Socket): void {
    this.sockets.add(socket);
    if (this.sockets.size + FD_MARGIN >= this.fdSoftLimit) this.reportFdExhaustion(`${this.sockets.size} sockets open`);
    socket.once('close', this.untrack);
  }

  private onConnection(socket: net.Socket): void {
    this.track(socket);
    this.clients++;
    socket.on('error', this.onClientError);
    socket.setNoDelay(true);
    const conn = this.tracker.open({ address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 });
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
    new ClientSession(this.host, socket, conn);
  }
}
