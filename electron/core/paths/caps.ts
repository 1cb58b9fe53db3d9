/**
 * Data caps per interface (config `paths.caps`, `braid paths cap`): `500MB/day`, or `2GB/month`
 * from a reset day. At the cap the path is demoted (PolicyBoard, source 'cap') to `off` or
 * `backup` until its period ends; raising or removing the cap lifts it at once.
 *
 * A cap is enforced a little early rather than late: the usage count moves once per stats tick, and
 * taking a path out of every connection takes a moment more (the path manager's reconcile, bytes
 * already in flight). So the path is demoted when the usage plus what it would carry in the next
 * LOOKAHEAD_S at its current rate (the higher of the last two ticks') reaches the cap. At 20 Mbit/s
 * that stops it ~1-3 MB short of the cap; a cap of gigabytes loses nothing a user would notice, and
 * none is overrun.
 */
import { EventEmitter } from 'node:events';
import type { PolicyBoard } from './effective';
import { dayKey, type UsageMeter } from './usage';

export type CapPeriod = 'day' | 'month';
export type AtCap = 'backup' | 'off';

export interface DataCap {
  bytes: number;
  period: CapPeriod;
  /** month caps: the day of the month a new period starts (1-31; a shorter month resets on its last day) */
  resetDay: number;
  atCap: AtCap;
}

/** One stats tick plus the reaction to a demotion (path manager debounce, a round trip, queued bytes). */
export const LOOKAHEAD_S = 1.5;
/**
 * A path capped to `off` is first made backup for this long: the far end stops sending on it, the
 * bytes already on their way arrive on a live subflow (counted, not lost and sent again), and only
 * then are its subflows closed.
 */
export const DRAIN_MS = 1000;

const UNITS: Record<string, number> = {
  b: 1, kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3, tib: 1024 ** 4,
};

/** "2GB", "500 MB", "1.5GiB" -> bytes (decimal units as carriers count; KiB/MiB/GiB binary). */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)\s*$/i.exec(text);
  if (!m) throw new Error(`'${text}' is not a size (examples: 500MB, 2GB, 1.5GiB)`);
  const n = Math.round(Number(m[1]) * UNITS[m[2].toLowerCase()]);
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`'${text}' is not a usable size`);
  return n;
}

/** "2GB/month", "500MB/day" -> bytes and period. */
export function parseCap(text: string): { bytes: number; period: CapPeriod } {
  const m = /^(.+)\/(day|month)$/i.exec(text.trim());
  if (!m) throw new Error(`'${text}' is not a cap (examples: 500MB/day, 2GB/month)`);
  return { bytes: parseSize(m[1]), period: m[2].toLowerCase() as CapPeriod };
}

export function formatSize(bytes: number): string {
  for (const [u, f] of [['TB', 1e12], ['GB', 1e9], ['MB', 1e6], ['kB', 1e3]] as const) {
    if (bytes >= f) {
      const v = bytes / f;
      return `${Number.isInteger(v) ? v : v.toFixed(v < 10 ? 2 : 1)} ${u}`;
    }
  }
  return `${bytes} B`;
}

export const formatCap = (c: { bytes: number; period: CapPeriod }): string => `${formatSize(c.bytes)}/${c.period}`;

const pad = (n: number): string => String(n).padStart(2, '0');
const daysIn = (y: number, m: number): number => new Date(y, m + 1, 0).getDate();

/** The period a cap counts now: its first day and the first day of the next (YYYY-MM-DD, local). */
export function capPeriod(cap: Pick<DataCap, 'period' | 'resetDay'>, now: number): { from: string; until: string } {
  const d = new Date(now);
  if (cap.period === 'day') {
    const next = new Date(d.getFullYear(), d.getMonth(), d.getDate() + 1);
    return { from: dayKey(now), until: dayKey(next.getTime()) };
  }
  const resetIn = (y: number, m: number): number => Math.min(cap.resetDay, daysIn(y, m));
  let y = d.getFullYear();
  let m = d.getMonth();
  if (d.getDate() < resetIn(y, m)) {
    m -= 1;
    if (m < 0) {
      m = 11;
      y -= 1;
    }
  }
  const ny = m === 11 ? y + 1 : y;
  const nm = (m + 1) % 12;
  return { from: `${y}-${pad(m + 1)}-${pad(resetIn(y, m))}`, until: `${ny}-${pad(nm + 1)}-${pad(resetIn(ny, nm))}` };
}

export interface CapState {
  iface: string;
  cap: DataCap;
  used: number;
  from: string;
  until: string;
  reached: boolean;
}

export interface CapEvents {
  reached: [CapState];
  lifted: [{ iface: string; why: string }];
}

/** Watches usage against caps each tick and demotes/lifts through the policy board. */
export class CapController extends EventEmitter<CapEvents> {
  /** iface -> bytes/s in the last two ticks */
  private readonly rate = new Map<string, [number, number]>();
  /** iface -> the cap in force when it was reached (a changed cap is judged afresh) */
  private readonly latched = new Map<string, string>();
  /** iface -> when a path being capped to off may go from backup to off (real time) */
  private readonly draining = new Map<string, number>();

  constructor(private readonly opts: { usage: UsageMeter; board: PolicyBoard; caps: () => Record<string, DataCap> }) {
    super();
    opts.usage.on('tick', (moved, seconds) => {
      for (const iface of new Set([...moved.keys(), ...this.rate.keys()])) {
        this.rate.set(iface, [this.rate.get(iface)?.[1] ?? 0, (moved.get(iface) ?? 0) / Math.max(0.05, seconds)]);
      }
      this.evaluate();
    });
  }

  private latchKey(c: DataCap, from: string): string {
    return `${from}|${c.bytes}|${c.period}|${c.resetDay}|${c.atCap}`;
  }

  state(iface: string, cap: DataCap): CapState {
    const now = this.opts.usage.now();
    const { from, until } = capPeriod(cap, now);
    const b = this.opts.usage.between(iface, from, dayKey(now));
    const key = this.latchKey(cap, from);
    return { iface, cap, used: b.up + b.down, from, until, reached: this.latched.get(iface) === key || this.opts.usage.reached.get(iface) === key };
  }

  /** Demotes paths that reach their caps and lifts those whose period ended or whose cap changed. */
  evaluate(): void {
    const caps = this.opts.caps();
    for (const [iface, cap] of Object.entries(caps)) {
      const s = this.state(iface, cap);
      const key = this.latchKey(cap, s.from);
      const projected = s.used + Math.max(...(this.rate.get(iface) ?? [0])) * LOOKAHEAD_S;
      if (s.reached || projected >= cap.bytes) {
        const first = !s.reached;
        this.latched.set(iface, key);
        this.opts.usage.markReached(iface, key);
        if (first && cap.atCap === 'off') this.draining.set(iface, Date.now() + DRAIN_MS);
        const drained = (this.draining.get(iface) ?? 0) <= Date.now();
        if (drained) this.draining.delete(iface);
        const to = cap.atCap === 'off' && !drained ? 'backup' : cap.atCap;
        this.opts.board.demote('cap', iface, { to, reason: `${iface} reached its cap ${formatCap(cap)} (${cap.atCap} until ${s.until})` });
        if (first) this.emit('reached', { ...s, reached: true });
      } else if (this.latched.has(iface) || this.opts.usage.reached.has(iface)) {
        this.lift(iface, 'a new period began, or the cap changed');
      }
    }
    for (const iface of [...this.latched.keys(), ...this.opts.usage.reached.keys()]) {
      if (!(iface in caps)) this.lift(iface, 'the cap was removed');
    }
  }

  private lift(iface: string, why: string): void {
    const had = this.latched.delete(iface);
    this.draining.delete(iface);
    this.opts.usage.markReached(iface, null);
    this.opts.board.demote('cap', iface, null);
    if (had) this.emit('lifted', { iface, why });
  }
}
