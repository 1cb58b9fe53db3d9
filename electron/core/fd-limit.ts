/**
 * Limits that fit the machine. A proxy's capacity is bounded by file descriptors: each proxied
 * connection holds two (the client's socket and the outbound one; through a relay the TLS stream
 * rides on that same outbound socket). Processes start with a small soft limit (often 1024) under a
 * much larger hard one, so, as Go's runtime does, Braid raises its soft limit to the hard limit at
 * start, and sizes the default connection limit from the result:
 *
 *   maxConnections = floor((soft limit − 256) / 2)
 *
 * The 256 reserved descriptors are for everything else the process holds (listeners, the control
 * API and its WebSocket clients, netlink and inotify sockets, the relay pool, DNS, log files) and for
 * the clients that are still told "too many connections" when the limit is reached.
 */
import fs from 'node:fs';
import { errorCode, errorMessage } from './errors';

export const FDS_PER_CONNECTION = 2;
export const RESERVED_FDS = 256;
/** The most the config accepts (config/schema.ts). */
const MAX_CONNECTIONS_CAP = 1_000_000;
/** What a process gets when nothing raised it, assumed when the limit cannot be read at all. */
const TYPICAL_SOFT_LIMIT = 1024;
/** macOS refuses a soft limit above OPEN_MAX even when the hard limit says unlimited (Go caps too). */
const DARWIN_OPEN_MAX = 10_240;

export interface FdLimitReport {
  soft: number;
  hard: number;
  /** the soft limit before the raise, or null when it was not changed */
  raisedFrom: number | null;
  /** why the limit could not be raised (or read), or null */
  error: string | null;
}

interface Rlimit { soft: number; hard: number }

function nativeLimit(soft?: number): Rlimit {
  // Required lazily: the addon may be missing, and Braid must still start (dialling plain TCP).
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('./native/rlimit') as typeof import('./native/rlimit')).nofileLimit(soft);
}

/** /proc/self/limits, for when the addon is not loaded (Linux only). */
function procLimit(): Rlimit | null {
  try {
    const line = fs.readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
    const [soft, hard] = (line ?? '').replace('Max open files', '').trim().split(/\s+/);
    const num = (v: string | undefined): number => (v === 'unlimited' ? Infinity : Number(v));
    if (!Number.isFinite(num(soft))) return null;
    return { soft: num(soft), hard: num(hard) };
  } catch {
    return null;
  }
}

/** The open-file limits now in force. */
export function currentFdLimit(): Rlimit {
  try {
    return nativeLimit();
  } catch {
    return procLimit() ?? { soft: TYPICAL_SOFT_LIMIT, hard: TYPICAL_SOFT_LIMIT };
  }
}

let report: FdLimitReport | null = null;

/**
 * Raises the soft open-file limit to the hard one, once per process (later calls return the first
 * report). Never throws: a limit that cannot be raised is reported and the process keeps its own.
 */
export function raiseFdLimit(): FdLimitReport {
  if (report) return report;
  let cur: Rlimit;
  try {
    cur = nativeLimit();
  } catch (err) {
    const fallback = currentFdLimit();
    // Without the addon the limit stays as it is; the missing addon is reported once, by whoever
    // needs it for more than this (the proxy's "MPTCP is not available").
    report = { ...fallback, raisedFrom: null, error: errorCode(err) === 'ENOADDON' ? null : `cannot read the open-file limit: ${errorMessage(err)}` };
    return report;
  }
  let target = Number.isFinite(cur.hard) ? cur.hard : Math.max(cur.soft, 1_048_576);
  if (process.platform === 'darwin') target = Math.min(target, DARWIN_OPEN_MAX);
  if (!(target > cur.soft)) {
    report = { ...cur, raisedFrom: null, error: null };
    return report;
  }
  try {
    const now = nativeLimit(target);
    report = { ...now, raisedFrom: cur.soft, error: null };
  } catch (err) {
    report = { ...cur, raisedFrom: null, error: `cannot raise the open-file limit from ${cur.soft} to ${target}: ${errorCode(err)} ${errorMessage(err)}` };
  }
  return report;
}

/** The connection limit that `soft` descriptors allow (see the formula above). */
export function connectionsForFds(soft: number): number {
  if (!Number.isFinite(soft)) return MAX_CONNECTIONS_CAP;
  return Math.max(1, Math.min(MAX_CONNECTIONS_CAP, Math.floor((soft - RESERVED_FDS) / FDS_PER_CONNECTION)));
}

/** The default for limits.maxConnections, from the limit in force now. */
export function defaultMaxConnections(): number {
  return connectionsForFds(currentFdLimit().soft);
}

/** Errors that mean "out of file descriptors" (the process's or the system's). */
export function isFdExhaustion(err: unknown): boolean {
  for (let e = err, i = 0; e && i < 4; e = (e as { cause?: unknown }).cause, i++) {
    const code = errorCode(e);
    if (code === 'EMFILE' || code === 'ENFILE') return true;
  }
  return false;
}
