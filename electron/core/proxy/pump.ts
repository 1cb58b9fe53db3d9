/**
 * The byte pump (the relay *server* is ../relay/): moves bytes both ways between a client and its
 * destination until both directions are finished. Half-close is kept (one side's FIN becomes a FIN on the other side while the reverse direction
 * keeps flowing), backpressure pauses the reading side, any error or the idle timeout destroys both.
 *
 * A proxy holds thousands of mostly idle tunnels, so what one costs while idle matters (the bench's
 * scale section measures it): the state is one object, the socket listeners are functions shared by
 * every tunnel (a listener finds its tunnel through the socket), and idleness is checked by one
 * sweep per idle timeout value rather than a timer per tunnel.
 *
 * The addon can take bytes off this pump: a plain tunnel that carries bulk data goes to the kernel's
 * splice (splice-tunnel.ts), and a tunnel over the relay connection has the direction that goes
 * into TLS sealed as records from the start (seal-tunnel.ts: the upload at the relay client, the
 * download at the relay); at the relay client the download too, opened from its records and written
 * to the client's socket by the addon (open-tunnel.ts), so neither direction passes here. With a
 * sealed direction, a pause in what arrives over the relay connection brings one record with no data
 * out on it (ack-nudge.ts).
 */
import type net from 'node:net';
import { errorCode, errorMessage } from '../errors';
import { AckNudger } from './ack-nudge';
import { openable, pipeOpened, type OpenedPipe } from './open-tunnel';
import { sealStream, takeSealable, type SealedStream } from './seal-tunnel';
import { SPLICE_AFTER_BYTES, spliceable, spliceTunnel, type SplicedTunnel } from './splice-tunnel';

export interface PumpOptions {
  idleMs: number;
  /** bytes queued in userland towards one side before reading from the other pauses (default 256 KiB) */
  maxQueued?: number;
  /**
   * The same towards the destination only (default: maxQueued). The relay raises it: there the
   * client side is an MPTCP socket, and each pause of an MPTCP socket's reader can cost the peer's
   * MPTCP retransmission timeout (200 ms; relay/server.ts, RELAY_UPLOAD_QUEUE).
   */
  maxQueuedUp?: number;
  onUp?: (bytes: number) => void;    // client -> destination
  onDown?: (bytes: number) => void;  // destination -> client
  /**
   * Reading from one side held back because the other side does not take the bytes fast enough
   * ('down': the client reads slower than the destination sends), and released again.
   */
  onHold?: (direction: 'up' | 'down', held: boolean) => void;
  /** counted into directly, with no callback per tunnel (the proxy's connection entry) */
  count?: { bytesUp: number; bytesDown: number; hold?(direction: 'up' | 'down', held: boolean): void };
  /**
   * Let the kernel move the bytes (splice-tunnel.ts) once the tunnel carries bulk data, when neither
   * side is TLS. From then on counts arrive every 200 ms instead of per chunk, and onHold/count.hold
   * are not called (the pump's pipe is bounded; a slow reader shows in the kernel's
   * tcpi_rwnd_limited of its socket).
   */
  splice?: boolean;
  /**
   * Bytes the client sent before the tunnel existed (read by the handler), sent on first and
   * counted as the client's.
   */
  early?: Buffer | null;
  /** the addon took one direction over (seal-tunnel.ts): 'up' at the relay client, 'down' at the relay */
  onSealed?: (direction: 'up' | 'down') => void;
  /** a record with no data went out on the sealed direction after a pause in the other (ack-nudge.ts) */
  onNudge?: () => void;
}

export interface PumpResult {
  reason: 'done' | 'idle' | 'error' | 'closed';
  error?: Error;
}

export const DEFAULT_MAX_QUEUED = 256 * 1024;

/** Why a tunnel ended, for a log line: the reason, and the error's code and message if any. */
export function describeEnd(result: PumpResult): string {
  return result.error ? `${result.reason}: ${errorCode(result.error)} ${errorMessage(result.error)}` : result.reason;
}

const TUNNEL = Symbol('braid.tunnel');
type PumpSocket = net.Socket & { [TUNNEL]?: Tunnel };

class Tunnel {
  last = Date.now();
  finished = false;
  ends = 0;
  /** a setImmediate is pending that uncorks the client (bit 1) / the upstream (bit 2) */
  corked = 0;
  /** reading from the client (bit 1, 'up') / the upstream (bit 2, 'down') is paused for backpressure */
  held = 0;
  readonly maxQueued: number;
  readonly maxQueuedUp: number;
  /** the hand-over to the kernel's splice pump, once asked for */
  spliced: SplicedTunnel | null = null;
  /** bytes moved so far by this pump, until it is handed over (0: not yet asked, -1: asked) */
  movedBeforeSplice = 0;
  /**
   * The direction sealed by the addon (seal-tunnel.ts): `sealFrom` is read by it, its peer is the
   * TLS stream written by it; sealDone once its close_notify and FIN went out.
   */
  sealed: SealedStream | null = null;
  sealFrom: PumpSocket | null = null;
  sealDone = false;
  /** with a sealed direction: watches the other one for pauses (ack-nudge.ts) */
  nudger: AckNudger | null = null;
  /** the download written to the client by the addon (open-tunnel.ts); openDone once its FIN went out */
  opened: OpenedPipe | null = null;
  openDone = false;

  constructor(
    readonly client: PumpSocket,
    readonly upstream: PumpSocket,
    readonly opts: PumpOptions,
    private readonly done: (result: PumpResult) => void,
  ) {
    this.maxQueued = opts.maxQueued ?? DEFAULT_MAX_QUEUED;
    this.maxQueuedUp = opts.maxQueuedUp ?? this.maxQueued;
  }

  peer(s: PumpSocket): PumpSocket {
    return s === this.client ? this.upstream : this.client;
  }

  finish(result: PumpResult): void {
    if (this.finished) return;
    this.finished = true;
    sweeper(this.opts.idleMs).delete(this);
    this.nudger?.stop();
    // Before the sockets: the splice pump holds duplicates of their fds, which would keep them
    // open, and the sealer works on their own fds, which must not be closed under it.
    this.spliced?.stop();
    this.sealed?.stop();
    this.opened?.stop();
    this.client.destroy();
    this.upstream.destroy();
    this.done(result);
  }

  /** Both FINs seen: wait until our own writes are flushed before tearing down, so no tail is lost. */
  maybeDone(): void {
    const flushed = (s: net.Socket): boolean => {
      if (s === this.client && this.opened) return this.openDone;
      return this.sealFrom && s !== this.sealFrom ? this.sealDone : s.writableFinished || s.destroyed;
    };
    if (this.ends === 2 && flushed(this.client) && flushed(this.upstream)) this.finish({ reason: 'done' });
  }

  onData(src: PumpSocket, chunk: Buffer): void {
    this.last = Date.now();
    const dst = this.peer(src);
    const { count } = this.opts;
    if (src === this.client) {
      if (count) count.bytesUp += chunk.length;
      this.opts.onUp?.(chunk.length);
    } else {
      if (count) count.bytesDown += chunk.length;
      this.opts.onDown?.(chunk.length);
    }
    this.nudger?.arrived(chunk.length);
    // write()'s return value is false for any chunk as big as the stream's high-water mark
    // (16 KiB), even when the kernel took it at once, and a TLS socket reports its writes done
    // only on the next loop turn. Pausing on it stopped and restarted reading for every TLS
    // record and left the CPUs a third idle at full speed. What is actually still queued in
    // userland is the measure of backpressure. Corking until the loop's check phase turns the
    // records one TLS read produced into one writev.
    const bit = dst === this.client ? 1 : 2;
    if (!(this.corked & bit)) {
      this.corked |= bit;
      dst.cork();
      setImmediate(uncork, this, bit);
    }
    dst.write(chunk);
    if (this.opts.splice && this.movedBeforeSplice >= 0 && (this.movedBeforeSplice += chunk.length) >= SPLICE_AFTER_BYTES) {
      this.movedBeforeSplice = -1;
      setImmediate(trySplice, this);
    }
    if (dst.writableLength >= (dst === this.upstream ? this.maxQueuedUp : this.maxQueued)) {
      src.pause();
      this.setHeld(src === this.client ? 1 : 2, true);
    }
  }

  /** Bytes the kernel moved (or the hand-over wrote on), into the same counters as onData's. */
  counted(up: number, down: number): void {
    const { count } = this.opts;
    if (up) {
      if (count) count.bytesUp += up;
      this.opts.onUp?.(up);
    }
    if (down) {
      if (count) count.bytesDown += down;
      this.opts.onDown?.(down);
    }
  }

  setHeld(bit: number, held: boolean): void {
    if (((this.held & bit) !== 0) === held) return;
    this.held = held ? this.held | bit : this.held & ~bit;
    const direction = bit === 1 ? 'up' : 'down';
    this.opts.count?.hold?.(direction, held);
    this.opts.onHold?.(direction, held);
  }
}

function uncork(t: Tunnel, bit: number): void {
  t.corked &= ~bit;
  (bit === 1 ? t.client : t.upstream).uncork();
}

// The listeners, shared by every tunnel: `this` is the socket that emitted.
function onData(this: PumpSocket, chunk: Buffer): void {
  this[TUNNEL]?.onData(this, chunk);
}
function onDrain(this: PumpSocket): void {
  const t = this[TUNNEL];
  if (!t) return;
  t.last = Date.now();
  const src = t.peer(this);
  src.resume();
  if (t.held) t.setHeld(src === t.client ? 1 : 2, false);
}
function onEnd(this: PumpSocket): void {
  const t = this[TUNNEL];
  if (!t) return;
  t.peer(this).end();
  if (++t.ends === 2) t.maybeDone();
}
function onFinish(this: PumpSocket): void {
  this[TUNNEL]?.maybeDone();
}
function onError(this: PumpSocket, error: Error): void {
  this[TUNNEL]?.finish({ reason: 'error', error });
}
// A clean close after both FINs may still leave our writes to the other side in flight.
function onClose(this: PumpSocket): void {
  const t = this[TUNNEL];
  if (!t) return;
  if (t.ends === 2) t.maybeDone();
  else t.finish({ reason: 'closed' });
}

/** One sweep per idle timeout value: a tunnel quiet for idleMs is closed within idleMs / 8 after. */
class IdleSweeper {
  private readonly tunnels = new Set<Tunnel>();
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly idleMs: number) {}

  add(t: Tunnel): void {
    this.tunnels.add(t);
    if (!this.timer) {
      this.timer = setInterval(() => this.sweep(), Math.min(30_000, Math.max(50, Math.floor(this.idleMs / 8))));
      this.timer.unref();
    }
  }

  delete(t: Tunnel): void {
    this.tunnels.delete(t);
    if (this.tunnels.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  private sweep(): void {
    const now = Date.now();
    for (const t of this.tunnels) if (now - t.last >= this.idleMs) t.finish({ reason: 'idle' });
  }
}

const sweepers = new Map<number, IdleSweeper>();
function sweeper(idleMs: number): IdleSweeper {
  let s = sweepers.get(idleMs);
  if (!s) sweepers.set(idleMs, (s = new IdleSweeper(idleMs)));
  return s;
}

/** An addon pump's error end as the Error the tunnel ends with: code = errno name, and the syscall. */
function pumpError(r: { code?: string; syscall?: string }, syscall: string): Error {
  return Object.assign(new Error(`${r.syscall ?? syscall} ${r.code ?? 'EIO'}`), { code: r.code ?? 'EIO', syscall: r.syscall });
}

function onSplicedClose(this: PumpSocket): void {
  this[TUNNEL]?.finish({ reason: 'closed' });
}

/** Bulk data on a plain tunnel: from here the kernel moves its bytes, if it can (splice-tunnel.ts). */
function trySplice(t: Tunnel): void {
  if (t.finished || !spliceable(t.client, t.upstream)) {
    t.movedBeforeSplice = 0; // asked again after another SPLICE_AFTER_BYTES
    return;
  }
  t.spliced = spliceTunnel(t.client, t.upstream, {
    moved: (up, down) => {
      t.last = Date.now();
      t.counted(up, down);
    },
    started: () => {
      for (const s of [t.client, t.upstream]) {
        for (const [event, fn] of [['data', onData], ['drain', onDrain], ['end', onEnd], ['finish', onFinish], ['close', onClose]] as const) s.off(event, fn as (...args: unknown[]) => void);
        s.on('close', onSplicedClose);
      }
      // What the JavaScript pump held is the kernel's to hold now.
      t.setHeld(1, false);
      t.setHeld(2, false);
    },
    declined: () => {
      t.spliced = null;
      t.movedBeforeSplice = 0;
      if (!(t.held & 1)) t.client.resume();
      if (!(t.held & 2)) t.upstream.resume();
    },
    // What the JavaScript pump's reader would have seen: the client-gone check listens for it.
    clientEof: () => t.client.emit('end'),
    end: (r) => {
      if (r.reason === 'done') return t.finish({ reason: 'done' });
      if (r.reason === 'stopped') return t.finish({ reason: 'closed' });
      t.finish({ reason: 'error', error: pumpError(r, 'splice') });
    },
  });
}

/** Starts the pump; `done` is called once, when both sockets have been destroyed. */
export function startPump(client: net.Socket, upstream: net.Socket, opts: PumpOptions, done: (result: PumpResult) => void): void {
  const t = new Tunnel(client, upstream, opts, done);
  // Over the relay connection the addon can seal what goes into TLS: the side it comes from is then
  // read by the addon, not by Node (the upload at the relay client, the download at the relay).
  let sealable = takeSealable(client, upstream);
  if (sealable) t.sealFrom = t.client;
  else if ((sealable = takeSealable(upstream, client))) t.sealFrom = t.upstream;
  // And at the relay client, what arrives over it can go from the addon straight to the client.
  const opening = t.sealFrom !== t.upstream && openable(upstream, client);
  for (const s of [t.client, t.upstream]) {
    s[TUNNEL] = t;
    if (s !== t.sealFrom && !(opening && s === t.upstream)) listenForReading(s);
    s.on('drain', onDrain);
    s.on('finish', onFinish);
    s.on('error', onError);
    s.on('close', onClose);
  }
  sweeper(opts.idleMs).add(t);
  // Sealing the client's bytes takes `early` along (the sealer's head, or a declined head).
  const earlyToSealer = sealable !== null && t.sealFrom === t.client;
  if (sealable) {
    startSealing(t, sealable);
    if (t.sealed) opts.onSealed?.(earlyToSealer ? 'up' : 'down');
  }
  if (opening) startOpening(t);
  if (opts.early?.length && !earlyToSealer) t.onData(t.client, opts.early);
  // An EOF that arrived before the pump took over (client sent its request, data and FIN at
  // once) would otherwise never be passed on.
  for (const src of [t.client, t.upstream]) {
    if (src.readableEnded && !(src === t.sealFrom && t.sealed)) {
      t.peer(src).end();
      t.ends++;
    }
  }
  if (t.ends === 2) t.maybeDone();
  // A socket already gone never emits 'close' again.
  if (t.client.destroyed || t.upstream.destroyed) t.finish({ reason: 'closed' });
  if (t.finished) return;
  for (const s of [client, upstream]) if (!(s === t.sealFrom && t.sealed) && !(s === upstream && t.opened)) s.resume();
}

/**
 * An addon pump's end (the sealer's or the opener's): 'done' once its direction's FIN went out
 * (`done` marks it), an error ends the tunnel, 'stopped' was the tunnel's own doing.
 */
function addonEnded(t: Tunnel, r: { reason: string; code?: string; syscall?: string }, syscall: string, done: () => void): void {
  if (r.reason === 'stopped') return;
  if (r.reason !== 'done') return t.finish({ reason: 'error', error: pumpError(r, syscall) });
  done();
  if (++t.ends === 2) t.maybeDone();
}

/** The addon writes the upstream's download to the client from here (open-tunnel.ts). */
function startOpening(t: Tunnel): void {
  t.opened = pipeOpened(t.upstream, t.client, {
    moved: (n) => {
      t.last = Date.now();
      t.counted(0, n);
      t.nudger?.wake();
    },
    end: (r) => addonEnded(t, r, 'recv', () => (t.openDone = true)),
  });
  if (!t.opened) return listenForReading(t.upstream);
  const pipe = t.opened;
  t.nudger?.follow(() => pipe.arrived());
}

function listenForReading(s: PumpSocket): void {
  s.on('data', onData);
  s.on('end', onEnd);
}

/** The addon seals t.sealFrom's bytes onto its peer's socket from here (seal-tunnel.ts). */
function startSealing(t: Tunnel, sealable: NonNullable<ReturnType<typeof takeSealable>>): void {
  const from = t.sealFrom!;
  const up = from === t.client;
  t.sealed = sealStream(from, sealable, up ? t.opts.early ?? null : null, {
    moved: (n) => {
      t.last = Date.now();
      t.counted(up ? n : 0, up ? 0 : n);
    },
    // What the JavaScript pump's reader would have seen: the client-gone check listens for it.
    readerEof: () => {
      if (up) from.emit('end');
    },
    end: (r) => addonEnded(t, r, 'send', () => (t.sealDone = true)),
    declined: (head) => {
      t.sealFrom = null;
      listenForReading(from);
      if (head.length) t.onData(from, head);
    },
  });
  if (!t.sealed) return;
  // What arrives over the relay connection is read by Node, from the other socket.
  const tls = t.peer(from);
  const bit = tls === t.client ? 1 : 2;
  t.nudger = new AckNudger({
    nudge: () => t.sealed?.nudge() ?? false,
    holding: () => (t.held & bit) !== 0 || tls.readableEnded || (t.opened !== null && (t.openDone || t.opened.held())),
    nudged: t.opts.onNudge,
  });
}

export function pump(client: net.Socket, upstream: net.Socket, opts: PumpOptions): Promise<PumpResult> {
  return new Promise<PumpResult>((resolve) => startPump(client, upstream, opts, resolve));
}
