/**
 * The desktop side of a relay: every proxied connection becomes a CONNECT inside its own MPTCP +
 * TLS 1.3 connection to the relay, the certificate checked against the link's pin.
 *
 * Set-up cost is what users feel (time to first byte), so the TCP and TLS handshakes are taken off
 * the critical path: a small pool of connections is kept established and verified, and a dial
 * only costs the CONNECT round trip. A pooled connection that died meanwhile (relay restarted) is
 * noticed on use and replaced once, so new connections recover without restarting the client.
 *
 * The relay speaks MPTCP, so a connection to it that falls back means a middlebox on that path
 * strips MPTCP. Like any destination that does not answer in MPTCP, it then gets a plain TCP socket
 * (proxy/fallback-memory.ts): one path either way, without the kernel's fallback stall.
 */
import net from 'node:net';
import tls from 'node:tls';
import { BraidError, errorCode, errorMessage } from '../errors';
import { ExplainedDialError } from '../proxy/dial-errors';
import { Dialer, type DialResult, type DialRoute, type DialRouting, type DialTarget } from '../proxy/dialer';
import { FallbackMemory } from '../proxy/fallback-memory';
import { markSealable, type SealKeys } from '../proxy/seal-tunnel';
import type { NativeModule } from '../proxy/native';
import type { Logger } from '../proxy/session';
import { explainRefusal } from './policy';
import { fixReceiveBuffer } from './receive-buffer';
import { tlsToRelay } from './tls-client';
import type { RelayLink } from './share-link';
import { requestConnect, type Head } from './wire';
import { socketFd } from '../socket-fd';

export interface RelayClientOptions {
  link: RelayLink;
  native: NativeModule | null;
  mode: 'mptcp' | 'tcp';
  connectMs: number;
  poolSize: number;        // warm connections kept ready (0 = none)
  poolIdleMs: number;      // a warm connection older than this is replaced (relays cut idle ones)
  log: Logger;
  /** SO_MARK for connections to the relay (transparent mode lets them through by it). */
  mark?: () => number;
  /** The path policy's say in dialling the relay (paths/routing.ts). */
  routing?: () => DialRouting | null;
}

interface Warm {
  socket: tls.TLSSocket;
  raw: net.Socket;
  fd: number | null;  // of the MPTCP socket under TLS, for subflow statistics
  born: number;
  route: DialRoute | undefined;
  upload: SealKeys | null;
}

export type RelayDialResult = DialResult & { raw: net.Socket; fd: number | null };

/** Relay answers that mean "this relay will not serve us", as opposed to "destination failed". */
function relayErrorCode(status: number, header: string | undefined): string {
  if (status === 407) return 'ERELAYAUTH';
  if (header && /^E[A-Z0-9_]+$/.test(header)) return header;
  if (status === 403) return 'EPOLICY';
  if (status === 504) return 'ETIMEDOUT';
  return 'ERELAY';
}

const REFILL_DELAY_MS = 200;
/** Distinct refused destinations remembered so that each is logged once (bounded memory). */
const MAX_REMEMBERED_REFUSALS = 256;

export class RelayDialer {
  private readonly transport: Dialer;
  private readonly pool: Warm[] = [];
  private filling = 0;
  private refillTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private lastFailure: string | null = null;
  private readonly refusalsLogged = new Set<string>();

  constructor(private readonly opts: RelayClientOptions) {
    this.transport = new Dialer({
      mode: opts.mode, connectMs: opts.connectMs, native: opts.native, mark: opts.mark, routing: opts.routing,
      fallbackMemory: opts.mode === 'mptcp' ? new FallbackMemory() : null,
    });
  }

  get mode(): 'mptcp' | 'tcp' {
    return this.opts.mode;
  }

  /** Why the relay is unusable right now (pin, auth, unreachable), or null. */
  get status(): string | null {
    return this.lastFailure;
  }

  start(): void {
    this.refill();
  }

  close(): void {
    this.closed = true;
    if (this.refillTimer) clearTimeout(this.refillTimer);
    this.refillTimer = null;
    for (const w of this.pool.splice(0)) w.socket.destroy();
  }

  async dial(target: DialTarget): Promise<RelayDialResult> {
    // One retry: a pooled connection can be dead without our knowing (relay restarted).
    // The retry opens a fresh connection: the rest of the pool is likely just as dead.
    // Per-destination rules match the destination, not the relay: a warm connection serves only if
    // its first subflow is on a path the destination's rule lets carry it; else one is dialled for it.
    const ruleTarget = { host: net.isIP(target.host) ? null : target.host, address: net.isIP(target.host) ? target.host : null, port: target.port };
    const ruled = this.ruled(ruleTarget);
    for (let attempt = 0; ; attempt++) {
      const fromPool = attempt === 0 && !ruled ? this.takeWarm() : null;
      const warm = fromPool ?? (await this.open(target.signal, ruled ? ruleTarget : undefined));
      try {
        return await this.request(warm, target);
      } catch (err) {
        if (fromPool && errorCode(err) === 'ERELAYCLOSED') continue;
        throw err;
      } finally {
        this.refillSoon();
      }
    }
  }

  /** Whether a rule matches this destination (its connection to the relay is then its own). */
  private ruled(t: { host: string | null; address: string | null; port: number }): boolean {
    const routing = this.opts.routing?.();
    if (!routing) return false;
    const relay = this.opts.link.host;
    if (!net.isIP(relay)) return routing.plan({ host: relay, address: '0.0.0.0', port: this.opts.link.port, ruleTarget: t }).rule !== null;
    return routing.plan({ host: null, address: relay, port: this.opts.link.port, ruleTarget: t }).rule !== null;
  }

  private takeWarm(): Warm | null {
    const now = Date.now();
    while (this.pool.length) {
      const w = this.pool.shift()!;
      if (!w.socket.destroyed && w.socket.readable && now - w.born < this.opts.poolIdleMs) return w;
      w.socket.destroy();
    }
    return null;
  }

  /**
   * A new TCP + TLS handshake costs both ends about a millisecond of CPU, which would land exactly
   * when the application sends its first request over the connection just handed out and delay its
   * first byte. So the pool is topped up a moment later, unless it ran dry.
   */
  private refillSoon(): void {
    if (this.pool.length === 0) return this.refill();
    if (this.refillTimer) return;
    this.refillTimer = setTimeout(() => {
      this.refillTimer = null;
      this.refill();
    }, REFILL_DELAY_MS);
    this.refillTimer.unref();
  }

  private refill(): void {
    if (this.closed) return;
    while (this.pool.length + this.filling < this.opts.poolSize) {
      this.filling++;
      this.open().then(
        (w) => {
          this.filling--;
          if (this.closed) return w.socket.destroy();
          w.socket.on('close', () => {
            const i = this.pool.indexOf(w);
            if (i >= 0) this.pool.splice(i, 1);
          });
          this.pool.push(w);
          // Retire it before the relay's own idle cut would, so a dial never gets a dying one.
          setTimeout(() => {
            const i = this.pool.indexOf(w);
            if (i >= 0) {
              this.pool.splice(i, 1);
              w.socket.destroy();
              this.refill();
            }
          }, this.opts.poolIdleMs).unref();
        },
        () => {
          // The reason is in lastFailure and in the next dial's error; a down relay is not retried
          // in a loop here, the next dial refills.
          this.filling--;
        },
      );
    }
  }

  /** A verified TLS connection to the relay. */
  private async open(signal?: AbortSignal, ruleTarget?: DialTarget['ruleTarget']): Promise<Warm> {
    const { link } = this.opts;
    let dialed: DialResult;
    try {
      dialed = await this.transport.dial({ host: link.host, port: link.port, signal, ruleTarget });
    } catch (err) {
      // No allowed path to it for this destination's rule: a fact about the rule, not the relay.
      if (errorCode(err) === 'ENOPATH') throw err;
      this.fail(`relay ${link.host}:${link.port} unreachable: ${errorCode(err)}`);
      throw new BraidError('ERELAYDOWN', `relay ${link.host}:${link.port} is unreachable (${errorCode(err)})`, { cause: err });
    }
    const raw = dialed.socket;
    raw.setNoDelay(true);
    const fd = socketFd(raw);
    fixReceiveBuffer(fd);
    const { socket, pin, pinOk, upload } = await tlsToRelay(raw, link, this.opts.connectMs, { open: true });
    if (!pinOk) {
      this.fail(`relay certificate pin mismatch: expected ${link.pin}, got ${pin || 'none'}`);
      socket.destroy();
      throw new BraidError('ERELAYPIN', `the relay's certificate does not match the link's pin (expected ${link.pin}, got ${pin || 'none'})`);
    }
    return { socket, raw, fd, born: Date.now(), route: dialed.route, upload };
  }

  private async request(warm: Warm, target: DialTarget): Promise<RelayDialResult> {
    const { socket, raw, fd, route } = warm;
    let answer: { head: Head; status: number };
    try {
      answer = await requestConnect(socket as unknown as net.Socket, target, this.opts.link.secret, { timeoutMs: this.opts.connectMs, signal: target.signal });
    } catch (err) {
      socket.destroy();
      throw err;
    }
    const { head, status } = answer;
    if (status !== 200) {
      const code = relayErrorCode(status, head.headers.get('x-braid-error'));
      if (code === 'ERELAYAUTH') this.fail('the relay refused our secret (wrong or outdated link)');
      socket.destroy();
      if (code === 'EPOLICY') throw this.policyRefusal(target, head.headers.get('x-braid-reason'));
      throw new BraidError(code, `relay: ${head.startLine.slice(9)} for ${target.host}:${target.port} (${code})`);
    }
    this.lastFailure = null;
    // The CONNECT request was the one application record Node sent: the addon may seal from here.
    if (warm.upload && fd !== null) markSealable(socket as unknown as net.Socket, fd, warm.upload, 1);
    // Handed over paused, as every Upstream's sockets are (DialResult in dialer.ts): bytes the
    // destination sends before the consumer's listeners are in place wait instead of being lost.
    if (head.rest.length) socket.unshift(head.rest);
    const remote = raw.remoteAddress ?? this.opts.link.host;
    return { socket: socket as unknown as net.Socket, raw, fd, address: remote, port: raw.remotePort ?? this.opts.link.port, family: net.isIPv6(remote) ? 6 : 4, route };
  }

  /** The user sees the relay's reason in the reply and, once per destination, in the log. */
  private policyRefusal(target: DialTarget, reason: string | undefined): ExplainedDialError {
    const valid = reason !== undefined && /^[a-z][a-z0-9-]{0,31}$/.test(reason) ? reason : undefined;
    const explained = explainRefusal(valid);
    const dest = `${target.host}:${target.port}`;
    if (!this.refusalsLogged.has(dest)) {
      if (this.refusalsLogged.size >= MAX_REMEMBERED_REFUSALS) this.refusalsLogged.clear();
      this.refusalsLogged.add(dest);
      this.opts.log.warn(`${dest}: ${explained}`);
    }
    return new ExplainedDialError('EPOLICY', explained);
  }

  private fail(message: string): void {
    if (this.lastFailure !== message) this.opts.log.warn(message);
    this.lastFailure = message;
  }
}
