/**
 * Live subflows and the sum of their RTTs on each path, kept up to date as connections are read:
 * a connection's last-read subflows are in the sums while it is counted, so a tick need not visit
 * the idle ones to know each path's subflow count and mean RTT.
 */
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
