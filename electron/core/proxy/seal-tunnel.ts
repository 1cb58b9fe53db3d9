/**
 * One direction of a tunnel through the relay sealed by the addon (native/src/seal.cc): the bytes
 * one side sends go from its socket straight into TLS 1.3 records on the relay connection's socket,
 * never through JavaScript or Node's TLS. Node keeps the handshake, the certificate check and the
 * other direction. Both ends of the relay connection use it for what they send:
 * - the relay client (relay/client.ts) seals the upload: its client's application traffic secret
 *   comes from Node's own handshake ('keylog'), and it marks a connection sealable when the CONNECT
 *   answer came: by then Node has sent exactly one application record, the CONNECT request;
 * - the relay (relay/server.ts, relay/tls-accept.ts) seals the download: the server's secret from
 *   'keylog', and the records Node sent are the session tickets it counted plus the 200.
 * Anything else Node writes to the stream before the pump starts would move that count on, so the
 * pump seals only a stream with nothing written since the mark; any other stays in Node's TLS.
 * Measured on unshaped 1 GB transfers through the relay: see the README's performance section.
 *
 * The hand-over keeps what the JavaScript pump guarantees:
 * - order and integrity: Node stops reading the sealed side first, and what it had read (and the
 *   bytes the handler read before the tunnel) is sealed first;
 * - half-close: that side's EOF becomes close_notify and a FIN on the relay connection, exactly
 *   what TLSSocket.end() sends, and is told on as the side's 'end' (client-gone.ts listens for it);
 * - backpressure: at most one read's records (256 KiB) wait for the relay connection's socket;
 * - counts: read from the addon every COUNT_MS (count-poll.ts).
 * It costs no descriptor (the addon watches the sockets' own fds through one shared epoll).
 */
import type net from 'node:net';
import { SEAL_SUITES, type SealEnd, type SealHandle, type SealSuite } from '../native/seal';
import { trackCounts, untrackCounts } from './count-poll';
import { loadNative } from './native';
import { socketFd } from '../socket-fd';
import { addonCanRead, giveReadingBack, takeReading } from './node-reading';

export interface SealKeys {
  suite: SealSuite;
  /** the sending end's application traffic secret */
  secret: Buffer;
}

interface Sealable extends SealKeys {
  fd: number;        // of the relay connection's socket (under the TLS stream)
  seq: number;       // records already sent under the secret
  written: number;   // the TLS stream's bytesWritten when marked
}

export interface SealedStream {
  /** Ends it now (the caller destroys the sockets); the end hook runs with 'stopped'. */
  stop(): void;
  /** Sends one record with no data on the relay connection (ack-nudge.ts); false when it cannot now. */
  nudge(): boolean;
}

export interface SealHooks {
  /** plaintext bytes sealed and sent since the last call (activity: resets the idle clock) */
  moved(bytes: number): void;
  /** the sealed side's EOF was read */
  readerEof(): void;
  end(result: SealEnd): void;
  /** sealing could not start: the side is readable by Node again; `head` is still to be sent */
  declined(head: Buffer): void;
}

const SEALABLE = Symbol('braid.sealable');
type Marked = net.Socket & { [SEALABLE]?: Sealable };
/** The sending keys of a TLS 1.3 handshake, when the addon can seal with its suite. */
export function sealKeys(suite: string | undefined, secret: Buffer | null): SealKeys | null {
  if (!secret || !suite || !(SEAL_SUITES as readonly string[]).includes(suite)) return null;
  return { suite: suite as SealSuite, secret };
}

/** A relay connection's mark: `tls` has sent `seq` records under `keys`, over `fd`. */
export function markSealable(tls: net.Socket, fd: number, keys: SealKeys, seq: number): void {
  (tls as Marked)[SEALABLE] = { ...keys, fd, seq, written: tls.bytesWritten };
}

function sealBinding(): typeof import('../native/seal') | null {
  if (!loadNative().mod) return null;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const mod = require('../native/seal') as typeof import('../native/seal');
    return mod.sealAvailable() ? mod : null;
  } catch {
    return null;
  }
}

/** Whether this process can seal at all: not turned off (BRAID_SEAL=0), and an addon that passes its self-check. */
export function sealingAvailable(): boolean {
  return process.env.BRAID_SEAL !== '0' && sealBinding() !== null;
}

/**
 * What sealing `reader`'s bytes onto the marked `tls` stream needs, when it can be done as things
 * are now; asked once, at the pump's start (the mark is taken either way).
 */
export function takeSealable(reader: net.Socket, tls: net.Socket): Sealable | null {
  const mark = (tls as Marked)[SEALABLE];
  if (!mark) return null;
  delete (tls as Marked)[SEALABLE];
  if (tls.bytesWritten !== mark.written || tls.writableLength > 0 || tls.writableEnded || tls.destroyed) return null;
  return addonCanRead(reader) && sealingAvailable() ? mark : null;
}

/**
 * Stops Node reading `reader` and starts the addon sealing its bytes, `early` and what Node had
 * already read first. The reader must have no 'data' listener: its buffered bytes are taken here.
 */
export function sealStream(reader: net.Socket, s: Sealable, early: Buffer | null, hooks: SealHooks): SealedStream | null {
  takeReading(reader);
  const parts: Buffer[] = early?.length ? [early] : [];
  for (let chunk: Buffer | null; (chunk = reader.read() as Buffer | null) !== null;) parts.push(chunk);
  const head = Buffer.concat(parts);
  const mod = sealBinding();
  let counted = 0;
  let handle: SealHandle | null = null;
  const entry = {
    poll: (): void => {
      const st = handle?.stats();
      if (!st || st.sealed === counted) return;
      hooks.moved(st.sealed - counted);
      counted = st.sealed;
    },
  };
  try {
    if (!mod) throw new Error('no seal');
    handle = mod.sealStart(socketFd(reader)!, s.fd, { suite: s.suite, secret: s.secret, seq: s.seq }, head, (end) => {
      untrackCounts(entry);
      if (end.sealed !== counted) hooks.moved(end.sealed - counted);
      counted = end.sealed;
      hooks.end(end);
    }, () => hooks.readerEof());
  } catch {
    giveReadingBack(reader);
    hooks.declined(head);
    return null;
  }
  trackCounts(entry);
  return {
    stop: () => handle?.stop(),
    // Best effort, from a timer: a failure here must not become an uncaught exception.
    nudge: () => {
      try {
        return handle?.nudge() ?? false;
      } catch {
        return false;
      }
    },
  };
}
