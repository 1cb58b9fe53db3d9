/**
 * Data used per interface per day: every byte Braid's subflows moved on an interface (bytes_acked
 * up, bytes_received down, the payload the link carried), kept in the state directory so that a
 * cap counts across restarts and reboots. Fed by the statistics engine as a SubflowObserver: each
 * read subflow's counter deltas, and the last bytes of connections that closed between two reads.
 *
 * Days are local calendar days (what a user and a carrier call a day). The clock is injectable
 * (tests; BRAID_TEST_CLOCK_FILE for a whole `braid up`, see testClock()).
 */
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { BraidError } from '../errors';
import type { SubflowInfo } from '../native/mptcp';
import type { Logger } from '../proxy/session';
import type { SubflowObserver } from '../stats/observer';

export interface Bytes {
  up: number;
  down: number;
}

/** Days of history kept: two months, enough for any monthly period and the one before it. */
export const HISTORY_DAYS = 62;
const SAVE_EVERY_MS = 2000;
const FILE_VERSION = 1;

interface UsageFile {
  version: number;
  /** YYYY-MM-DD (local) -> interface -> [up, down] */
  days: Record<string, Record<string, [number, number]>>;
  /** caps reached, kept so a restart within the period does not run the path up to its cap again: iface -> period key */
  reached?: Record<string, string>;
}

export const usageFile = (stateDir: string): string => path.join(stateDir, 'paths-usage.json');

/** Local calendar day of a time, as YYYY-MM-DD. */
export function dayKey(t: number): string {
  const d = new Date(t);
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
}

/**
 * A clock for usage periods: the real one, or, when BRAID_TEST_CLOCK_FILE names a file, the real
 * one plus the milliseconds written in it (so a test moves a running `braid up` to the next day).
 */
export function testClock(env = process.env): () => number {
  const file = env.BRAID_TEST_CLOCK_FILE;
  if (!file) return Date.now;
  return () => {
    let offset = 0;
    try {
      offset = Number(fs.readFileSync(file, 'utf8').trim()) || 0;
    } catch {
      /* no file yet: no offset */
    }
    return Date.now() + offset;
  };
}

export interface UsageEvents {
  /** per tick: bytes each interface moved in it, and the tick's length */
  tick: [Map<string, number>, number];
}

export class UsageMeter extends EventEmitter<UsageEvents> implements SubflowObserver {
  private days = new Map<string, Map<string, Bytes>>();
  private pending = new Map<string, Bytes>();
  reached = new Map<string, string>();
  private dirty = false;
  private lastSave = 0;
  readonly now: () => number;

  constructor(private readonly opts: { file: string | null; log: Logger; now?: () => number; readOnly?: boolean }) {
    super();
    this.now = opts.now ?? Date.now;
    this.load();
  }

  subflow(p: string, _s: SubflowInfo, dAcked: number, dReceived: number): void {
    this.add(p, dAcked, dReceived);
  }

  residual(p: string, up: number, down: number): void {
    this.add(p, up, down);
  }

  private add(p: string, up: number, down: number): void {
    if (up <= 0 && down <= 0) return;
    const b = this.pending.get(p);
    if (b) {
      b.up += Math.max(0, up);
      b.down += Math.max(0, down);
    } else this.pending.set(p, { up: Math.max(0, up), down: Math.max(0, down) });
  }

  tick(_engineNow: number, seconds: number): void {
    const now = this.now();
    const moved = new Map<string, number>();
    if (this.pending.size) {
      const day = this.dayMap(dayKey(now));
      for (const [p, b] of this.pending) {
        const t = day.get(p) ?? { up: 0, down: 0 };
        t.up += b.up;
        t.down += b.down;
        day.set(p, t);
        moved.set(p, b.up + b.down);
      }
      this.pending.clear();
      this.dirty = true;
    }
    this.emit('tick', moved, seconds);
    if (this.dirty && now - this.lastSave >= SAVE_EVERY_MS) this.save();
  }

  private dayMap(key: string): Map<string, Bytes> {
    let m = this.days.get(key);
    if (!m) {
      this.days.set(key, (m = new Map()));
      this.prune();
    }
    return m;
  }

  private prune(): void {
    const keys = [...this.days.keys()].sort();
    while (keys.length > HISTORY_DAYS) this.days.delete(keys.shift()!);
  }

  /** Bytes on `iface` on the days from `from` to `to` (YYYY-MM-DD, inclusive), counted up to now. */
  between(iface: string, from: string, to: string): Bytes {
    const out = { up: 0, down: 0 };
    for (const [k, m] of this.days) {
      if (k < from || k > to) continue;
      const b = m.get(iface);
      if (b) {
        out.up += b.up;
        out.down += b.down;
      }
    }
    const p = this.pending.get(iface);
    if (p && dayKey(this.now()) >= from && dayKey(this.now()) <= to) {
      out.up += p.up;
      out.down += p.down;
    }
    return out;
  }

  /** Every day kept, oldest first: {day, iface -> bytes}. */
  history(): { day: string; interfaces: Record<string, Bytes> }[] {
    return [...this.days.keys()].sort().map((day) => ({ day, interfaces: Object.fromEntries([...this.days.get(day)!].map(([k, b]) => [k, { ...b }])) }));
  }

  interfaces(): string[] {
    const out = new Set<string>();
    for (const m of this.days.values()) for (const k of m.keys()) out.add(k);
    return [...out].sort();
  }

  markReached(iface: string, period: string | null): void {
    if ((period === null && !this.reached.has(iface)) || this.reached.get(iface) === period) return;
    if (period === null) this.reached.delete(iface);
    else this.reached.set(iface, period);
    this.dirty = true;
    this.save();
  }

  private load(): void {
    if (!this.opts.file) return;
    let raw: string;
    try {
      raw = fs.readFileSync(this.opts.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.opts.log.warn(`data usage: cannot read ${this.opts.file}: ${(err as Error).message}; counting from zero`);
      return;
    }
    try {
      const f = JSON.parse(raw) as UsageFile;
      if (f.version !== FILE_VERSION || typeof f.days !== 'object' || f.days === null) throw new Error(`unknown format (version ${String(f.version)})`);
      for (const [day, ifaces] of Object.entries(f.days)) {
        if (!/^\d{4}-\d{2}-\d{2}$/.test(day) || typeof ifaces !== 'object' || ifaces === null) continue;
        const m = new Map<string, Bytes>();
        for (const [name, v] of Object.entries(ifaces)) {
          if (Array.isArray(v) && v.length === 2 && v.every((n) => Number.isFinite(n) && n >= 0)) m.set(name, { up: v[0], down: v[1] });
        }
        this.days.set(day, m);
      }
      for (const [k, v] of Object.entries(f.reached ?? {})) if (typeof v === 'string') this.reached.set(k, v);
      this.prune();
    } catch (err) {
      if (this.opts.readOnly) throw new BraidError('EUSAGEFILE', `${this.opts.file} is not readable: ${(err as Error).message}`);
      // Kept aside rather than overwritten: the user may want the numbers back.
      const aside = `${this.opts.file}.bad-${Date.now()}`;
      try {
        fs.renameSync(this.opts.file, aside);
      } catch {
        /* best effort */
      }
      this.opts.log.warn(`data usage: ${this.opts.file} is not readable (${(err as Error).message}); moved to ${aside}, counting from zero`);
    }
  }

  /** Writes the counts (atomically: a crash leaves the old file or the new one, never half of one). */
  save(): void {
    this.lastSave = this.now();
    if (!this.opts.file || !this.dirty || this.opts.readOnly) return;
    const f: UsageFile = { version: FILE_VERSION, days: {}, reached: Object.fromEntries(this.reached) };
    for (const [day, m] of this.days) f.days[day] = Object.fromEntries([...m].map(([k, b]) => [k, [b.up, b.down]]));
    const tmp = `${this.opts.file}.${process.pid}.tmp`;
    try {
      fs.mkdirSync(path.dirname(this.opts.file), { recursive: true });
      const fd = fs.openSync(tmp, 'w', 0o600);
      try {
        fs.writeSync(fd, JSON.stringify(f) + '\n');
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      fs.renameSync(tmp, this.opts.file);
      this.dirty = false;
    } catch (err) {
      fs.rmSync(tmp, { force: true });
      this.opts.log.warn(`data usage: cannot save ${this.opts.file}: ${(err as Error).message}`);
    }
  }
}

/** Reads a usage file without a meter running (`braid paths usage` with no braid up). */
export function readUsage(stateDir: string, now = Date.now): UsageMeter {
  const silent = { info() {}, warn() {}, debug() {} };
  return new UsageMeter({ file: usageFile(stateDir), log: silent, now, readOnly: true });
}
