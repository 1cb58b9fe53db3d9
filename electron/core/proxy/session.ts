/**
 * What a protocol handler (SOCKS5, HTTP) gets for one client connection, and the steps they share:
 * dialling with the connection's lifetime, handing over to the relay, closing after an error reply.
 */
import net from 'node:net';
import type { BraidConfig } from '../config/schema';
import type { DialResult, Upstream } from './dialer';
import type { TrackedConnection } from './tracker';
import { describeEnd, startPump } from './pump';
import { closeWhenClientGone } from './client-gone';
import { socketFd } from '../socket-fd';

export interface Logger {
  info(msg: string): void;
  warn(msg: string): void;
  debug(msg: string): void;
}

export interface Session {
  socket: net.Socket;
  /** null when the connection limit was reached: the handler answers with its "busy" reply. */
  conn: TrackedConnection | null;
  config: BraidConfig;
  dialer: Upstream;
  log: Logger;
  /** Aborted when the client goes away or the server stops: pending dials give up. */
  signal: AbortSignal;
  /** Around each dial: the signal is needed only while one is pending. */
  dialStarted?(): void;
  dialSettled?(): void;
  /** Called once the client has said where it wants to go: the handshake timeout no longer applies. */
  handshakeDone(): void;
  /** Outbound sockets are registered so that ProxyServer.stop() can close them. */
  adoptUpstream(socket: net.Socket): void;
}

/** How long a client may keep a connection open after our error reply before we cut it. */
const LINGER_MS = 2000;

/**
 * Sends a final reply and closes. Reading continues (discarding) until the client closes, because
 * closing a socket with unread input sends RST, which can destroy the reply before the client reads it.
 */
export function replyAndClose(socket: net.Socket, data?: Buffer | string): void {
  if (socket.destroyed) return;
  socket.removeAllListeners('data');
  socket.on('data', () => {});
  socket.on('error', () => {});
  socket.resume();
  if (data === undefined) socket.end();
  else socket.end(data);
  setTimeout(() => socket.destroy(), LINGER_MS).unref();
}

export async function dialFor(session: Session, host: string, port: number): Promise<DialResult> {
  session.dialStarted?.();
  let result: DialResult;
  try {
    result = await session.dialer.dial({ host, port, signal: session.signal });
  } finally {
    session.dialSettled?.();
  }
  session.adoptUpstream(result.socket);
  result.socket.on('error', () => {}); // the relay or handler reports; never an uncaught 'error'
  session.conn?.setUpstream(result.socket, { host, port, address: result.address }, session.dialer.mode === 'mptcp', result.fd);
  if (session.conn && result.route) session.conn.route = { ...result.route, state: result.route.secondary.length ? 'idle' : null };
  return result;
}

/** Hands both sockets to the relay after flushing bytes the client sent before we were connected. */
export function startTunnel(session: Session, upstream: net.Socket, early: Buffer | null): void {
  const conn = session.conn;
  session.socket.removeAllListeners('data');
  session.socket.removeAllListeners('end');
  const clientFd = socketFd(session.socket);
  if (conn && clientFd !== null) conn.clientFd = clientFd;
  // Its 'end' listener went with the handler's.
  closeWhenClientGone(session.socket, { onGone: () => session.log.debug(`connection ${conn?.id ?? '-'}: client closed its socket; closing`) });
  startPump(session.socket, upstream, { idleMs: session.config.timeouts.idleMs, count: conn ?? undefined, splice: true, early }, (r) => {
    if (r.reason === 'idle') session.log.debug(`connection ${conn?.id ?? '-'} closed after ${session.config.timeouts.idleMs} ms idle`);
    else if (r.reason !== 'done') session.log.debug(`connection ${conn?.id ?? '-'} ended before both sides finished (${describeEnd(r)})`);
  });
}
