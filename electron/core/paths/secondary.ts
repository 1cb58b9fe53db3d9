/**
 * When a connection needs its secondary paths. A secondary path (a metered cellular link, say)
 * joins a connection only while that connection needs more than its `use` paths carry:
 *
 * 1. Bulk: over the last second it moved at least 32 KB/s, and its data were not held back by the
 *    application. A client that reads slower than the network delivers (a video player reading at
 *    its bitrate) shows first in the kernel, as time the socket toward it spent waiting for its
 *    receive window (tcpi_rwnd_limited; the kernel grows that socket's send buffer to megabytes,
 *    so Node's own buffer fills much later), then as Braid's pump holding the destination's side
 *    (tracker `heldTime('down')`). More than a fifth of the second held by either means the
 *    application, not the network, sets the pace.
 * 2. Saturated: every `use` path the connection runs on carries at least 70 % of the highest rate
 *    Braid has seen on it lately (path-meter.ts); a path with no history yet counts as saturated.
 * 3. Proven on trial: the secondary path joins (not as backup) for three seconds. The sender's
 *    MPTCP scheduler only puts data on a second subflow when the first one's congestion window is
 *    full, so if the secondary carried under 10 % of the connection's bytes in that time, the
 *    `use` paths were not the limit after all (a server that sends slowly, a paced stream): it goes
 *    back to standby (backup) and is not tried again for a minute.
 *
 * The need ends when (1) or (2) fail for two seconds: the secondary subflow is flagged backup
 * (standby: it carries nothing while a use path works, and costs no handshake if the need comes
 * back); thirty seconds of standby and it leaves the connection.
 */
import type { ConnectionTracker, TrackedConnection } from '../proxy/tracker';
import type { MptcpInfo, SendState } from '../native/mptcp';
import type { Logger } from '../proxy/session';
import type { PathMeter } from './path-meter';
import type { ConnectionSink } from './routing';
import type { SecondaryState } from './subflow-plan';

export const SECONDARY = {
  tickMs: 250,
  windowMs: 750,
  minBulkBps: 32 * 1024,
  heldShare: 0.2,
  saturation: 0.7,
  trialMs: 3000,
  trialShare: 0.1,
  retryMs: 60_000,
  needLostMs: 2000,
  standbyMs: 30_000,
} as const;

type State = 'idle' | 'trial' | 'active' | 'standby';

interface Sample {
  t: number;
  bytes: number;
  down: number;
  up: number;
  heldDown: number;
  /** ms the socket toward the client waited for its window, so far (null: unknown) */
  clientWait: number | null;
}

interface ConnSecondary {
  state: State;
  samples: Sample[];
  since: number;
  lostSince: number | null;
  retryAt: number;
  trial: { secondary: number; total: number } | null;
}

export interface SecondaryOptions {
  tracker: () => ConnectionTracker | null;
  meter: Pick<PathMeter, 'measure' | 'current'>;
  sink: () => ConnectionSink | null;
  /** the paths a connection's subflows use now (stats engine's last sample) */
  pathsOf: (connId: number) => string[];
  /** MPTCP state of a connection's socket, for the trial's share (socketInfo) */
  read: (fd: number) => MptcpInfo | null;
  /** the kernel's view of the socket toward the client (sendState) */
  clientState?: (fd: number) => SendState | null;
  log?: Pick<Logger, 'debug'>;
  now?: () => number;
}

const toWish = (s: State): SecondaryState => (s === 'trial' || s === 'active' ? 'active' : s === 'standby' ? 'standby' : 'idle');

export class SecondaryController {
  private readonly conns = new Map<number, ConnSecondary>();
  private timer: NodeJS.Timeout | null = null;
  private readonly now: () => number;

  constructor(private readonly opts: SecondaryOptions) {
    this.now = opts.now ?? Date.now;
  }

  /**
   * Follows the current tracker: the timer runs only while some connection has secondary paths. An
   * idle proxy then does not wake four times a second for nothing; on a VM each wake-up was measured
   * at about 1 ms of CPU before any work (an idle process's caches are cold).
   */
  start(): void {
    const tracker = this.opts.tracker();
    if (tracker === this.watched) return;
    this.stop();
    this.watched = tracker;
    tracker?.on('secondary', this.onSecondary);
    this.onSecondary(tracker?.secondaryCount ?? 0);
  }

  stop(): void {
    this.watched?.off('secondary', this.onSecondary);
    this.watched = null;
    this.stopTimer();
  }

  /** Whether the 250 ms timer is running (tests). */
  get running(): boolean {
    return this.timer !== null;
  }

  private watched: ConnectionTracker | null = null;

  private readonly onSecondary = (count: number): void => {
    if (count > 0 && !this.timer) {
      this.timer = setInterval(() => this.tick(), SECONDARY.tickMs);
      this.timer.unref();
    } else if (count === 0) this.stopTimer();
  };

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.conns.clear();
  }

  /** One look at every connection that has secondary paths; public for tests. */
  tick(now = this.now()): void {
    const seen = new Set<number>();
    for (const c of this.opts.tracker()?.withSecondaryPaths() ?? []) {
      const r = c.route;
      // The tracker lists only connections whose route has secondary paths.
      if (!r || r.token === null || r.state === null) continue;
      seen.add(c.id);
      let s = this.conns.get(c.id);
      if (!s) this.conns.set(c.id, (s = { state: 'idle', samples: [], since: now, lostSince: null, retryAt: 0, trial: null }));
      this.step(c, s, now);
    }
    for (const id of this.conns.keys()) if (!seen.has(id)) this.conns.delete(id);
  }

  private step(c: TrackedConnection, s: ConnSecondary, now: number): void {
    const cs = c.clientFd === null ? null : this.opts.clientState?.(c.clientFd) ?? null;
    const clientWait = cs?.rwndLimitedUs == null ? null : cs.rwndLimitedUs / 1000;
    s.samples.push({ t: now, bytes: c.bytesUp + c.bytesDown, down: c.bytesDown, up: c.bytesUp, heldDown: c.heldTime('down', now), clientWait });
    while (s.samples.length > 2 && now - s.samples[1]!.t >= SECONDARY.windowMs) s.samples.shift();
    const first = s.samples[0]!;
    const span = now - first.t;
    if (span < SECONDARY.windowMs * 0.9) return;
    const rate = ((c.bytesUp + c.bytesDown - first.bytes) * 1000) / span;
    const downloading = c.bytesDown - first.down >= c.bytesUp - first.up;
    const pumpHeld = (c.heldTime('down', now) - first.heldDown) / span;
    const clientHeld = clientWait !== null && first.clientWait !== null ? (clientWait - first.clientWait) / span : 0;
    const held = downloading ? Math.max(pumpHeld, clientHeld) : 0;
    const route = c.route!;
    const usePaths = this.opts.pathsOf(c.id).filter((p) => route.use.includes(p));
    const saturated = usePaths.every((p) => {
      const peak = this.opts.meter.measure(p)?.peakBps ?? null;
      return !peak || this.opts.meter.current(p) >= SECONDARY.saturation * peak;
    });
    const need = rate >= SECONDARY.minBulkBps && held <= SECONDARY.heldShare && saturated;

    const go = (state: State): void => {
      this.opts.log?.debug(`secondary: connection ${c.id} ${s.state} -> ${state} (${(rate * 8 / 1e6).toFixed(1)} Mbit/s, held ${(held * 100).toFixed(0)} %, use paths ${usePaths.join(',') || '-'} ${saturated ? 'saturated' : 'not saturated'})`);
      s.state = state;
      s.since = now;
      s.lostSince = null;
      route.state = state;
      if (route.token !== null) this.opts.sink()?.update(route.token, { secondary: toWish(state) });
    };

    switch (s.state) {
      case 'idle':
      case 'standby':
        if (need && now >= s.retryAt) {
          s.trial = this.shares(c, route.secondary);
          go('trial');
        } else if (!need && s.state === 'standby' && now - s.since >= SECONDARY.standbyMs) go('idle');
        return;
      case 'trial': {
        if (now - s.since < SECONDARY.trialMs) {
          if (!need) s.lostSince ??= now;
          else s.lostSince = null;
          if (s.lostSince !== null && now - s.lostSince >= SECONDARY.needLostMs) go('standby');
          return;
        }
        const end = this.shares(c, route.secondary);
        const total = end && s.trial ? end.total - s.trial.total : 0;
        const share = end && s.trial && total > 0 ? (end.secondary - s.trial.secondary) / total : 0;
        if (share >= SECONDARY.trialShare) go('active');
        else {
          s.retryAt = now + SECONDARY.retryMs;
          go('standby');
        }
        return;
      }
      case 'active':
        if (need) s.lostSince = null;
        else {
          s.lostSince ??= now;
          if (now - s.lostSince >= SECONDARY.needLostMs) go('standby');
        }
        return;
    }
  }

  /** Bytes the connection's subflows carried so far, in all and on its secondary paths. */
  private shares(c: TrackedConnection, secondary: string[]): { secondary: number; total: number } | null {
    const fd = c.fd;
    const info = fd === null ? null : this.opts.read(fd);
    if (!info) return null;
    let sec = 0;
    let total = 0;
    for (const sf of info.subflows) {
      const n = sf.bytesReceived + sf.bytesAcked;
      total += n;
      if (sf.interface && secondary.includes(sf.interface)) sec += n;
    }
    return { secondary: sec, total };
  }
}
