/**
 * The receiving end of a relay connection sends one TLS record with no data when a bulk transfer
 * it is receiving pauses: any segment its kernel sends carries the MPTCP DATA_ACK as it is now,
 * which is what ends the kernel's stall below. Used by the pump (pump.ts) for tunnels whose other
 * direction the addon seals (seal-tunnel.ts): the record goes out in that direction with the next
 * record number, and the peer's TLS reads it as nothing: an empty application-data record (RFC 8446
 * 5.4 allows them), or after 16 of those in a row a KeyUpdate, since TLS stacks refuse more than 32
 * empty records in a row (native/src/seal.cc keeps within what OpenSSL and BoringSSL accept).
 *
 * The stall (kernel 6.18, read at both ends during each gap by the bench's stall watch,
 * test/bench/stalls.ts): the sender stops for its MPTCP retransmission timer, about 200 ms, with
 * nothing lost. Its send buffer (or window) is full of data the receiver already holds: the
 * receiver's subflows acknowledged that data at the TCP level while it waited to reach the MPTCP
 * socket (the reader held the socket at the time), so their ACKs carried an older DATA_ACK; once
 * the socket took the data in, nothing sends an ACK (`mptcp_cleanup_rbuf()` sends one only for a
 * window that has doubled, or an ACK TCP already owes). MPTCP sockets refuse TCP_QUICKACK, so the
 * only way userspace has to get an ACK out is to send something.
 *
 * Cost: nothing per chunk but a counter; one shared timer, running only while some tunnel received
 * something in its last ticks; and at most one record (22 or 27 bytes) each time a bulk transfer
 * pauses.
 */

/**
 * How often the shared timer looks. A tick that comes late (the event loop was busy, so nothing was
 * read either) judges nothing.
 */
export const QUIET_TICK_MS = 10;
/** On-time ticks with nothing arrived that make a pause: 20 ms, a tenth of the stall it ends. */
export const QUIET_TICKS = 2;
/**
 * What makes a transfer bulk: this many bytes within the last BULK_WINDOW_TICKS ticks (1 MiB in
 * 40 ms, about 200 Mbit/s). The stall needs megabytes in flight; slower transfers (a shaped link, a
 * video call) and interactive traffic, whose arrivals pause all the time, never pay for a record.
 */
export const BULK_BYTES = 1 << 20;
export const BULK_WINDOW_TICKS = 4;

/** How long a watch on followed counts (follow()) outlasts a pause: 500 ms of quiet ticks. */
export const FOLLOW_QUIET_TICKS = 50;

/** `BRAID_NUDGE=0` turns them off (to compare, as `BRAID_SEAL=0` does for sealing). */
const NUDGING = process.env.BRAID_NUDGE !== '0';

export interface NudgeTarget {
  /**
   * Sends a record with no data; false when it cannot now (ended, closed, records queued, or as
   * many records with no data in a row as a TLS stack accepts: native/src/seal.cc).
   */
  nudge(): boolean;
  /** True while the pump itself holds the reading back (backpressure): that quiet is ours. */
  holding(): boolean;
  /** Told of each record sent. */
  nudged?(): void;
}

export class AckNudger {
  private received = 0;
  private seen = 0;
  /** bytes arrived in each of the last BULK_WINDOW_TICKS ticks, oldest first */
  private readonly recent: number[] = new Array<number>(BULK_WINDOW_TICKS).fill(0);
  private bulk = false;
  private quiet = 0;
  private watched = false;

  /** For a direction the addon writes on (open-tunnel.ts): the bytes arrived so far, read per tick. */
  private total: (() => number) | null = null;

  constructor(private readonly target: NudgeTarget) {}

  /**
   * From here the bytes arrived are read from `total()` on each tick, not told per chunk (the addon
   * moves them); wake() starts the watch when some have moved.
   */
  follow(total: () => number): void {
    this.total = total;
    this.received = total();
  }

  wake(): void {
    if (!this.watched) this.arrived(0);
  }

  /** Bytes arrived over the relay connection. */
  arrived(bytes: number): void {
    this.received += bytes;
    if (this.watched) return;
    this.watched = true;
    this.seen = this.received - bytes;
    this.recent.fill(0);
    this.bulk = false;
    this.quiet = 0;
    watching.add(this);
    if (!timer) {
      lastTick = performance.now();
      timer = setInterval(tick, QUIET_TICK_MS);
      timer.unref();
    }
  }

  /** One tick (`late`: it came late, and judges nothing): true to keep watching. */
  check(late: boolean): boolean {
    if (this.total) this.received = this.total();
    const delta = this.received - this.seen;
    this.seen = this.received;
    this.recent.shift();
    this.recent.push(delta);
    if (delta > 0) {
      this.quiet = 0;
      if (!this.bulk && this.recent.reduce((a, b) => a + b, 0) >= BULK_BYTES) this.bulk = true;
      return true;
    }
    if (late) return true;
    if (++this.quiet < QUIET_TICKS) return true;
    // A pause: after bulk data, one record; either way the watch ends until bytes arrive again.
    if (this.quiet === QUIET_TICKS && NUDGING && this.bulk && !this.target.holding() && this.target.nudge()) this.target.nudged?.();
    // Followed counts wake the watch only every COUNT_MS: it stays a while, so that the next pause
    // of a transfer that goes on is seen too.
    if (this.total && this.quiet < FOLLOW_QUIET_TICKS) {
      this.bulk = false;
      return true;
    }
    this.watched = false;
    return false;
  }

  stop(): void {
    if (!this.watched) return;
    this.watched = false;
    forget(this);
  }
}

const watching = new Set<AckNudger>();
let timer: NodeJS.Timeout | null = null;
let lastTick = 0;

function tick(): void {
  const now = performance.now();
  const late = now - lastTick > 2 * QUIET_TICK_MS;
  lastTick = now;
  for (const n of watching) if (!n.check(late)) forget(n);
}

function forget(n: AckNudger): void {
  watching.delete(n);
  if (watching.size === 0 && timer) {
    clearInterval(timer);
    timer = null;
  }
}
