/**
 * The relay client's receiving side opened by the addon (native/src/open.cc) instead of Node's TLS:
 * once the handshake is done, Node stops reading the relay connection's socket and the addon reads
 * its records, decrypts them and pushes the plaintext into the TLS socket's readable side. Everything
 * that reads that socket (the CONNECT answer in wire.ts, the pump, the pool's liveness) sees the same
 * stream as before: 'data', pause/resume backpressure, 'end' at close_notify or FIN, an error
 * destroying it. Node's TLS keeps the handshake, the certificate check and the writes (the CONNECT
 * request, the upload when the addon does not seal it, close_notify).
 *
 * Once a tunnel's pump starts, the plaintext goes from the addon straight to the application's
 * socket instead (proxy/open-tunnel.ts), and nothing of the download passes through JavaScript.
 *
 * Why: unshaped downloads through the relay have `braid up` decrypting in Node's TLS as the chain's
 * slowest step, and an MPTCP receiver that lags lets the kernel's sender overshoot the window it
 * announced, so data is dropped and waits for the 200 ms retransmission timer (the README's
 * "missing" stall). Node's TLS makes one JavaScript callback per 16 KiB record and copies each
 * through its memory BIO, and the pump writes each chunk on; the addon reads up to 256 KiB of
 * records per call and writes their plaintext itself.
 *
 * Taken at 'secureConnect', in the same turn as the handshake's last read: the relay sends nothing
 * under the application keys before it has our Finished (its session tickets come after it), so no
 * record of them can have been read by Node yet, and the addon starts at sequence number 0 (it also
 * tries the next three, should Node have read a ticket after all). `BRAID_OPEN=0` leaves the
 * receiving side in Node's TLS (for comparisons).
 */
import type tls from 'node:tls';
import { openAvailable, openStart, type OpenEnd } from '../native/open';
import { SEAL_SUITES, type SealSuite } from '../native/seal';
import { loadNative } from '../proxy/native';
import { giveReadingBack, takeReading } from '../proxy/node-reading';
import { markOpened, type OpenedState } from '../proxy/open-tunnel';

type Internals = tls.TLSSocket & {
  _handle?: { readStop?: () => number } | null;
  _read: (size: number) => void;
  _destroy: (err: Error | null, cb: (err: Error | null) => void) => void;
};

/** Whether this process opens the relay's records in the addon. */
export function openingAvailable(): boolean {
  return process.env.BRAID_OPEN !== '0' && loadNative().mod !== null && openAvailable();
}

function openError(end: OpenEnd): Error {
  const what = end.detail ?? `${end.syscall ?? 'recv'} ${end.code ?? 'EIO'}`;
  return Object.assign(new Error(`relay connection: ${what}`), { code: end.code ?? 'EIO', syscall: end.syscall });
}

/**
 * Takes `socket`'s reading from Node and opens its records in the addon from here, given the
 * relay's application traffic secret; false (Node keeps reading) when that cannot be done.
 */
export function openRelayReading(socket: tls.TLSSocket, fd: number, suite: string | undefined, serverSecret: Buffer | null): boolean {
  const s = socket as Internals;
  if (!serverSecret || !suite || !(SEAL_SUITES as readonly string[]).includes(suite)) return false;
  if (!openingAvailable() || !s._handle?.readStop || s.destroyed) return false;
  takeReading(socket);
  const st: OpenedState = { handle: null, pipe: null };
  try {
    st.handle = openStart(fd, { suite: suite as SealSuite, secret: serverSecret, seq: 0 }, (chunk) => {
      // Piped (proxy/open-tunnel.ts): the addon writes the client's socket; its end comes to onEnd.
      if (st.pipe) return true;
      if (chunk !== null) return socket.push(chunk);
      // As Node's own reading does at EOF: 'end' comes even with nobody reading.
      socket.push(null);
      socket.read(0);
      return false;
    }, (end) => {
      st.handle = null;
      if (st.pipe) st.pipe(end);
      else if (end.reason === 'error') socket.destroy(openError(end));
    });
  } catch {
    // Nothing has been read since the handshake: Node can simply read on.
    giveReadingBack(socket);
    return false;
  }
  s._read = () => st.handle?.resume();
  // Stopped before Node closes the fd, never after.
  const destroy = s._destroy;
  s._destroy = function (this: Internals, err, cb) {
    st.handle?.stop();
    destroy.call(this, err, cb);
  };
  markOpened(socket, st);
  return true;
}
