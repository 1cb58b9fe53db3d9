/**
 * The receiving end of a relay connection sends one empty TLS record when a bulk transfer it is
 * receiving goes quiet: any segment its kernel sends carries the MPTCP DATA_ACK as it is now, which
 * is what ends the kernel's stall below. Used by the pump (pump.ts) for tunnels whose other
 * direction the addon seals (seal-tunnel.ts): the empty record goes out in that direction, with the
 * next record number, and the peer's TLS reads it as nothing (RFC 8446 5.4 allows empty
 * application-data records; OpenSSL skips them).
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
 * something in its last tick; and at most one empty record (22 bytes) each time a bulk transfer
 * pauses.
 */

/**
 * How often the shared timer looks. A tick with nothing arrived, after activity that reached bulk,
 * is a pause; a tick that comes late (the event loop was busy, so nothing was read either) judges
 * nothing.
 */
export const QUIET_TICK_MS = 10;
/**
 * Bytes in one tick that make the activity since the last pause bulk (64 KiB per 10 ms: about
 * 50 Mbit/s). The stall needs megabytes in flight, so interactive traffic never pays for a record.
 */
export const BULK_BYTES_PER_TICK = 64 * 1024;

/** `BRAID_NUDGE=0` turns them off (to compare, as `BRAID_SEAL=0` does for sealing). */
const NUDGING = process.env.BRAID_NUDGE !== '0';

export interface NudgeTarget {
  /** Sends the empty record; false when it cannot now (ended, closed, or records queued). */
  nudge(): boolean;
  /** True while the pump itself holds the reading back (backpressure): that quiet is ours. */
  holding(): boolean;
  /** Told of each record sent. */
  nudged?(): void;
}

export class AckNudger {
  private received = 0;
  private seen = 0;
  private bulk = false;
  private watched = false;

  constructor(private readonly target: NudgeTarget) {}

  /** Bytes arrived over the relay connection. */
  arrived(bytes: number): void {
    this.received += bytes;
    if (this.watched) return;
    this.watched = true;
    this.seen = this.received - bytes;
    watching.add(this);
    if (!timer) {
      lastTick = performance.now();
      timer = setInterval(tick, QUIET_TICK_MS);
      timer.unref();
    }
  }

  /** One tick (`late`: it came late, and judges nothing): true to keep watching. */
  check(late: boolean): boolean {
    const delta = this.received - this.seen;
    this.seen = this.received;
    if (delta > 0) {
      if (delta >= BULK_BYTES_PER_TICK) this.bulk = true;
      return true;
    }
    if (late) return true;
    if (NUDGING && this.bulk && !this.target.holding() && this.target.nudge()) this.target.nudged?.();
    this.bulk = false;
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
