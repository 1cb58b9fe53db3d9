/**
 * Per-path RTT and recent peak rate, from the statistics engine's ticks (what Braid's own
 * connections measured on each interface). The dialer orders `use` paths by them and the secondary
 * controller reads the peak as the path's capacity. A peak decays slowly, so a link that got
 * slower is believed within minutes, and a one-off burst is not a capacity forever.
 */
import type { StatsTick } from '../contract';
import type { PathMeasure } from './route-choice';

/** Per second, the peak keeps this share of itself when the path runs below it (about 5 minutes to halve). */
const PEAK_DECAY_PER_S = 0.9988 ** 2;
const RTT_WEIGHT = 0.2;

export class PathMeter {
  private readonly rtt = new Map<string, number>();
  private readonly peak = new Map<string, number>();
  private readonly last = new Map<string, number>();
  private lastT: number | null = null;

  /** Feeds one tick (service: stats.on('tick', t => meter.feed(t))). */
  feed(tick: StatsTick): void {
    // By time, not per tick: an idle engine ticks less often.
    const decay = PEAK_DECAY_PER_S ** (this.lastT === null ? 0.5 : Math.max(0, tick.t - this.lastT) / 1000);
    this.lastT = tick.t;
    for (const p of tick.paths) {
      const bps = p.upBps + p.downBps;
      this.last.set(p.path, bps);
      const pk = this.peak.get(p.path) ?? 0;
      this.peak.set(p.path, Math.max(bps, pk * decay));
      if (p.rttUs !== null && p.subflows > 0) {
        const r = this.rtt.get(p.path);
        this.rtt.set(p.path, r === undefined ? p.rttUs : r + RTT_WEIGHT * (p.rttUs - r));
      }
    }
  }

  measure(iface: string): PathMeasure | null {
    const rttUs = this.rtt.get(iface) ?? null;
    const peakBps = this.peak.get(iface) ?? null;
    return rttUs === null && peakBps === null ? null : { rttUs, peakBps: peakBps || null };
  }

  /** The rate of the last tick, bytes/s. */
  current(iface: string): number {
    return this.last.get(iface) ?? 0;
  }
}
