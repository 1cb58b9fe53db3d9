/**
 * Hands a plain tunnel (no TLS on either side) to the kernel: the addon's splice pump
 * (native/src/splice.cc) moves its bytes socket → pipe → socket, so they are never copied into
 * JavaScript. Measured, that is what the local proxy lacked to reach raw MPTCP unshaped.
 *
 * The hand-over keeps what the JavaScript pump guarantees:
 * - order and integrity: Node stops reading from the kernel first (readStop), whatever it had
 *   already read is written on, and the pump starts only once Node has nothing queued either way;
 * - half-close: the native pump turns one side's EOF into shutdown(SHUT_WR) on the other, and says
 *   so, so that a client's FIN still reaches the client-gone check (client-gone.ts listens for 'end');
 * - backpressure: the pump holds at most one pipe (1 MiB) per direction;
 * - counts: bytes moved are read from the pump every COUNT_MS into the connection's counters, which
 *   the stats engine and the secondary-path logic read.
 * A tunnel where any of that cannot be arranged (TLS, no fd, an EOF Node already consumed) stays
 * on the JavaScript pump.
 */
import type net from 'node:net';
import { loadNative } from './native';
import type { SpliceEnd } from '../native/splice';

/** How often a spliced tunnel's byte counts reach its counters (the secondary-path logic ticks at 250 ms). */
const COUNT_MS = 200;

export interface SplicedTunnel {
  /** Ends it now (the sockets' owner destroys them); the end callback still runs once. */
  stop(): void;
}

export interface SpliceHooks {
  /** bytes moved since the last call, per direction; activity resets the idle clock */
  moved(up: number, down: number): void;
  /** the client's EOF was read (its 'end', as the JavaScript pump would have seen it) */
  clientEof(): void;
  end(result: SpliceEnd): void;
}

type RawSocket = net.Socket & {
  _handle?: { fd?: number; readStop?: () => number; reading?: boolean } | null;
  encrypted?: boolean;
  _readableState?: { ended?: boolean };
};

function fdOf(s: RawSocket): number | null {
  const fd = s._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : null;
}

/** Whether the splice pump can take these two sockets as they are now. */
export function spliceable(a: net.Socket, b: net.Socket): boolean {
  if (process.env.BRAID_SPLICE === '0') return false;
  const native = loadNative().mod;
  if (!native) return false;
  for (const s of [a, b] as RawSocket[]) {
    if (s.encrypted || s.destroyed || fdOf(s) === null || !s._handle?.readStop) return false;
    // Node already read the EOF: it would never be seen again by the pump.
    if (s._readableState?.ended || s.readableEnded || s.writableEnded) return false;
  }
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return (require('../native/splice') as typeof import('../native/splice')).spliceAvailable();
  } catch {
    return false;
  }
}

const live = new Set<{ poll(): void }>();
let timer: NodeJS.Timeout | null = null;

function track(entry: { poll(): void }): void {
  live.add(entry);
  if (!timer) {
    timer = setInterval(() => {
      for (const e of live) e.poll();
    }, COUNT_MS);
    timer.unref();
  }
}

function untrack(entry: { poll(): void }): void {
  live.delete(entry);
  if (live.size === 0 && timer) {
    clearInterval(timer);
    timer = null;
  }
}

/**
 * Stops Node reading both sockets, writes on what it had read, waits until nothing is queued in
 * userland, then starts the splice pump. `written(fromClient, n)` accounts for bytes written on
 * here. A failure to start is reported through hooks.end, as an error.
 */
export function spliceTunnel(client: net.Socket, upstream: net.Socket, hooks: SpliceHooks, written: (fromClient: boolean, n: number) => void): SplicedTunnel {
  const sockets = [client, upstream] as RawSocket[];
  for (const s of sockets) {
    s.pause();
    s._handle!.readStop!();
    if (s._handle) s._handle.reading = false;
    // Nothing in Node may read these sockets again: the bytes belong to the pump from here on.
    s._read = () => {};
  }
  for (const [src, dst] of [[client, upstream], [upstream, client]] as const) {
    for (let chunk = src.read() as Buffer | null; chunk !== null; chunk = src.read() as Buffer | null) {
      written(src === client, chunk.length);
      dst.write(chunk);
    }
  }
  let stopped = false;
  let handle: { stats(): { up: number; down: number } | undefined; stop(): void } | null = null;
  let counted = { up: 0, down: 0 };
  const entry = {
    poll: (): void => {
      const s = handle?.stats();
      if (!s || (s.up === counted.up && s.down === counted.down)) return;
      hooks.moved(s.up - counted.up, s.down - counted.down);
      counted = s;
    },
  };
  const start = (): void => {
    if (stopped) return;
    if (handle || client.writableLength > 0 || upstream.writableLength > 0) return;
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { spliceStart } = require('../native/splice') as typeof import('../native/splice');
    try {
      handle = spliceStart(fdOf(client)!, fdOf(upstream)!, (end) => {
        untrack(entry);
        if (end.up !== counted.up || end.down !== counted.down) hooks.moved(end.up - counted.up, end.down - counted.down);
        counted = { up: end.up, down: end.down };
        hooks.end(end);
      }, (direction) => {
        if (direction === 'up') hooks.clientEof();
      });
    } catch (err) {
      const e = err as { code?: string; syscall?: string };
      hooks.end({ reason: 'error', code: e.code ?? 'EIO', syscall: e.syscall ?? 'spliceStart', up: 0, down: 0 });
      return;
    }
    track(entry);
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
    },
  };
}
