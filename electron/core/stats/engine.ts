/**
 * Per-path traffic accounting. Every tick it reads the subflows of every live proxied connection
 * and splits each connection's bytes across the paths (interfaces) its subflows use.
 *
 * Truth for *how many* bytes a connection moved is the proxy's own count (what the application
 * sent and received); the kernel's per-subflow TCP counters say *which path* carried them. So the
 * totals equal what clients received, and the split follows the subflows, including for the last
 * bytes of a connection that closed between two ticks (split like its last known share).
 * A connection that fell back to TCP has one subflow and so one path.
 *
 * Reading a connection's subflows costs a few getsockopt calls and some allocation (10-20 µs), and
 * a proxy holds thousands of connections that are mostly idle. Subflows only decide how a
 * connection's new bytes are split, so a tick visits only the connections that are active: those
 * whose byte counts moved since the last tick (the tracker hands them over), new ones, and those
 * that moved within the last QUIET_TICKS (their send buffers drain after the proxy's counts stop)
 * unless a read finds their subflows' counters still too (see visit()).
 * Idle connections are refreshed a slice at a time, each once every IDLE_REFRESH_MS, to keep their
 * subflow lists current for the dashboard, and all of them within seconds of refreshIdle() (the
 * service calls it when the paths change, the usual reason for an idle connection's subflows to).
 * When their bytes move again they are split by the counters read then, measured from the last read.
 * Per-path subflow counts and RTTs are sums kept up to date as connections are read. An idle
 * connection costs nothing per tick.
 *
 * While nothing moves, the engine ticks every idleIntervalMs instead of every intervalMs, and the
 * first byte, opening or closing wakes it. Why: on a virtual machine the first work after the
 * process slept costs several times the same work done warm, more the longer it slept (measured
 * here: trivial work 0.15 ms after a 10 ms sleep, 2.4 ms after 500 ms, 3.6 ms after 2 s), so an idle
 * proxy's CPU is set mostly by how often it wakes. A dashboard's chart then gets a zero sample every
 * idleIntervalMs: the ticks carry their time, and rates are over the time since the last tick.
 */
import { EventEmitter } from 'node:events';
import type { StatsTick, SubflowView } from '../contract';
import type { MptcpInfo, SubflowInfo } from '../native/mptcp';
import type { ConnectionSnapshot, ConnectionTracker, TrackedConnection } from '../proxy/tracker';
import { closedResidual, newState, NO_SUBFLOWS, pathKey, subflowMovement, vanishedSubflows, type ConnState } from './connection-state';
import { PathSums, PathTally } from './path-sums';
import { ProgramTotals, type ProgramPathTotals } from './programs';
import { addTo as add, splitByWeight } from './shares';
import type { SubflowObserver } from './observer';
import { systemMptcpSockets } from './system';

export type { ProgramPathTotals } from './programs';
export { splitByWeight } from './shares';
export { pathKey } from './connection-state';

export interface StatsOptions {
  intervalMs?: number;      // default 500
  /** the pace while no connection moves; default IDLE_INTERVAL_MS */
  idleIntervalMs?: number;
  historyMs?: number;       // default 10 minutes
  /** Reads subflows of a connection; injectable for tests. */
  read?: (c: TrackedConnection) => SubflowInfo[] | MptcpInfo | null;
}

type Reader = (c: TrackedConnection) => SubflowInfo[] | MptcpInfo | null;

/** The engine's pace while no connection moves (the first byte, opening or closing wakes it). */
export const IDLE_INTERVAL_MS = 5000;
/** Ticks without new bytes after which a connection counts as idle (2 s at 500 ms). */
const QUIET_TICKS = 4;
/**
 * An idle connection's subflows are read this often. Without traffic its RTT does not change (no
 * ACKs to measure it from), and its subflow set changes mostly when the endpoints or links do (then
 * refreshIdle() reads them all within seconds). What this period bounds is the rest: a change made
 * with Braid's path management off, or a subflow the peer's late announcement added, which the
 * dashboard shows up to this late. Each read costs up to 1 ms of CPU on a busy host.
 */
const IDLE_REFRESH_MS = 600_000;
/**
 * Idle connections are refreshed in slices this far apart: a few larger slices cost less than many
 * small ones, each after the process slept (measured at 1,000 connections: 17 reads after a 2 s
 * sleep took 14-18 ms of CPU on a busy host).
 */
const SLICE_MS = 2 * IDLE_INTERVAL_MS;
/** Connections per tick read after refreshIdle(), on top of the slice. */
const URGENT_SLICE = 200;

export interface StatsEvents {
  tick: [StatsTick];
}


export class StatsEngine extends EventEmitter<StatsEvents> {
  readonly intervalMs: number;
  readonly idleIntervalMs: number;
  private readonly capacity: number;
  private readonly history: StatsTick[] = [];
  private readonly conns = new Map<number, ConnState>();
  /** Each path's bytes so far and its last mean RTT. */
  private readonly tally = new PathTally();
  /** Per path, over the live connections' last reads: an idle connection costs nothing per tick. */
  private readonly pathSums = new PathSums();
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  /** The timer set is the idle pace's: any movement brings the next tick forward. */
  private sleeping = false;
  private lastAt = 0;
  /** When the last slice of idle connections was read. */
  private sliceAt = 0;
  /** Idle connections still to read after refreshIdle(). */
  private urgent = 0;
  /** Connections visited every tick: moved lately, or new. */
  private readonly active = new Map<number, TrackedConnection>();
  /** New connections, read on the next tick. */
  private fresh: number[] = [];
  /** Where the slice-per-tick refresh of idle connections has got to (a Map iterator survives changes). */
  private cursor: Iterator<TrackedConnection> | null = null;
  private readonly onOpened = (snap: ConnectionSnapshot): void => {
    this.fresh.push(snap.id);
    this.wake();
  };
  private readonly wake = (): void => {
    if (this.sleeping) this.schedule(this.intervalMs, false);
  };
  private pendingClosed: { snapshot: ConnectionSnapshot; state: ConnState }[] = [];
  private readonly onClosed = (snap: ConnectionSnapshot): void => {
    // A connection that opened and closed between two ticks was never sampled: its bytes still
    // count (on the 'unknown' path, since no subflow of it was ever seen).
    const state = this.conns.get(snap.id) ?? newState();
    this.conns.delete(snap.id);
    this.active.delete(snap.id);
    this.pathSums.account(state, false);
    this.pendingClosed.push({ snapshot: snap, state });
    this.wake();
  };
  /**
   * CPU time the last sample took, ms (the process's, so GC threads count; wall time would count
   * the waits of a busy machine instead).
   */
  lastSampleMs = 0;
  private readonly observers: SubflowObserver[] = [];
  private readonly programs = new ProgramTotals();

  constructor(private readonly tracker: () => ConnectionTracker | null, private readonly opts: StatsOptions = {}) {
    super();
    this.intervalMs = opts.intervalMs ?? 500;
    this.idleIntervalMs = Math.max(this.intervalMs, opts.idleIntervalMs ?? IDLE_INTERVAL_MS);
    this.capacity = Math.ceil((opts.historyMs ?? 10 * 60_000) / this.intervalMs);
  }

  private attached: ConnectionTracker | null = null;

  start(): void {
    if (this.running) return;
    this.running = true;
    this.lastAt = this.sliceAt = Date.now();
    this.schedule(this.intervalMs, false);
  }

  stop(): void {
    this.running = false;
    this.sleeping = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.attach(null);
  }

  /** Reads every idle connection's subflows within the next ticks (the paths changed). */
  refreshIdle(): void {
    this.urgent = this.attached?.size ?? 0;
    this.wake();
  }

  /** Whether the engine ticks at its idle pace now (nothing moved lately). */
  get idle(): boolean {
    return this.sleeping;
  }

  /** The next tick, `pace` ms after the last one (or at once if that is past). */
  private schedule(pace: number, sleeping: boolean): void {
    if (!this.running) return;
    if (this.timer) clearTimeout(this.timer);
    this.sleeping = sleeping;
    this.timer = setTimeout(this.onTimer, Math.max(0, this.lastAt + pace - Date.now()));
    this.timer.unref();
  }

  private readonly onTimer = (): void => {
    this.timer = null;
    try {
      this.tick();
    } finally {
      const quiet = this.active.size === 0 && this.fresh.length === 0 && this.pendingClosed.length === 0 && this.urgent === 0;
      this.schedule(quiet ? this.idleIntervalMs : this.intervalMs, quiet);
    }
  };

  /** Adds an observer of every subflow read (data caps, path quality). */
  observe(o: SubflowObserver): void {
    this.observers.push(o);
  }

  /** Bytes per program per path since start, biggest first. */
  byProgram(): ProgramPathTotals[] {
    return this.programs.list();
  }

  /** The ticks of the last `seconds` (all kept history by default), oldest first. */
  recent(seconds?: number): StatsTick[] {
    if (seconds === undefined) return [...this.history];
    const since = Date.now() - seconds * 1000;
    return this.history.filter((t) => t.t >= since);
  }

  /** The subflows of a connection as of the last tick. */
  subflowsOf(id: number): SubflowView[] {
    // Also for a connection that just closed (its 'closed' listeners may run after ours).
    return this.conns.get(id)?.latest ?? this.pendingClosed.find((p) => p.snapshot.id === id)?.state.latest ?? [];
  }

  /**
   * Follows a tracker's closings from now on; the service calls it as soon as a proxy starts, so
   * that a connection that ends before the first tick is counted too. Ticks also attach whatever
   * tracker the getter returns.
   */
  track(t: ConnectionTracker | null): void {
    this.attach(t);
  }

  private attach(t: ConnectionTracker | null): void {
    if (t === this.attached) return;
    this.attached?.off('closed', this.onClosed);
    this.attached?.off('opened', this.onOpened);
    // A new tracker (the proxy restarted) numbers its connections from 1 again: state kept for the
    // old one's ids would be taken for the new connections' and swallow their first bytes.
    this.conns.clear();
    this.pathSums.clear();
    this.active.clear();
    this.fresh = [];
    this.cursor = null;
    this.urgent = 0;
    this.attached?.off('moved', this.wake);
    this.attached = t;
    t?.on('closed', this.onClosed);
    t?.on('opened', this.onOpened);
    t?.on('moved', this.wake);
    // Connections that were there before we looked are read on the first tick, which a new proxy
    // brings forward.
    for (const c of t?.connections() ?? []) this.active.set(c.id, c);
    if (t) this.wake();
  }

  /** One sample; public so tests and the bench can drive it without timers. */
  tick(now = Date.now()): StatsTick {
    const started = process.cpuUsage();
    const tracker = this.tracker();
    this.attach(tracker);
    const seconds = Math.max(0.001, (now - this.lastAt) / 1000);
    this.lastAt = now;
    const up = new Map<string, number>();
    const down = new Map<string, number>();
    const read: Reader = this.opts.read ?? ((c: TrackedConnection) => c.subflows(false));

    if (tracker) {
      for (const c of tracker.takeMoved()) this.active.set(c.id, c);
      for (const id of this.fresh.splice(0)) {
        const c = tracker.get(id);
        if (c) this.active.set(id, c);
      }
      // A slice of the idle connections every SLICE_MS or so, each read once every IDLE_REFRESH_MS
      // (after a long gap, a suspended laptop's, no more than two slices' worth at once).
      let slice = 0;
      if (now - this.sliceAt >= SLICE_MS - this.intervalMs / 2) {
        slice = Math.ceil((tracker.size * Math.min(now - this.sliceAt, 2 * SLICE_MS)) / IDLE_REFRESH_MS);
        this.sliceAt = now;
      }
      const extra = Math.min(this.urgent, URGENT_SLICE);
      this.urgent -= extra;
      slice = Math.min(tracker.size, slice + extra);
      for (let i = 0; i < slice; i++) {
        let next = this.cursor?.next();
        if (!next || next.done) {
          // Round again from the first (a slice is at most every connection once).
          this.cursor = tracker.connections();
          next = this.cursor.next();
          if (next.done) break;
        }
        if (!this.active.has(next.value.id)) this.visit(next.value, read, up, down, true);
      }
      for (const c of this.active.values()) {
        if (this.visit(c, read, up, down, false)) this.active.delete(c.id);
      }
    }
    // Connections that ended since the last tick: their final bytes, split like they were carried.
    for (const { snapshot, state } of this.pendingClosed.splice(0)) {
      if (snapshot.program) state.program = snapshot.program.name;
      this.attribute(state, snapshot.bytesUp - state.lastUp, snapshot.bytesDown - state.lastDown, null, null, up, down);
      if (this.observers.length) closedResidual(state, snapshot, this.observers);
    }
    for (const o of this.observers) o.tick(now, seconds);

    const { paths, totalUp, totalDown } = this.tally.sample(this.pathSums, up, down, seconds);
    const system = { mptcpSockets: systemMptcpSockets(), sampleUs: 0 };
    const tick: StatsTick = { t: now, paths, connections: tracker?.size ?? 0, totalUp, totalDown, system };
    this.history.push(tick);
    if (this.history.length > this.capacity) this.history.splice(0, this.history.length - this.capacity);
    const spent = process.cpuUsage(started);
    this.lastSampleMs = (spent.user + spent.system) / 1000;
    system.sampleUs = Math.round(this.lastSampleMs * 1000);
    this.emit('tick', tick);
    return tick;
  }

  /**
   * Reads a connection's subflows and splits its new bytes over them; returns whether it is idle
   * now. `refresh`: an idle connection's periodic read, no bytes expected.
   *
   * Idle: its bytes have not moved for QUIET_TICKS visits, or they did not move since the last
   * visit and neither did its subflows' counters (nothing left in its send buffers to drain), or it
   * is settled: an MPTCP connection whose own counters show exactly the bytes the proxy counted (a
   * relay connection's TLS bytes never equal them, nor does a counted FIN). Why the last two: each
   * read allocates (the addon's answer), and with 1,000 connections opened at once RSS 3 s later
   * was 21.0-21.5 kB per connection when each was read on five ticks, 18.4-19.7 on two, 17.2-18.5
   * with most read once, and 12.1-12.4 with no reads at all (settled, all alike). Bytes a subflow
   * moves later are counted from its mark at its next read (or at the close, from the connection's
   * own counters), not lost.
   */
  private visit(c: TrackedConnection, read: Reader, up: Map<string, number>, down: Map<string, number>, refresh: boolean): boolean {
    let state = this.conns.get(c.id);
    if (!state) {
      state = newState();
      this.conns.set(c.id, state);
    }
    if (c.program) state.program = c.program.name;
    const dUp = c.bytesUp - state.lastUp;
    const dDown = c.bytesDown - state.lastDown;
    const moved = dUp !== 0 || dDown !== 0;
    if (!refresh) state.quiet = moved ? 0 : state.quiet + 1;
    const info = read(c);
    const subflows = info === null ? null : Array.isArray(info) ? info : info.subflows;
    const conn = info !== null && !Array.isArray(info) && info.mptcp && !info.fallback ? info : null;
    let weightsUp: Map<string, number> | null = null;
    let weightsDown: Map<string, number> | null = null;
    if (subflows) {
      const movement = subflowMovement(state, subflows, this.observers);
      weightsUp = movement.up;
      weightsDown = movement.down;
      if (conn) vanishedSubflows(state, movement.marks, conn, weightsUp, weightsDown, this.observers);
      state.subflows = movement.marks;
      this.pathSums.account(state, false);
      state.latest = subflows.map((s) => ({
        localAddress: s.localAddress, remoteAddress: s.remoteAddress, interface: s.interface,
        bytesSent: s.bytesSent, bytesReceived: s.bytesReceived, rttUs: s.rttUs, backup: s.backup,
      }));
      this.pathSums.account(state, true);
    } else {
      // Nothing to read (no outbound socket yet, or it is gone): its subflows no longer count.
      this.pathSums.account(state, false);
    }
    if (moved) this.attribute(state, dUp, dDown, weightsUp, weightsDown, up, down);
    state.lastUp = c.bytesUp;
    state.lastDown = c.bytesDown;
    if (state.quiet >= QUIET_TICKS) return true;
    if (conn && conn.bytesAcked === c.bytesUp && conn.bytesReceived === c.bytesDown) return true;
    return state.quiet > 0 && subflows !== null && weightsUp!.size === 0 && weightsDown!.size === 0;
  }

  private attribute(
    state: ConnState,
    dUp: number,
    dDown: number,
    weightsUp: Map<string, number> | null,
    weightsDown: Map<string, number> | null,
    up: Map<string, number>,
    down: Map<string, number>,
  ): void {
    // When the subflow counters have not moved yet (or were not read, or the socket is gone), the
    // connection's share so far decides; its first bytes with no subflow known go to 'unknown'.
    const pick = (w: Map<string, number> | null, share: Map<string, number> | null) =>
      w && [...w.values()].some((v) => v > 0) ? w : share?.size ? share : new Map([[state.latest[0] ? pathKey(state.latest[0]) : 'unknown', 1]]);
    if (dUp > 0) {
      const share = (state.shareUp ??= new Map());
      for (const [k, n] of splitByWeight(dUp, pick(weightsUp, share))) {
        add(up, k, n);
        add(share, k, n);
        this.programs.add(state.program, k, n, 0);
      }
    }
    if (dDown > 0) {
      const share = (state.shareDown ??= new Map());
      for (const [k, n] of splitByWeight(dDown, pick(weightsDown, share))) {
        add(down, k, n);
        add(share, k, n);
        this.programs.add(state.program, k, 0, n);
      }
    }
  }
}
