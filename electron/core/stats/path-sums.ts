/**
 * Live subflows and the sum of their RTTs on each path, kept up to date as connections are read:
 * a connection's last-read subflows are in the sums while it is counted, so a tick need not visit
 * the idle ones to know each path's subflow count and mean RTT. PathTally turns them, with the
 * bytes each tick split over the paths, into the tick's samples.
 */
import type { PathSample } from '../contract';
import { pathKey, type ConnState } from './connection-state';

export interface PathAgg {
  subflows: number;
  rttSum: number;
  rttN: number;
}

export class PathSums {
  private readonly paths = new Map<string, PathAgg>();

  get(path: string): PathAgg | undefined {
    return this.paths.get(path);
  }

  keys(): IterableIterator<string> {
    return this.paths.keys();
  }

  clear(): void {
    this.paths.clear();
  }

  /** Adds a connection's last-read subflows to the per-path sums, or takes them out. */
  account(state: ConnState, counted: boolean): void {
    if (state.counted === counted) return;
    state.counted = counted;
    // Not iterated when empty: NO_SUBFLOWS is an array of another elements kind than the read ones,
    // and meeting both here sent tick() into an endless deoptimise/reoptimise loop (--trace-deopt:
    // "wrong map"), which cost ten times the sampling itself.
    if (state.latest.length === 0) return;
    const sign = counted ? 1 : -1;
    for (const s of state.latest) {
      const p = pathKey(s);
      let agg = this.paths.get(p);
      if (!agg) this.paths.set(p, (agg = { subflows: 0, rttSum: 0, rttN: 0 }));
      agg.subflows += sign;
      if (s.rttUs > 0) {
        agg.rttSum += sign * s.rttUs;
        agg.rttN += sign;
      }
      if (agg.subflows <= 0) this.paths.delete(p);
    }
  }
}

/** Each path's bytes since the engine started and its last known mean RTT. */
export class PathTally {
  private readonly totals = new Map<string, { up: number; down: number }>();
  private readonly rtt = new Map<string, number>();

  /**
   * One tick's sample per path (sorted by path): the tick's bytes (`up`, `down`, over `seconds`)
   * added to the totals, with the subflows and mean RTT in `sums`. A path with no live subflow
   * keeps its totals, and no RTT.
   */
  sample(sums: PathSums, up: Map<string, number>, down: Map<string, number>, seconds: number): { paths: PathSample[]; totalUp: number; totalDown: number } {
    const paths: PathSample[] = [];
    const keys = new Set([...this.totals.keys(), ...up.keys(), ...down.keys(), ...sums.keys()]);
    let totalUp = 0;
    let totalDown = 0;
    for (const k of keys) {
      const t = this.totals.get(k) ?? { up: 0, down: 0 };
      t.up += up.get(k) ?? 0;
      t.down += down.get(k) ?? 0;
      this.totals.set(k, t);
      totalUp += t.up;
      totalDown += t.down;
      // Subflows and RTT as of each connection's last read, a few seconds old for an idle one.
      const agg = sums.get(k);
      if (agg && agg.rttN > 0) this.rtt.set(k, agg.rttSum / agg.rttN);
      paths.push({
        path: k,
        upBps: (up.get(k) ?? 0) / seconds,
        downBps: (down.get(k) ?? 0) / seconds,
        rttUs: agg ? this.rtt.get(k) ?? null : null,
        totalUp: t.up,
        totalDown: t.down,
        subflows: agg?.subflows ?? 0,
      });
    }
    paths.sort((a, b) => a.path.localeCompare(b.path));
    return { paths, totalUp, totalDown };
  }
}
