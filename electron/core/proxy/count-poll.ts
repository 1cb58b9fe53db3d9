/**
 * Tunnels whose bytes the addon moves (splice-tunnel.ts, seal-tunnel.ts) are asked for their counts
 * every COUNT_MS by one shared timer, into the connection's counters, which the stats engine and
 * the secondary-path logic (250 ms ticks) read.
 */
export const COUNT_MS = 200;

export interface CountPolled {
  poll(): void;
}

const live = new Set<CountPolled>();
let timer: NodeJS.Timeout | null = null;

export function trackCounts(entry: CountPolled): void {
  live.add(entry);
  if (!timer) {
    timer = setInterval(() => {
      for (const e of live) e.poll();
    }, COUNT_MS);
    timer.unref();
  }
}

export function untrackCounts(entry: CountPolled): void {
  if (!live.delete(entry)) return;
  if (live.size === 0 && timer) {
    clearInterval(timer);
    timer = null;
  }
}
