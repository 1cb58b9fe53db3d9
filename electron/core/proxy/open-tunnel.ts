/**
 * The download of a tunnel through the relay written by the addon (native/src/open.cc): the
 * records `braid up` receives are opened by the addon from the end of the handshake
 * (relay/open-tls.ts), and once the pump starts, their plaintext goes from there straight to the
 * application's socket instead of through JavaScript, as the sealer takes the upload (seal-tunnel.ts).
 *
 * The hand-over keeps what the JavaScript pump guarantees:
 * - order: what the addon had pushed into the TLS socket and the pump has not read goes first, and
 *   only a client socket with nothing of Node's still queued is taken (else the pump stays in
 *   JavaScript);
 * - half-close: the relay's close_notify or FIN becomes shutdown(SHUT_WR) on the client's socket,
 *   once everything before it was written;
 * - backpressure: at most one read's plaintext (256 KiB of records) waits for the client's socket;
 *   the addon stops reading the relay connection meanwhile;
 * - counts: read from the addon every COUNT_MS (count-poll.ts); the pause watch (ack-nudge.ts)
 *   reads them on each of its ticks.
 */
import type net from 'node:net';
import type { OpenEnd, OpenHandle } from '../native/open';
import { socketFd } from '../socket-fd';
import { trackCounts, untrackCounts } from './count-poll';

export interface OpenPipeHooks {
  /** plaintext bytes written to the client since the last call (activity: resets the idle clock) */
  moved(bytes: number): void;
  /** once: 'done' after the relay's end was passed on to the client, 'error', or 'stopped' */
  end(result: OpenEnd): void;
}

export interface OpenedPipe {
  /** Ends it now (the caller destroys the sockets); the end hook runs with 'stopped'. */
  stop(): void;
  /** plaintext bytes written to the client so far */
  arrived(): number;
  /** plaintext waits for the client's socket: the pump's reader is holding back, not the network */
  held(): boolean;
}

/** What relay/open-tls.ts keeps on a TLS socket whose records the addon opens. */
export interface OpenedState {
  handle: OpenHandle | null;
  /** set once piped: where onEnd goes from then on (onRead's data and end go nowhere) */
  pipe: ((result: OpenEnd) => void) | null;
}

const OPENED = Symbol('braid.opened');
type Marked = net.Socket & { [OPENED]?: OpenedState };

export function markOpened(tls: net.Socket, state: OpenedState): void {
  (tls as Marked)[OPENED] = state;
}

/** Whether the pump can hand `tls`'s download to the addon, writing it to `to`, as things are now. */
export function openable(tls: net.Socket, to: net.Socket): boolean {
  const st = (tls as Marked)[OPENED];
  if (!st?.handle || st.pipe || tls.readableEnded || tls.destroyed) return false;
  const plain = to as net.Socket & { encrypted?: boolean };
  return !plain.encrypted && socketFd(to) !== null && !to.destroyed && !to.writableEnded && to.writableLength === 0;
}

/**
 * Hands `tls`'s download to the addon, written to `to` from here; null (nothing changed) when it
 * cannot be. `tls` must have no 'data' listener: what it holds unread is taken here.
 */
export function pipeOpened(tls: net.Socket, to: net.Socket, hooks: OpenPipeHooks): OpenedPipe | null {
  const st = (tls as Marked)[OPENED];
  const fd = socketFd(to);
  if (!st?.handle || fd === null) return null;
  const parts: Buffer[] = [];
  for (let chunk: Buffer | null; (chunk = tls.read() as Buffer | null) !== null;) parts.push(chunk);
  const head = Buffer.concat(parts);
  let counted = 0;
  const entry = {
    poll: (): void => {
      const s = st.handle?.stats();
      if (!s || s.written === counted) return;
      hooks.moved(s.written - counted);
      counted = s.written;
    },
  };
  st.pipe = (r) => {
    untrackCounts(entry);
    if (r.written !== counted) hooks.moved(r.written - counted);
    counted = r.written;
    hooks.end(r);
  };
  let ok = false;
  try {
    ok = st.handle.output(fd, head);
  } catch {
    ok = false;
  }
  if (!ok) {
    // Ended meanwhile, or the addon refused the fd: its end (or the socket's) says what happens.
    st.pipe = null;
    if (head.length) tls.unshift(head);
    return null;
  }
  trackCounts(entry);
  return {
    stop: () => st.handle?.stop(),
    arrived: () => st.handle?.stats()?.written ?? counted,
    held: () => st.handle?.stats()?.held ?? false,
  };
}
