/**
 * The local proxy: one listener that serves SOCKS5 and HTTP on the same port, told apart by the
 * first byte (SOCKS5 starts with 0x05, an HTTP request with an ASCII method name).
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import type { BraidConfig, DialMode } from '../config/schema';
import { BraidError, errorMessage } from '../errors';
import { Dialer, type DialRouting, type Upstream } from './dialer';
import { handleHttp } from './http-proxy';
import { loadNative, mptcpUnavailableReason } from './native';
import type { Logger, Session } from './session';
import { replyAndClose } from './session';
import { handleSocks5 } from './socks5';
import { closeWhenClientGone } from './client-gone';
import { handleTransparent } from './transparent';
import { programs } from './program';
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

/** SOCKS4 request rejected (RFC-less but universal): VN=0, CD=0x5B, port and address unused. */
const SOCKS4_REJECT = Buffer.from([0x00, 0x5b, 0, 0, 0, 0, 0, 0]);

export class ProxyServer extends EventEmitter<ProxyServerEvents> {
  readonly tracker: ConnectionTracker;
  private server: net.Server | null = null;
  private dialer: Upstream | null = null;
  private readonly sockets = new Set<net.Socket>();
  private clients = 0;
  private readonly stopController = new AbortController();
  private readonly log: Logger;
  private bound: net.AddressInfo | null = null;
  private effectiveDial: DialMode;
  private transparent: { servers: net.Server[]; port: number; ipv6: boolean } | null = null;

  constructor(readonly config: BraidConfig, private readonly opts: ProxyServerOptions = {}) {
    super();
    this.log = opts.logger ?? silentLogger;
    this.tracker = new ConnectionTracker(config.limits.maxConnections);
    this.effectiveDial = config.proxy.dial;
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
    });
    this.dialer = this.opts.upstream ? this.opts.upstream(direct) : direct;

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
    server.on('error', (err) => this.log.warn(`listener error: ${errorMessage(err)}`));
    this.bound = server.address() as net.AddressInfo;
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
          srv.on('error', (err) => this.log.warn(`transparent listener error: ${errorMessage(err)}`));
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
    this.stopController.abort();
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
    socket.once('close', () => this.sockets.delete(socket));
  }

  private onConnection(socket: net.Socket, kind: 'proxy' | 'transparent' = 'proxy'): void {
    this.track(socket);
    this.clients++;
    socket.once('close', () => this.clients--);
    socket.on('error', (err) => this.log.debug(`client socket: ${errorMessage(err)}`));
    socket.setNoDelay(true);
    const client = { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 };
    const conn = this.tracker.open(client);
    // Closing from the UI is immediate: a reset, so the client does not first read what was buffered for it.
    conn?.onKill(() => void socket.resetAndDestroy());
    // Past twice the limit, even the courtesy of an error reply is not worth the memory.
    if (!conn && this.clients > 2 * this.config.limits.maxConnections) {
      socket.destroy();
      return;
    }
    const clientGone = new AbortController();
    const onStop = (): void => clientGone.abort();
    this.stopController.signal.addEventListener('abort', onStop, { once: true });
    socket.once('close', () => {
      clientGone.abort();
      this.stopController.signal.removeEventListener('abort', onStop);
      clearTimeout(handshakeTimer);
      conn?.close();
    });
    // A FIN does not say whether the client gave up or only half-closed; the kernel does, for a local one.
    const onGone = (): void => this.log.debug(`${client.address}:${client.port}: client closed its socket; closing`);
    if (kind === 'proxy') closeWhenClientGone(socket, { onGone });

    const handshakeTimer = setTimeout(() => {
      this.log.debug(`${client.address}:${client.port}: handshake timeout`);
      socket.destroy();
    }, this.config.timeouts.handshakeMs);

    const session: Session = {
      socket,
      conn,
      config: this.config,
      dialer: this.dialer!,
      log: this.log,
      signal: clientGone.signal,
      handshakeDone: () => clearTimeout(handshakeTimer),
      adoptUpstream: (up) => {
        if (socket.destroyed) {
          up.destroy();
          return;
        }
        this.track(up);
        // The client's end is the connection's end; no outbound socket outlives it.
        const kill = (): void => void up.destroy();
        socket.once('close', kill);
        up.once('close', () => socket.off('close', kill));
      },
    };

    // Which program opened it (a local client's socket owner); a redirected one is looked up by its original destination.
    if (conn && kind === 'proxy') void programs.lookup(client, { address: socket.localAddress ?? '', port: socket.localPort ?? 0 }).then((p) => void (conn.program = p));

    if (kind === 'transparent') {
      handleTransparent(session, { sniffMs: SNIFF_MS, viaRelay: this.opts.upstream !== undefined, isSelf: (a, p) => this.isSelf(a, p), onGone });
      return;
    }

    // EOF before the first byte: nothing to answer, and a half-open socket would linger.
    const onEarlyEnd = (): void => void socket.destroy();
    socket.once('end', onEarlyEnd);
    socket.once('data', (first: Buffer) => {
      socket.off('end', onEarlyEnd);
      try {
        const b = first[0];
        if (b === 0x05) return handleSocks5(session, first);
        if (b >= 0x41 && b <= 0x5a) return handleHttp(session, first);
        if (b === 0x04) return replyAndClose(socket, SOCKS4_REJECT);
        replyAndClose(socket);
      } catch (err) {
        this.log.warn(`internal error on new connection: ${errorMessage(err)}`);
        socket.destroy();
      }
    });
  }
}
