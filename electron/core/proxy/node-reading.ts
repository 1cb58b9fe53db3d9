/**
 * Taking a socket's reading away from Node for one of the addon's pumps (splice-tunnel.ts,
 * seal-tunnel.ts), and giving it back when the pump cannot start. Node's internals used: the
 * handle's readStop() and the readable state's `ended` (the fd comes from ../socket-fd.ts).
 */
import type net from 'node:net';
import { socketFd } from '../socket-fd';

type RawSocket = net.Socket & {
  _handle?: { readStop?: () => number; reading?: boolean } | null;
  encrypted?: boolean;
  _readableState?: { ended?: boolean };
};

/**
 * Whether the addon could read this socket in Node's place: a plain (not TLS) socket with an fd,
 * open, whose EOF Node has not read yet (else the pump would never see it).
 */
export function addonCanRead(s: net.Socket): boolean {
  const r = s as RawSocket;
  if (r.encrypted || r.destroyed || socketFd(r) === null || !r._handle?.readStop) return false;
  return !(r._readableState?.ended || r.readableEnded);
}

/**
 * Stops Node reading the socket, for good unless given back: nothing in Node may read it from here,
 * the bytes are the pump's. What Node had already read stays in the stream, for read().
 */
export function takeReading(s: net.Socket): void {
  const r = s as RawSocket;
  r.pause();
  r._handle!.readStop!();
  if (r._handle) r._handle.reading = false;
  r._read = () => {};
}

/** Node may read the socket again (resume() starts it). */
export function giveReadingBack(s: net.Socket): void {
  delete (s as { _read?: unknown })._read;
}
