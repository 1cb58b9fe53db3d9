/**
 * What a long-running Braid process (`braid up`, `braid relay`, the desktop app) sets up for itself
 * before anything else: Node's warnings routed to Braid's log, the open-file limit raised (and with
 * it the default connection limit, see fd-limit.ts), and a young generation that stays small.
 */
import v8 from 'node:v8';
import { raiseFdLimit, type FdLimitReport } from './fd-limit';
import type { Logger } from './proxy/session';
import { routeProcessWarnings } from './process-warnings';

/**
 * V8 doubles its young generation (up to 16 MiB per semi-space here) whenever many objects survive
 * a scavenge, which is exactly what a burst of new long-lived connections looks like, and a proxy
 * never idles enough for it to shrink back: 1,000 connections opened at once left ~30 MB more RSS
 * than the connections themselves hold. A proxy allocates little per byte it moves (Buffers live
 * outside the V8 heap), so scavenging a small young generation more often costs next to nothing;
 * the bench's scale section measures RSS per connection with this in place. Set at run time, the
 * growth factor is read when V8 considers growing (the maximum size flag is not: it is read once).
 */
function keepYoungGenerationSmall(): void {
  v8.setFlagsFromString('--semi-space-growth-factor=1');
}

let done: FdLimitReport | null = null;

/** Idempotent; returns the open-file limit report (raisedFrom/error) for the caller to log. */
export function prepareLongRunningProcess(log: Logger): FdLimitReport {
  routeProcessWarnings(log);
  if (done) return done;
  keepYoungGenerationSmall();
  done = raiseFdLimit();
  return done;
}
