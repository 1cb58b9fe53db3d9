/**
 * Path quality: RTT, RTT variation and retransmission rate per path, from the tcp_info of the
 * subflows the statistics engine reads, and the automatic demotion of a `use` path that degrades
 * (config `paths.quality`). A demoted path is treated as backup (PolicyBoard, source 'quality'):
 * with Braid as the path manager its carrying subflows are closed and reopened as backup, so that the
 * peer resends what it had queued on them over the other paths (why: subflow-plan.ts); with the
 * kernel's, its endpoint is flagged backup (MP_PRIO), which steers only the data sent from then on.
 *
 * What is measured, per tick, over the subflows whose bytes moved in it (an idle subflow's RTT is
 * only its last estimate, so it says nothing about the path now):
 * - RTT: a subflow that mostly receives has a stale tcpi_rtt (it moves only when this side's own
 *   data is acked), so its tcpi_rcv_rtt (the receiver's estimate from timestamps) is taken;
 *   a sender's tcpi_rtt. Weighted by bytes moved.
 * - variation: a sender's tcpi_rttvar; for receivers, the smoothed change between ticks.
 * - retransmissions: tcpi_bytes_retrans over tcpi_bytes_sent of what this side sent. A download's
 *   losses are retransmitted by the far end, which this side cannot see: for it only RTT judges.
 *
 * Judging (hysteresis in three places):
 * - demote when, for DEMOTE_SAMPLES ticks in a row with traffic, the RTT is at least `rttMs` above
 *   the best other usable path (at its lowest over the last 3 s) and at least twice it, or the
 *   retransmission rate over the window is at least `retransPercent`; and only when another `use`
 *   path remains to carry the traffic;
 * - a demoted path carries (almost) nothing, so nothing measures its recovery: after a hold-down
 *   (HOLD_MS, doubled each time it relapses within RELAPSE_MS, up to HOLD_MAX_MS) it is given back
 *   its policy on probation and judged again on its own traffic;
 * - if a demoted path carries traffic anyway and measures good (RTT within half the threshold) for
 *   RECOVER_SAMPLES ticks, it is restored early.
 * No traffic, no judgement: a path without samples is never demoted for lack of them.
 */
import type { SubflowInfo } from '../native/mptcp';
import type { SubflowObserver } from '../stats/observer';
import type { PolicyBoard } from './effective';

export interface QualityConfig {
  enabled: boolean;
  /** RTT above the best other path that demotes (ms) */
  rttMs: number;
  /** retransmitted share of what this side sent that demotes (%) */
  retransPercent: number;
}

/** The PolicyBoard source of quality demotions (subflow-plan.ts closes such a path's subflows rather than only flagging them). */
export const QUALITY_SOURCE = 'quality';

export const defaultQualityConfig = (): QualityConfig => ({ enabled: true, rttMs: 150, retransPercent: 10 });

/** Bytes a path must move in a tick for its RTT to count as a sample (a dozen full segments). */
const MIN_SAMPLE_BYTES = 16 * 1024;
/** Bytes sent in the window before its retransmission rate counts (~70 segments). */
const MIN_SENT_BYTES = 100 * 1024;
const WINDOW_TICKS = 10;
const DEMOTE_SAMPLES = 2;
const RECOVER_SAMPLES = 4;
const HOLD_MS = 8_000;
const HOLD_MAX_MS = 120_000;
const RELAPSE_MS = 30_000;
/**
 * The other paths are compared at their lowest RTT over this long. Why: a slow path holds back the
 * connections it shares (MPTCP delivers in order), the fast path's sender then waits on the
 * connection's window, and its receiver-side RTT estimate (our ACK to the data echoing it) grows with
 * the wait: 13 -> 173 ms was seen on a link that measured 13 ms, which put off the slow path's demotion
 * to 6 s and more (paths-quality-first.test.ts).
 */
const BASELINE_MS = 3_000;
/** A sample older than this is not the path's RTT now. */
const FRESH_MS = 10_000;
/**
 * Subflow marks unseen this long are dropped. An idle connection is read only every few minutes, so
 * its mark may go first; the price is its first read after that counting no retransmissions, of the
 * few bytes sent since it went quiet.
 */
const MARK_TTL_MS = 90_000;

export interface PathQuality {
  path: string;
  rttMs: number | null;
  rttVarMs: number | null;
  /** % of what this side sent that was sent again, over the last window; null: too little sent to tell */
  retransPercent: number | null;
  /** ms since epoch of the last tick with enough traffic to measure; null: never */
  sampledAt: number | null;
  demoted: boolean;
  reason: string | null;
}

interface Acc {
  weight: number;
  rttSum: number;
  varSum: number;
  varWeight: number;
}

interface PathTrack {
  rtt: number | null;          // smoothed, µs
  sample: number | null;       // this tick's, µs (judged: two in a row are the hysteresis in time)
  recent: { at: number; rtt: number }[]; // samples over BASELINE_MS
  rttVar: number | null;
  sampledAt: number | null;
  sampledNow: boolean;         // this tick gave a sample
  sent: number[];              // per tick, over the window
  retrans: number[];
  bad: number;                 // consecutive bad samples
  good: number;                // consecutive good samples while demoted
  demotedAt: number | null;
  holdMs: number;
  liftedAt: number | null;
  reason: string | null;
}

export interface QualityOptions {
  board: PolicyBoard;
  config: () => QualityConfig;
  /** whether a path is configured `use` and not lowered by another source (a cap) */
  isUse: (path: string) => boolean;
  now?: () => number;
  log?: { info(m: string): void };
}

export class QualityJudge implements SubflowObserver {
  private readonly acc = new Map<string, Acc>();
  private readonly sentAcc = new Map<string, { sent: number; retrans: number }>();
  /** Oldest first (a mark is moved to the end when renewed), so that expiry stops at the first fresh one. */
  private readonly marks = new Map<string, { sent: number; retrans: number; at: number }>();
  private readonly tracks = new Map<string, PathTrack>();
  private readonly now: () => number;

  constructor(private readonly opts: QualityOptions) {
    this.now = opts.now ?? Date.now;
  }

  subflow(path: string, s: SubflowInfo, dAcked: number, dReceived: number): void {
    const now = this.now();
    const key = `${s.localAddress}|${s.localPort}|${s.remoteAddress}|${s.remotePort}`;
    const m = this.marks.get(key);
    const sent = s.bytesSent ?? 0;
    const retrans = s.bytesRetrans ?? 0;
    if (m && sent >= m.sent && retrans >= m.retrans) {
      const sa = this.sentAcc.get(path) ?? { sent: 0, retrans: 0 };
      sa.sent += sent - m.sent;
      sa.retrans += retrans - m.retrans;
      this.sentAcc.set(path, sa);
    }
    if (m) this.marks.delete(key);
    this.marks.set(key, { sent, retrans, at: now });
    const moved = dAcked + dReceived;
    if (moved <= 0) return;
    const receiving = dReceived >= dAcked;
    const rtt = receiving ? s.rcvRttUs || s.rttUs : s.rttUs;
    if (!(rtt > 0)) return;
    const a = this.acc.get(path) ?? { weight: 0, rttSum: 0, varSum: 0, varWeight: 0 };
    a.weight += moved;
    a.rttSum += rtt * moved;
    if (!receiving && s.rttVarUs > 0) {
      a.varSum += s.rttVarUs * moved;
      a.varWeight += moved;
    }
    this.acc.set(path, a);
  }

  residual(): void {
    /* closed connections' last bytes carry no RTT */
  }

  tick(): void {
    const now = this.now();
    for (const p of new Set([...this.acc.keys(), ...this.sentAcc.keys()])) {
      const t = this.track(p);
      const a = this.acc.get(p);
      if (a && a.weight >= MIN_SAMPLE_BYTES) {
        const rtt = a.rttSum / a.weight;
        const change = t.rtt === null ? 0 : Math.abs(rtt - t.rtt);
        const senderVar = a.varWeight > 0 ? a.varSum / a.varWeight : null;
        t.rttVar = senderVar ?? (t.rttVar === null ? change : t.rttVar + 0.25 * (change - t.rttVar));
        // Light smoothing: a step in the RTT shows within a tick or two.
        t.rtt = t.rtt === null || t.sampledAt === null || now - t.sampledAt > FRESH_MS ? rtt : t.rtt + 0.5 * (rtt - t.rtt);
        t.sampledAt = now;
        t.sampledNow = true;
        t.sample = rtt;
        t.recent.push({ at: now, rtt });
      }
      while (t.recent.length && now - t.recent[0]!.at > BASELINE_MS) t.recent.shift();
      const sa = this.sentAcc.get(p);
      t.sent.push(sa?.sent ?? 0);
      t.retrans.push(sa?.retrans ?? 0);
      if (t.sent.length > WINDOW_TICKS) {
        t.sent.shift();
        t.retrans.shift();
      }
    }
    this.acc.clear();
    this.sentAcc.clear();
    // Every tick, so it must not walk the thousands of marks an idle proxy keeps.
    for (const [k, m] of this.marks) {
      if (now - m.at <= MARK_TTL_MS) break;
      this.marks.delete(k);
    }
    this.judge(now);
    for (const t of this.tracks.values()) t.sampledNow = false;
  }

  private track(p: string): PathTrack {
    let t = this.tracks.get(p);
    if (!t) {
      t = { rtt: null, sample: null, recent: [], rttVar: null, sampledAt: null, sampledNow: false, sent: [], retrans: [], bad: 0, good: 0, demotedAt: null, holdMs: HOLD_MS, liftedAt: null, reason: null };
      this.tracks.set(p, t);
    }
    return t;
  }

  private retransPercent(t: PathTrack): number | null {
    const sent = t.sent.reduce((x, y) => x + y, 0);
    if (sent < MIN_SENT_BYTES) return null;
    return (100 * t.retrans.reduce((x, y) => x + y, 0)) / sent;
  }

  private judge(now: number): void {
    const cfg = this.opts.config();
    if (!cfg.enabled) {
      for (const [p, t] of this.tracks) if (t.demotedAt !== null) this.restore(p, t, now, 'quality checks are off');
      return;
    }
    const fresh = (t: PathTrack): boolean => t.rtt !== null && t.sampledAt !== null && now - t.sampledAt <= FRESH_MS;
    for (const [p, t] of this.tracks) {
      const sampled = t.sampledNow;
      // The best RTT among the other paths that carry traffic as `use` now (each at its lowest lately).
      let best: number | null = null;
      let alternatives = 0;
      for (const [q, u] of this.tracks) {
        if (q === p || u.demotedAt !== null || !this.opts.isUse(q)) continue;
        alternatives++;
        if (!fresh(u)) continue;
        const low = Math.min(u.rtt!, ...u.recent.map((r) => r.rtt));
        if (best === null || low < best) best = low;
      }
      const loss = this.retransPercent(t);
      const threshold = cfg.rttMs * 1000;
      const rttBad = sampled && best !== null && t.sample! >= best + threshold && t.sample! >= 2 * best;
      const lossBad = loss !== null && loss >= cfg.retransPercent;
      if (t.demotedAt === null) {
        if (!this.opts.isUse(p)) {
          t.bad = 0;
          continue;
        }
        if (sampled || lossBad) t.bad = rttBad || lossBad ? t.bad + 1 : 0;
        if (t.bad >= DEMOTE_SAMPLES && alternatives > 0) {
          const parts = [rttBad ? `RTT ${Math.round(t.sample! / 1000)} ms (best other path ${Math.round(best! / 1000)} ms)` : null, loss !== null && (lossBad || rttBad) ? `${loss.toFixed(0)} % retransmits` : null];
          t.reason = `${p} demoted: ${parts.filter(Boolean).join(', ')}`;
          if (t.liftedAt !== null && now - t.liftedAt < RELAPSE_MS) t.holdMs = Math.min(HOLD_MAX_MS, t.holdMs * 2);
          else t.holdMs = HOLD_MS;
          t.demotedAt = now;
          t.bad = 0;
          t.good = 0;
          this.opts.board.demote(QUALITY_SOURCE, p, { to: 'backup', reason: t.reason });
          this.opts.log?.info(`paths: ${t.reason}; backup for at least ${Math.round(t.holdMs / 1000)} s`);
        }
      } else {
        // Measured good on traffic it carried anyway: back early. Otherwise back on probation after the hold.
        const good = sampled && best !== null && t.sample! < best + threshold / 2 && !lossBad;
        t.good = good ? t.good + 1 : sampled ? 0 : t.good;
        if (t.good >= RECOVER_SAMPLES) this.restore(p, t, now, 'its quality recovered');
        else if (now - t.demotedAt >= t.holdMs) this.restore(p, t, now, `on probation after ${Math.round(t.holdMs / 1000)} s`);
      }
    }
  }

  private restore(p: string, t: PathTrack, now: number, why: string): void {
    t.demotedAt = null;
    t.liftedAt = now;
    t.reason = null;
    t.good = 0;
    t.bad = 0;
    // Its RTT is from before; the next samples on its own traffic decide.
    t.rtt = null;
    t.recent = [];
    t.sampledAt = null;
    t.sent = [];
    t.retrans = [];
    this.opts.board.demote(QUALITY_SOURCE, p, null);
    this.opts.log?.info(`paths: ${p} restored (${why})`);
  }

  /** Every path measured so far. */
  list(): PathQuality[] {
    const now = this.now();
    return [...this.tracks].map(([path, t]) => {
      const stale = t.sampledAt === null || now - t.sampledAt > FRESH_MS;
      return {
        path,
        rttMs: t.rtt === null || stale ? null : Math.round(t.rtt / 100) / 10,
        rttVarMs: t.rttVar === null || stale ? null : Math.round(t.rttVar / 100) / 10,
        retransPercent: (() => {
          const r = this.retransPercent(t);
          return r === null ? null : Math.round(r * 10) / 10;
        })(),
        sampledAt: t.sampledAt,
        demoted: t.demotedAt !== null,
        reason: t.reason,
      };
    });
  }

  of(path: string): PathQuality | null {
    return this.list().find((q) => q.path === path) ?? null;
  }
}
