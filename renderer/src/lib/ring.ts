/**
 * The chart's memory: a fixed number of samples per path in ring buffers, so that a dashboard left
 * open for hours holds the same amount of data as one opened a minute ago. A path that has carried
 * nothing for the whole window is forgotten; at most MAX_PATHS are kept apart, the rest are summed
 * into one "other" series.
 */
import type { StatsTick } from '../../../electron/core/contract/index';

export const OTHER = 'other paths';
export const MAX_PATHS = 8;

interface Series {
  down: Float64Array;
  up: Float64Array;
  lastNonZero: number;     // sequence number of the last sample with traffic (or of its arrival)
}

export interface SeriesView {
  path: string;
  down: Float64Array;      // chronological, length = view.length
  up: Float64Array;
}

export interface RingView {
  t: Float64Array;         // seconds since epoch (uPlot's time scale)
  series: SeriesView[];    // sorted by path name, OTHER last
}

export class StatsRing {
  private readonly t: Float64Array;
  private readonly series = new Map<string, Series>();
  private head = 0;        // next write index
  private count = 0;
  private seq = 0;         // samples ever pushed
  private lastT = -Infinity;

  constructor(readonly capacity: number) {
    this.t = new Float64Array(capacity);
  }

  get length(): number {
    return this.count;
  }

  get pathCount(): number {
    return this.series.size;
  }

  clear(): void {
    this.series.clear();
    this.head = 0;
    this.count = 0;
    this.lastT = -Infinity;
  }

  push(tick: StatsTick): void {
    // History fetched after a reconnect overlaps live ticks; time only moves forward here.
    if (tick.t <= this.lastT) return;
    this.lastT = tick.t;
    const i = this.head;
    this.t[i] = tick.t / 1000;
    for (const s of this.series.values()) {
      s.down[i] = 0;
      s.up[i] = 0;
    }
    for (const p of tick.paths) {
      const active = p.downBps > 0 || p.upBps > 0;
      let key = p.path;
      let s = this.series.get(key);
      if (!s) {
        if (!active) continue;
        if (this.series.size >= MAX_PATHS && key !== OTHER) {
          key = OTHER;
          s = this.series.get(OTHER);
        }
        if (!s) {
          s = { down: new Float64Array(this.capacity), up: new Float64Array(this.capacity), lastNonZero: this.seq };
          this.series.set(key, s);
        }
      }
      s.down[i] += p.downBps;
      s.up[i] += p.upBps;
      if (active) s.lastNonZero = this.seq;
    }
    this.head = (i + 1) % this.capacity;
    this.count = Math.min(this.count + 1, this.capacity);
    this.seq++;
    for (const [k, s] of this.series) if (this.seq - s.lastNonZero > this.capacity) this.series.delete(k);
  }

  /** Chronological copies (fresh arrays: uPlot keeps what it is given until the next setData). */
  view(): RingView {
    const n = this.count;
    const start = (this.head - n + this.capacity) % this.capacity;
    const lin = (src: Float64Array): Float64Array => {
      const out = new Float64Array(n);
      const first = Math.min(n, this.capacity - start);
      out.set(src.subarray(start, start + first), 0);
      if (first < n) out.set(src.subarray(0, n - first), first);
      return out;
    };
    const keys = [...this.series.keys()].sort((a, b) => (a === OTHER ? 1 : b === OTHER ? -1 : a.localeCompare(b)));
    return { t: lin(this.t), series: keys.map((k) => ({ path: k, down: lin(this.series.get(k)!.down), up: lin(this.series.get(k)!.up) })) };
  }
}
