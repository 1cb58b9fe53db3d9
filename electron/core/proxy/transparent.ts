/**
 * A connection nftables redirected to Braid (transparent mode, `braid run`): no handshake, the
 * destination comes from the kernel (SO_ORIGINAL_DST), and it is dialled as a SOCKS request would be,
 * over MPTCP or through the relay.
 *
 * The host name is read from the client's first bytes (TLS SNI, or the HTTP Host header), for the
 * relay's CONNECT line and the connections list. Through a relay the CONNECT waits for it, at most
 * `sniffMs`; dialling directly, the dial to the original address starts at once and the name is
 * only recorded, so a protocol where the server speaks first (SSH, SMTP) is never held up.
 */
import type net from 'node:net';
import { errorCode, errorMessage } from '../errors';
import { originalDestination } from '../native/kernel-socket';
import { sniffHostname } from '../transparent/sniff';
import type { DialResult } from './dialer';
import { closeWhenClientGone } from './client-gone';
import { socketFd } from '../socket-fd';
import { programs } from './program';
import { dialFor, startTunnel, type Session } from './session';

export interface TransparentOptions {
  /** The longest wait for a name before a relay CONNECT goes out with the address instead. */
  sniffMs: number;
  /** Whether the upstream is a relay (which takes names) rather than a direct dial (addresses). */
  viaRelay: boolean;
  /** True for an address:port that is Braid's own listener: a connection made straight to it. */
  isSelf(address: string, port: number): boolean;
  /** Logged when the client is found to have closed its socket after a FIN. */
  onGone?: () => void;
}

const MAX_EARLY = 64 * 1024;
const NAME_ERRORS = new Set(['ENOTFOUND', 'EAI_NONAME', 'EAI_NODATA', 'ENODATA', 'EAI_AGAIN', 'EAI_FAIL']);

export function handleTransparent(session: Session, opts: TransparentOptions): void {
  const { socket, log } = session;
  const fd = socketFd(socket);
  let dst: { address: string; port: number };
  try {
    if (fd === null) throw new Error('no file descriptor');
    dst = originalDestination(fd);
  } catch (err) {
    // Not redirected (someone connected to the port directly): there is nowhere to send it.
    log.debug(`transparent ${socket.remoteAddress}:${socket.remotePort}: no original destination (${errorCode(err)})`);
    socket.destroy();
    return;
  }
  session.handshakeDone();
  const conn = session.conn;
  if (!conn || opts.isSelf(dst.address, dst.port)) {
    if (conn) log.debug(`transparent: refusing a connection to Braid's own listener ${dst.address}:${dst.port}`);
    socket.resetAndDestroy();
    return;
  }
  conn.protocol = 'transparent';
  conn.destination = { host: dst.address, port: dst.port, address: null };
  closeWhenClientGone(socket, { server: dst, onGone: opts.onGone });
  void programs.lookup({ address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 }, dst).then((p) => void (conn.program = p));

  let early: Buffer = Buffer.alloc(0);
  let name: string | null = null;
  let sniffing = true;
  let dialed: DialResult | null = null;
  let failed = false;

  const finishSniff = (): void => {
    if (!sniffing) return;
    sniffing = false;
    clearTimeout(timer);
    socket.off('data', onData);
    socket.off('end', finishSniff);
    socket.pause();
    if (name && conn.destination) conn.destination.host = name;
    if (opts.viaRelay) dial(name ?? dst.address);
    else maybeTunnel();
  };
  const onData = (chunk: Buffer): void => {
    early = early.length === 0 ? chunk : Buffer.concat([early, chunk]);
    const r = sniffHostname(early);
    if (r.kind === 'name') name = r.host;
    if (r.kind !== 'more' || early.length >= MAX_EARLY) finishSniff();
  };
  const maybeTunnel = (): void => {
    if (sniffing || !dialed || failed) return;
    if (socket.destroyed) {
      dialed.socket.destroy();
      return;
    }
    if (name && conn.destination) conn.destination.host = name;
    startTunnel(session, dialed.socket, early);
    early = Buffer.alloc(0);
  };
  const dial = (host: string): void => {
    dialFor(session, host, dst.port).then(
      (res) => {
        dialed = res;
        // Directly, the name is only for the list: the connection never waits for it.
        if (sniffing) finishSniff();
        else maybeTunnel();
      },
      (err) => {
        // A name the relay cannot resolve (a Host header that names nothing public): the address
        // the application connected to is still good.
        if (host !== dst.address && NAME_ERRORS.has(errorCode(err)) && !socket.destroyed) {
          log.debug(`transparent ${host}:${dst.port}: ${errorCode(err)}; dialling ${dst.address} instead`);
          if (conn.destination) conn.destination.host = dst.address;
          name = null;
          dial(dst.address);
          return;
        }
        failed = true;
        log.info(`transparent ${host}:${dst.port}: ${errorCode(err)} ${errorMessage(err)}`);
        // No protocol to carry an error: a reset tells the application at once, as a refusal would.
        if (!socket.destroyed) socket.resetAndDestroy();
      },
    );
  };

  // When the time is up, bytes that arrived meanwhile are read first: timers run before the loop
  // polls for I/O, so a late loop must not take its own lateness for a silent client.
  const timer = opts.viaRelay ? setTimeout(() => setImmediate(finishSniff), opts.sniffMs) : undefined;
  socket.on('data', onData);
  socket.once('end', finishSniff);
  socket.resume();
  // Directly, the original address is what the application chose: dial it while the name is read.
  if (!opts.viaRelay) dial(dst.address);
}
