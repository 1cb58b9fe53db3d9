/**
 * Hands a plain tunnel (no TLS on either side) that carries bulk data to the kernel: the addon's
 * splice pump (native/src/splice.cc) moves its bytes socket → pipe → socket, never copying them
 * into JavaScript. Measured (same namespaces, interleaved, 1 GB downloads through `braid up`):
 * 0.51–0.61 CPU s/GB against 0.81–1.05 for the JavaScript pump.
 *
 * Which tunnels: a spliced tunnel holds six more descriptors (two duplicates, two pipes), and the
 * connection limit is sized from the open-file limit at two per connection (fd-limit.ts). So a
 * tunnel is handed over only once it has moved SPLICE_AFTER_BYTES (the many short or idle ones never
 * are), at most MAX_SPLICED at once (their descriptors come out of fd-limit.ts's reserve), and a
 * hand-over that cannot get its descriptors (EMFILE) leaves the tunnel on the JavaScript pump.
 *
 * The hand-over keeps what the JavaScript pump guarantees:
 * - order and integrity: Node stops reading from the kernel first (readStop), whatever it had
 *   already read is written on, and the pump starts only once Node has nothing queued either way;
 * - half-close: the native pump turns one side's EOF into shutdown(SHUT_WR) on the other, and says
 *   so, so that a client's FIN still reaches the client-gone check (client-gone.ts listens for 'end');
 * - backpressure: the pump holds at most one pipe (1 MiB) per direction;
 * - counts: bytes moved are read from the pump every COUNT_MS (count-poll.ts).
 */
import type net from 'node:net';
import { loadNative } from './native';
import type { SpliceEnd } from '../native/splice';
import { trackCounts, untrackCounts } from './count-poll';
import { socketFd } from '../socket-fd';
import { addonCanRead, giveReadingBack, takeReading } from './node-reading';

export const SPLICE_AFTER_BYTES = 1024 * 1024;
export const MAX_SPLICED = 16;

export interface SplicedTunnel {
  /** Ends it now (the caller destroys the sockets); the end hook still runs once, if it started. */
  stop(): void;
}

export interface SpliceHooks {
  /** bytes moved since the last call, per direction (activity: resets the idle clock) */
  moved(up: number, down: number): void;
  /** the pump is running: the caller's stream listeners must be off the sockets by now */
  started(): void;
  /** the hand-over could not start; the sockets are readable by Node again and nothing was lost */
  declined(): void;
  /** the client's EOF was read (its 'end', as the JavaScript pump would have seen it) */
  clientEof(): void;
  end(result: SpliceEnd): void;
}

let spliced = 0;

/** Whether the splice pump can take these two sockets as they are now. */
export function spliceable(a: net.Socket, b: net.Socket): boolean {
  if (spliced >= MAX_SPLICED || process.env.BRAID_SPLICE === '0') return false;
  if (!loadNative().mod) return false;
  // Both must be readable by the addon, and neither may have sent its FIN yet (the pump writes on).
  for (const s of [a, b]) if (!addonCanRead(s) || s.writableEnded) return false;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return (require('../native/splice') as typeof import('../native/splice')).spliceAvailable();
  } catch {
    return false;
  }
}

/**
 * Stops Node reading both sockets, lets the caller's 'data' listeners write on what it had read,
 * waits until nothing is queued in userland, then starts the splice pump (hooks.started) or, when
 * it cannot, gives the sockets back to Node (hooks.declined).
 */
export function spliceTunnel(client: net.Socket, upstream: net.Socket, hooks: SpliceHooks): SplicedTunnel {
  const sockets = [client, upstream];
  spliced++;
  for (const s of sockets) takeReading(s);
  // What Node had already read goes on through the caller's 'data' listener: read() emits 'data'
  // for what it returns, paused or not, so writing it here as well would send it twice.
  for (const src of sockets) while (src.read() !== null);
  let stopped = false;
  let released = false;
  let handle: { stats(): { up: number; down: number } | undefined; stop(): void } | null = null;
  let counted = { up: 0, down: 0 };
  const release = (): void => {
    if (released) return;
    released = true;
    spliced--;
  };
  const entry = {
    poll: (): void => {
      const s = handle?.stats();
      if (!s || (s.up === counted.up && s.down === counted.down)) return;
      hooks.moved(s.up - counted.up, s.down - counted.down);
      counted = s;
    },
  };
  const start = (): void => {
    if (stopped || handle || released) return;
    if (client.writableLength > 0 || upstream.writableLength > 0) return;
    if (client.destroyed || upstream.destroyed) return;
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { spliceStart } = require('../native/splice') as typeof import('../native/splice');
    try {
      handle = spliceStart(socketFd(client)!, socketFd(upstream)!, (end) => {
        untrackCounts(entry);
        release();
        if (end.up !== counted.up || end.down !== counted.down) hooks.moved(end.up - counted.up, end.down - counted.down);
        counted = { up: end.up, down: end.down };
        hooks.end(end);
      }, (direction) => {
        if (direction === 'up') hooks.clientEof();
      });
    } catch {
      // Out of descriptors (or the like): Node reads them again, the JavaScript pump carries on.
      release();
      for (const s of sockets) giveReadingBack(s);
      hooks.declined();
      return;
    }
    trackCounts(entry);
    hooks.started();
  };
  // An empty write's callback runs once everything queued before it is flushed ('drain' is only
  // emitted after a write that returned false).
  for (const s of sockets) if (s.writableLength > 0) s.write(Buffer.alloc(0), start);
  start();
  return {
    stop: () => {
      if (stopped) return;
      stopped = true;
      if (handle) handle.stop();
      else release();
    },
  };
}
