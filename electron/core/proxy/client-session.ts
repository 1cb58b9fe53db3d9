/**
 * One client connection of the local proxy from accept to close: the handshake timeout, the
 * protocol chosen by the first byte, the abort signal for its dials, the outbound sockets it owns.
 *
 * A proxy holds thousands of these at once, mostly idle, so the state is one object and its socket
 * listeners are functions shared by every connection (each finds its session through the socket)
 * instead of a set of closures per connection.
 */
import type net from 'node:net';
import type { BraidConfig } from '../config/schema';
import { errorMessage } from '../errors';
import type { Upstream } from './dialer';
import { handleHttp } from './http-proxy';
import { replyAndClose, type Logger, type Session } from './session';
import { handleSocks5 } from './socks5';
import type { TrackedConnection } from './tracker';

/** What a session needs from the server that accepted it. */
export interface SessionHost {
  readonly config: BraidConfig;
  readonly dialer: Upstream;
  readonly log: Logger;
  /** Registers a socket so that the server's stop() closes it. */
  track(socket: net.Socket): void;
  /** Called once when the client's socket has closed. */
  clientClosed(): void;
  /** Takes over a connection redirected by nftables (transparent mode): no protocol byte to read. */
  transparent(session: ClientSession): void;
}

/** SOCKS4 request rejected (RFC-less but universal): VN=0, CD=0x5B, port and address unused. */
const SOCKS4_REJECT = Buffer.from([0x00, 0x5b, 0, 0, 0, 0, 0, 0]);

const SESSION = Symbol('braid.session');
type SessionSocket = net.Socket & { [SESSION]?: ClientSession };

export class ClientSession implements Session {
  readonly config: BraidConfig;
  readonly dialer: Upstream;
  readonly log: Logger;
  private handshakeTimer: NodeJS.Timeout | null;
  private gone: AbortController | null = null;
  private dialsPending = 0;
  /** Outbound sockets: the client's end is the connection's end, none outlives it. */
  private upstream: net.Socket | net.Socket[] | null = null;

  constructor(private readonly host: SessionHost, readonly socket: net.Socket, readonly conn: TrackedConnection | null, kind: 'proxy' | 'transparent' = 'proxy') {
    this.config = host.config;
    this.dialer = host.dialer;
    this.log = host.log;
    (socket as SessionSocket)[SESSION] = this;
    socket.once('close', onClientClose);
    this.handshakeTimer = setTimeout(onHandshakeTimeout, this.config.timeouts.handshakeMs, this);
    if (kind === 'transparent') {
      host.transparent(this);
      return;
    }
    // EOF before the first byte: nothing to answer, and a half-open socket would linger.
    socket.once('end', onEarlyEnd);
    socket.once('data', onFirstData);
  }

  /**
   * Aborted when the client goes (stop() destroys every socket, so shutdown too). Made only while a
   * dial is pending: most of a connection's life has none, and one per connection would be kept.
   */
  get signal(): AbortSignal {
    if (!this.gone) {
      this.gone = new AbortController();
      if (this.socket.destroyed) this.gone.abort();
    }
    return this.gone.signal;
  }

  dialStarted(): void {
    this.dialsPending++;
  }

  dialSettled(): void {
    // The dialer removed its listener from the signal; nothing else needs it until the next dial.
    if (--this.dialsPending === 0 && !this.socket.destroyed) this.gone = null;
  }

  handshakeDone(): void {
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
  }

  adoptUpstream(up: net.Socket): void {
    if (this.socket.destroyed) {
      up.destroy();
      return;
    }
    this.host.track(up);
    const cur = this.upstream;
    if (cur === null || (!Array.isArray(cur) && cur.destroyed)) this.upstream = up;
    else this.upstream = [...(Array.isArray(cur) ? cur : [cur]).filter((s) => !s.destroyed), up];
  }

  /** @internal the first byte decides the protocol */
  dispatch(first: Buffer): void {
    const socket = this.socket;
    socket.off('end', onEarlyEnd);
    try {
      const b = first[0];
      if (b === 0x05) return handleSocks5(this, first);
      if (b >= 0x41 && b <= 0x5a) return handleHttp(this, first);
      if (b === 0x04) return replyAndClose(socket, SOCKS4_REJECT);
      replyAndClose(socket);
    } catch (err) {
      this.log.warn(`internal error on new connection: ${errorMessage(err)}`);
      socket.destroy();
    }
  }

  /** @internal */
  closed(): void {
    this.gone?.abort();
    this.handshakeDone();
    const up = this.upstream;
    this.upstream = null;
    if (Array.isArray(up)) for (const s of up) s.destroy();
    else up?.destroy();
    this.conn?.close();
    this.host.clientClosed();
  }
}

// The listeners, shared by every session: `this` is the client socket that emitted.
function onClientClose(this: SessionSocket): void {
  this[SESSION]?.closed();
}
function onEarlyEnd(this: SessionSocket): void {
  this.destroy();
}
function onFirstData(this: SessionSocket, first: Buffer): void {
  this[SESSION]?.dispatch(first);
}
function onHandshakeTimeout(session: ClientSession): void {
  const s = session.socket;
  session.log.debug(`${s.remoteAddress}:${s.remotePort}: handshake timeout`);
  s.destroy();
}
