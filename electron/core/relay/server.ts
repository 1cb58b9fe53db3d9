/**
 * `braid relay`: the far end of the MPTCP connection. Clients reach it over MPTCP (every link they
 * have) + TLS 1.3, authenticate with the shared secret inside an HTTP CONNECT, and the relay dials
 * the destination (plain TCP by default, see RELAY_DEFAULT_DIAL; `--dial mptcp`: MPTCP where the
 * destination speaks it) and moves the bytes.
 *
 * It is never an open proxy: no valid secret, no service; private destinations are refused unless
 * allowed; connections are limited per client address and in total; slow handshakes are cut.
 */
import crypto from 'node:crypto';
import dns from 'node:dns';
import net from 'node:net';
import tls from 'node:tls';
import type http from 'node:http';
import { errorCode, errorMessage } from '../errors';
import { Dialer, type ResolvedAddress } from '../proxy/dialer';
import { FallbackMemory } from '../proxy/fallback-memory';
import { loadNative } from '../proxy/native';
import { describeEnd, pump } from '../proxy/pump';
import { markSealable, sealingAvailable } from '../proxy/seal-tunnel';
import type { Logger } from '../proxy/session';
import type { RelayCredentials } from './credentials';
import { RelayMetrics } from './metrics';
import { fixReceiveBuffer } from './receive-buffer';
import { DestinationPolicy, PolicyRefusal, type Refusal } from './policy';
import { isSpeedTarget, SpeedEndpoint, type SpeedLimits } from './speed';
import { acceptTls, ticketCountingWorks, type AcceptedTls } from './tls-accept';
import { basicAuth, HeadReader, parseAuthority, relayResponse, SEAL_HEADER, type Head } from './wire';
import { socketFd } from '../socket-fd';

export interface RelayServerOptions {
  host: string;
  port: number;
  credentials: RelayCredentials;
  policy: DestinationPolicy;
  /** How the relay dials destinations (default RELAY_DEFAULT_DIAL). */
  dial?: 'mptcp' | 'tcp';
  maxConnections: number;
  maxPerClient: number;
  handshakeMs: number;
  /**
   * How long a connection whose TLS handshake is done may wait for its CONNECT. Longer than
   * handshakeMs on purpose: clients keep warm connections (TLS done, no request yet) so that a
   * dial costs only the CONNECT round trip, and cutting those after handshakeMs emptied the pool.
   * Default: max(handshakeMs, 60 s), above the client's default warm-connection lifetime (45 s).
   */
  requestWaitMs?: number;
  idleMs: number;
  connectMs: number;
  metrics?: { host: string; port: number } | null;
  log: Logger;
  /** The speed-test endpoint (relay/speed.ts) and its limits; false turns it off. */
  speedTest?: Partial<SpeedLimits> | false;
}

/**
 * Destinations are dialled over plain TCP unless the operator says `--dial mptcp`. An MPTCP socket
 * towards a destination that speaks MPTCP stalls on this kernel (6.18) whenever the relay's reads
 * of it pause, which they do whenever the client side (TLS to braid up) is slower: while the
 * window closes, the destination's TCP probes with one-MSS slices of a DSS mapping; the rest of
 * that mapping, sent once the window reopens, is TCP-acked but never reaches the MPTCP level (the
 * DATA_ACK stays at the end of the slices, everything behind it waits in the subflow), until the
 * destination's MPTCP retransmission timer fires (200 ms; MPTcpExtMPTCPRetrans there,
 * DuplicateData here). Seen in packet captures on the relay's destination link; a Python reader
 * pausing 20 ms every 4 MB gets the same, whatever SO_RCVBUF (1 to 32 MiB), and MPTCP sockets take
 * neither TCP_QUICKACK nor TCP_WINDOW_CLAMP, so userspace cannot make the kernel send the missing
 * DATA_ACK. The relay's leg to a destination is one path, so MPTCP gains nothing there; and a
 * fallen-back MPTCP socket towards a TCP destination also made the kernel prune and drop
 * (TcpExtPruneCalled, TCPRcvQDrop). The earlier reason to keep MPTCP (warm time to first byte
 * +0.9 to +2.1 RTT with TCP, unpaired runs) did not hold when measured paired: +0.18 to +0.24 RTT
 * with TCP against +0.19 to +0.20 with MPTCP, and +0.21 to +0.37 in bench runs (README, "A relay").
 * Tested in test/relay-mptcp-destination.test.ts.
 */
export const RELAY_DEFAULT_DIAL = 'tcp' as const;

/**
 * Bytes of an upload the relay holds in userland towards the destination before it stops reading
 * the client's MPTCP connection (the pump's default, 256 KiB, holds the other direction). Each pause
 * of an MPTCP socket's reader can stall the connection until the sender's MPTCP retransmission
 * timer fires (200 ms; see RELAY_DEFAULT_DIAL); this holds off such pauses while a destination is
 * briefly slower than the client. At most this much per tunnel, and only while its destination is
 * slower than its client. In the bench's unshaped upload it does not engage: the relay's reader was
 * never paused there (counted), and what made those uploads erratic was the relay connection's
 * receive window closing (receive-buffer.ts). The gain once measured for it (median 2.29 -> 3.07
 * Gbit/s over 12 repetitions each) was within that noise.
 */
export const RELAY_UPLOAD_QUEUE = 8 * 1024 * 1024;

const RELAY_CIPHER_SUITES = 'TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384';

/** Maps a dial failure to the status the client sees; the errno name travels in X-Braid-Error. */
function dialStatus(code: string): number {
  if (code === 'EPOLICY') return 403;
  if (code === 'ETIMEDOUT') return 504;
  return 502;
}

export class RelayServer {
  readonly metrics = new RelayMetrics();
  private server: net.Server | null = null;
  private metricsServer: http.Server | null = null;
  private readonly sockets = new Set<net.Socket>();
  private readonly perClient = new Map<string, number>();
  // Client connections only: `sockets` also holds each tunnel's upstream, which must not count
  // against --max-connections (it would halve the limit for clients with a live tunnel).
  private clients = 0;
  private readonly expectedAuth: Buffer;
  private readonly dialer: Dialer;
  private readonly activeTunnels = new Set<number>();
  /** per client connection: its raw socket's fd and what sealing its download needs (tls-accept.ts) */
  private readonly accepted = new WeakMap<tls.TLSSocket, { fd: number | null; tls: AcceptedTls }>();
  /** whether the relay may seal downloads in the addon here (ticketCountingWorks, at start) */
  private sealDownloads = false;
  readonly speed: SpeedEndpoint | null;

  constructor(private readonly opts: RelayServerOptions) {
    this.expectedAuth = Buffer.from(basicAuth(opts.credentials.secret));
    this.speed = opts.speedTest === false ? null : new SpeedEndpoint({ limits: opts.speedTest, metrics: this.metrics, log: opts.log });
    const native = loadNative().mod;
    this.metrics.beforeRender = () => this.countSubflows();
    this.dialer = new Dialer({
      mode: (opts.dial ?? RELAY_DEFAULT_DIAL) === 'mptcp' && native ? 'mptcp' : 'tcp',
      connectMs: opts.connectMs,
      native,
      lookup: (host) => this.resolveAllowed(host),
      fallbackMemory: new FallbackMemory(),
    });
  }

  async start(): Promise<net.AddressInfo> {
    const { credentials: c } = this.opts;
    const context = tls.createSecureContext({
      key: c.key,
      cert: c.cert,
      minVersion: 'TLSv1.3',
      // The relay's choice, not the client's: AES-128-GCM costs both ends ~30 % less CPU per byte
      // than OpenSSL's default AES-256-GCM (10 rounds instead of 14) and is TLS 1.3's mandatory
      // suite; ChaCha20 stays for clients without AES instructions.
      ciphers: RELAY_CIPHER_SUITES,
      honorCipherOrder: true,
    });
    // The loopback handshake that checks the ticket count is made only where sealing can happen.
    this.sealDownloads = sealingAvailable() && (await ticketCountingWorks(context));
    // A tunnel carries arbitrary traffic for a long time: no TLS-level idle cut, the relay's own
    // idle timeout applies once the tunnel is up.
    const server = net.createServer({ allowHalfOpen: true }, (raw) => {
      if (!this.onRawConnection(raw)) return;
      acceptTls(raw, context, this.opts.handshakeMs, (a) => {
        this.accepted.set(a.socket, { fd: socketFd(raw), tls: a });
        this.onSecure(a.socket);
      }, (err) => {
        this.metrics.refused.add(1, { reason: 'tls' });
        this.opts.log.debug(`TLS handshake from ${raw.remoteAddress} failed: ${errorCode(err)}`);
      });
    });
    this.server = server;
    const native = loadNative().mod;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      if (native && native.supported().mptcp) {
        const family = net.isIPv6(this.opts.host) ? 6 : 4;
        const fd = native.listenFd({ host: this.opts.host, port: this.opts.port, dualStack: family === 6 && this.opts.host === '::' });
        server.listen({ fd }, () => resolve());
      } else {
        server.listen(this.opts.port, this.opts.host, () => resolve());
      }
    });
    if (this.opts.metrics) {
      try {
        this.metricsServer = await this.metrics.serve(this.opts.metrics.host, this.opts.metrics.port);
      } catch (err) {
        // The metrics are for the operator, the relay is for its users: a taken metrics port (a
        // second relay on the same host) must not keep the relay from serving.
        this.metricsError = err;
      }
    }
    return server.address() as net.AddressInfo;
  }

  /** The fds of client connections whose tunnel is up (their MPTCP sockets, under TLS). */
  tunnelFds(): number[] {
    return [...this.activeTunnels];
  }

  /** Why the metrics listener did not start (the relay serves anyway), or null. */
  metricsError: unknown = null;

  metricsAddress(): net.AddressInfo | null {
    return (this.metricsServer?.address() as net.AddressInfo | null) ?? null;
  }

  async stop(): Promise<void> {
    const closing = this.server ? new Promise<void>((r) => this.server!.close(() => r())) : Promise.resolve();
    for (const s of this.sockets) s.destroy();
    this.metricsServer?.close();
    await closing;
  }

  /** Counts and limits a client connection; false if it was refused (and destroyed). */
  private onRawConnection(raw: net.Socket): boolean {
    // Without it Nagle holds the 200 and every small TLS record behind the previous one's ACK.
    raw.setNoDelay(true);
    this.metrics.connections.add(1);
    this.sockets.add(raw);
    this.clients++;
    const who = raw.remoteAddress ?? '?';
    const n = (this.perClient.get(who) ?? 0) + 1;
    this.perClient.set(who, n);
    fixReceiveBuffer(socketFd(raw));
    raw.once('close', () => {
      this.sockets.delete(raw);
      this.clients--;
      const left = (this.perClient.get(who) ?? 1) - 1;
      if (left <= 0) this.perClient.delete(who);
      else this.perClient.set(who, left);
    });
    raw.on('error', () => {});
    if (this.clients > this.opts.maxConnections || n > this.opts.maxPerClient) {
      // Refused before TLS: nothing may be spent on a client over its limit.
      this.metrics.refused.add(1, { reason: 'limit' });
      this.opts.log.warn(`refusing ${who}: ${n > this.opts.maxPerClient ? 'per-client' : 'total'} connection limit reached`);
      raw.destroy();
      return false;
    }
    return true;
  }

  private onSecure(s: tls.TLSSocket): void {
    s.on('error', () => {});
    const reader = new HeadReader();
    // The TLS handshake itself is bounded by tls.Server's handshakeTimeout; from here on the
    // client may be a warm pooled connection that sends its CONNECT much later. Once its first
    // bytes arrived, the rest of the head must follow within handshakeMs (no slow-loris heads).
    const wait = Math.max(this.opts.handshakeMs, this.opts.requestWaitMs ?? 60_000);
    let timer = setTimeout(() => {
      this.metrics.refused.add(1, { reason: 'handshake' });
      s.destroy();
    }, wait);
    let started = false;
    const onData = (chunk: Buffer): void => {
      if (!started) {
        started = true;
        clearTimeout(timer);
        timer = setTimeout(() => {
          this.metrics.refused.add(1, { reason: 'handshake' });
          s.destroy();
        }, this.opts.handshakeMs);
      }
      let head: Head | null;
      try {
        head = reader.push(chunk);
      } catch (err) {
        clearTimeout(timer);
        s.off('data', onData);
        this.refuse(s, errorCode(err) === 'EHEADTOOBIG' ? 431 : 400, errorCode(err), errorMessage(err));
        return;
      }
      if (!head) return;
      clearTimeout(timer);
      s.off('data', onData);
      s.pause();
      void this.handleRequest(s, head);
    };
    s.on('data', onData);
  }

  private refuse(s: tls.TLSSocket, status: number, code: string, message: string, headers: Record<string, string> = {}): void {
    s.end(relayResponse(status, code, message, headers));
    setTimeout(() => s.destroy(), 2000).unref();
  }

  private authorized(head: Head): boolean {
    const got = Buffer.from(head.headers.get('proxy-authorization') ?? '');
    return got.length === this.expectedAuth.length && crypto.timingSafeEqual(got, this.expectedAuth);
  }

  private async handleRequest(s: tls.TLSSocket, head: Head): Promise<void> {
    const [method, target, version] = head.startLine.split(' ');
    // Authentication comes first, so that nothing about the relay's behaviour leaks without it.
    if (!this.authorized(head)) {
      this.metrics.authFailures.add(1);
      this.opts.log.warn(`authentication failed from ${s.remoteAddress}`);
      return this.refuse(s, 407, 'EAUTH', 'proxy authentication required');
    }
    if (method !== 'CONNECT' || !/^HTTP\/1\.[01]$/.test(version ?? '')) {
      return this.refuse(s, 405, 'EMETHOD', 'only CONNECT is supported');
    }
    const dest = parseAuthority(target ?? '');
    if (!dest) return this.refuse(s, 400, 'EBADDEST', `bad CONNECT target '${target}'`);
    if (isSpeedTarget(dest.host, dest.port)) {
      if (!this.speed) return this.refuse(s, 403, 'ESPEEDOFF', 'speed tests are turned off on this relay (braid relay --speed-test off)');
      return this.speed.serve(s, (s.remoteAddress ?? '?').replace(/^::ffff:/i, ''), head.rest);
    }

    const literal = net.isIP(dest.host);
    if (literal) {
      const refusal = this.opts.policy.check(dest.host);
      if (refusal) return this.policyRefusal(s, refusal);
    }
    let upstream: net.Socket;
    try {
      const result = await this.dialer.dial({ host: dest.host, port: dest.port });
      upstream = result.socket;
    } catch (err) {
      const code = errorCode(err);
      if (err instanceof PolicyRefusal) return this.policyRefusal(s, { reason: err.reason, message: err.message });
      this.metrics.dialErrors.add(1, { code });
      this.opts.log.debug(`dial ${dest.host}:${dest.port} failed: ${code}`);
      return this.refuse(s, dialStatus(code), code, `cannot reach ${dest.host}:${dest.port}: ${code}`);
    }
    if (s.destroyed) {
      upstream.destroy();
      return;
    }
    this.sockets.add(upstream);
    upstream.once('close', () => this.sockets.delete(upstream));
    upstream.on('error', () => {});
    upstream.setNoDelay(true);
    this.metrics.tunnels.add(1);
    this.metrics.active.add(1);
    const conn = this.accepted.get(s);
    const fd = conn?.fd ?? null;
    if (fd !== null) this.activeTunnels.add(fd);
    // A client that promises never to ask for a KeyUpdate (SEAL_HEADER) gets its download sealed
    // by the addon: Node's records under the server's secret are the tickets and the 200 (one
    // record), so the addon goes on from there, once the 200 is written.
    const keys = this.sealDownloads && head.headers.get(SEAL_HEADER) === '1' ? conn?.tls.download : null;
    if (keys && fd !== null) {
      const written = await new Promise<boolean>((resolve) => s.write(relayResponse(200), (err) => resolve(!err)));
      if (written && !s.destroyed) markSealable(s as unknown as net.Socket, fd, keys, conn!.tls.tickets() + 1);
    } else {
      s.write(relayResponse(200));
    }
    this.opts.log.debug(`CONNECT ${dest.host}:${dest.port} from ${s.remoteAddress}`);
    if (head.rest.length) {
      upstream.write(head.rest);
      this.metrics.bytes.add(head.rest.length, { direction: 'up' });
    }
    const result = await pump(s as unknown as net.Socket, upstream, {
      idleMs: this.opts.idleMs,
      maxQueuedUp: RELAY_UPLOAD_QUEUE,
      onUp: (n) => this.metrics.bytes.add(n, { direction: 'up' }),
      onDown: (n) => this.metrics.bytes.add(n, { direction: 'down' }),
      onSealed: () => this.metrics.sealed.add(1),
      onNudge: () => this.metrics.nudges.add(1),
    });
    if (result.reason !== 'done') this.opts.log.debug(`tunnel to ${dest.host}:${dest.port} ended before both sides finished (${describeEnd(result)})`);
    this.metrics.active.add(-1);
    if (fd !== null) this.activeTunnels.delete(fd);
  }

  private countSubflows(): void {
    const native = loadNative().mod;
    const byCount = new Map<number, number>();
    for (const fd of this.activeTunnels) {
      let n = 0;
      try {
        const info = native?.socketInfo(fd);
        if (info && info.mptcp && !info.fallback) n = info.subflows.length;
      } catch {
        continue; // closed between the tunnel ending and this scrape
      }
      byCount.set(n, (byCount.get(n) ?? 0) + 1);
    }
    this.metrics.subflows.clear();
    for (const [n, count] of byCount) this.metrics.subflows.set(count, { subflows: String(n) });
  }

  /** The reason travels as a stable code (X-Braid-Reason) so that the client can tell its user why. */
  private policyRefusal(s: tls.TLSSocket, refusal: Refusal): void {
    this.metrics.refused.add(1, { reason: 'policy' });
    this.opts.log.warn(`refused destination: ${refusal.message}`);
    this.refuse(s, 403, 'EPOLICY', refusal.message, { 'X-Braid-Reason': refusal.reason });
  }

  /** Resolves once and filters, so the addresses checked are the addresses dialled (no rebinding). */
  private async resolveAllowed(host: string): Promise<ResolvedAddress[]> {
    const all = await dns.promises.lookup(host, { all: true, verbatim: true });
    const ok: ResolvedAddress[] = [];
    let refused: Refusal | null = null;
    for (const a of all) {
      const refusal = this.opts.policy.check(a.address);
      if (refusal) refused = refusal;
      else ok.push({ address: a.address, family: a.family === 6 ? 6 : 4 });
    }
    if (ok.length === 0 && refused) throw new PolicyRefusal(`${host}: ${refused.message}`, refused.reason);
    return ok;
  }
}
