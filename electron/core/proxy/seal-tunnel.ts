/**
 * A tunnel through the relay whose upload the addon seals (native/src/seal.cc): the client's bytes
 * go from its socket straight into TLS 1.3 records on the relay's socket, never through JavaScript
 * or Node's TLS. Node keeps the handshake, the certificate check and the download direction.
 * Measured on unshaped 1 GB uploads through the relay: see the README's performance section.
 *
 * The record layer needs the keys and the number of records already sent under them. The relay
 * client (relay/client.ts) takes the client's application traffic secret from Node's own handshake
 * ('keylog'), and marks a connection sealable when its CONNECT answer came: by then Node has sent
 * exactly one application record, the CONNECT request. Anything else Node writes to the stream
 * before the pump starts would move that count on, so the pump seals only a stream with nothing
 * written since the mark; any other stays in Node's TLS, as before.
 *
 * The hand-over keeps what the JavaScript pump guarantees:
 * - order and integrity: Node stops reading the client first, and what it had read (and the bytes
 *   the handler read before the tunnel) is sealed first;
 * - half-close: the client's EOF becomes close_notify and a FIN towards the relay, exactly what
 *   TLSSocket.end() sends, and is told on as the client's 'end' (client-gone.ts listens for it);
 * - backpressure: at most one read's records (256 KiB) wait for the relay's socket;
 * - counts: read from the addon every COUNT_MS (count-poll.ts).
 * It costs no descriptor (the addon watches the sockets' own fds through one shared epoll).
 */
import type net from 'node:net';
import { SEAL_SUITES, type SealEnd, type SealSuite } from '../native/seal';
import { trackCounts, untrackCounts } from './count-poll';
import { loadNative } from './native';
import { socketFd } from '../socket-fd';
import { addonCanRead, giveReadingBack, takeReading } from './node-reading';

export interface UploadKeys {
  suite: SealSuite;
  /** the client's application traffic secret */
  secret: Buffer;
}

interface Sealable extends UploadKeys {
  fd: number;        // of the relay's socket (under the TLS stream)
  seq: number;       // records already sent under the secret
  written: number;   // the TLS stream's bytesWritten when marked
}

export interface SealedUpload {
  /** Ends it now (the caller destroys the sockets); the end hook runs with 'stopped'. */
  stop(): void;
}

export interface SealHooks {
  /** plaintext bytes sealed and sent since the last call (activity: resets the idle clock) */
  moved(up: number): void;
  /** the client's EOF was read */
  clientEof(): void;
  end(result: SealEnd): void;
  /** sealing could not start: the client is readable by Node again; `head` is still to be sent */
  declined(head: Buffer): void;
}

const SEALABLE = Symbol('braid.sealable');
type Marked = net.Socket & { [SEALABLE]?: Sealable };
/** The upload keys of a TLS 1.3 handshake, when the addon can seal with its suite. */
export function uploadKeys(suite: string | undefined, secret: Buffer | null): UploadKeys | null {
  if (!secret || !suite || !(SEAL_SUITES as readonly string[]).includes(suite)) return null;
  return { suite: suite as SealSuite, secret };
}

/** The relay client's mark: `tls` has sent `seq` application records under `keys`, over `fd`. */
export function markSealable(tls: net.Socket, fd: number, keys: UploadKeys, seq: number): void {
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

/**
 * What sealing this tunnel's upload needs, when it can be sealed as things are now; asked once, at
 * the pump's start (the mark is taken either way).
 */
export function takeSealable(client: net.Socket, upstream: net.Socket): Sealable | null {
  const mark = (upstream as Marked)[SEALABLE];
  if (!mark) return null;
  delete (upstream as Marked)[SEALABLE];
  if (process.env.BRAID_SEAL === '0') return null;
  if (upstream.bytesWritten !== mark.written || upstream.writableLength > 0 || upstream.writableEnded || upstream.destroyed) return null;
  return addonCanRead(client) && sealBinding() ? mark : null;
}

/**
 * Stops Node reading the client and starts the addon sealing its bytes, `early` and what Node had
 * already read first. The client must have no 'data' listener: its buffered bytes are taken here.
 */
export function sealUpload(client: net.Socket, s: Sealable, early: Buffer | null, hooks: SealHooks): SealedUpload | null {
  takeReading(client);
  const parts: Buffer[] = early?.length ? [early] : [];
  for (let chunk: Buffer | null; (chunk = client.read() as Buffer | null) !== null;) parts.push(chunk);
  const head = Buffer.concat(parts);
  const mod = sealBinding();
  let counted = 0;
  let handle: { stats(): { up: number } | undefined; stop(): void } | null = null;
  const entry = {
    poll: (): void => {
      const st = handle?.stats();
      if (!st || st.up === counted) return;
      hooks.moved(st.up - counted);
      counted = st.up;
    },
  };
  try {
    if (!mod) throw new Error('no seal');
    handle = mod.sealStart(socketFd(client)!, s.fd, { suite: s.suite, secret: s.secret, seq: s.seq }, head, (end) => {
      untrackCounts(entry);
      if (end.up !== counted) hooks.moved(end.up - counted);
      counted = end.up;
      hooks.end(end);
    }, () => hooks.clientEof());
  } catch {
    giveReadingBack(client);
    hooks.declined(head);
    return null;
  }
  trackCounts(entry);
  return { stop: () => handle?.stop() };
}
