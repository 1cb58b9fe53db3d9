/**
 * What the stats engine keeps per connection between reads, how far its subflows moved since the
 * last read, and the bytes no subflow read showed: those of a subflow that closed between two
 * reads, and those of a connection that closed after its last read. Data caps count every byte
 * (paths/usage.ts), so these go to the observers too.
 */
import type { SubflowView } from '../contract';
import type { MptcpInfo, SubflowInfo } from '../native/mptcp';
import type { ConnectionSnapshot } from '../proxy/tracker';
import type { SubflowObserver } from './observer';
import { NO_PROGRAM } from './programs';
import { addTo as add, splitByWeight } from './shares';

export interface SubflowMark {
  sent: number;
  received: number;
  path: string;
  dSent: number;          // how far the counters moved at that read (a closing connection's last bytes go where its last ones went)
  dReceived: number;
}

export interface ConnState {
  lastUp: number;                       // proxy-counted bytes when last visited
  lastDown: number;
  quiet: number;                        // consecutive visits in which they did not move
  counted: boolean;                     // `latest` is in the per-path subflow and RTT sums
  subflows: Map<string, SubflowMark> | null;   // subflow key -> its counters at the last read
  shareUp: Map<string, number> | null;         // path -> bytes attributed up so far (for residual splits)
  shareDown: Map<string, number> | null;
  latest: SubflowView[];
  wireUp: number;                       // bytes_acked deltas of its subflows, summed over reads
  wireDown: number;                     // bytes_received deltas
  connAcked: number;                    // the MPTCP connection's own bytes_acked / bytes_received at the last read (-1: unknown)
  connReceived: number;
  program: string;
}

export const NO_SUBFLOWS: SubflowView[] = [];

export const pathKey = (s: { interface: string | null; localAddress: string }): string => s.interface ?? s.localAddress;

export const newState = (): ConnState => ({ lastUp: 0, lastDown: 0, quiet: 0, counted: false, subflows: null, shareUp: null, shareDown: null, latest: NO_SUBFLOWS, wireUp: 0, wireDown: 0, connAcked: -1, connReceived: -1, program: NO_PROGRAM });

const subflowKey = (s: SubflowInfo): string => `${s.localAddress}|${s.localPort}|${s.remoteAddress}|${s.remotePort}`;

/**
 * How far each of a connection's subflows' counters moved since its last read, summed by path (the
 * weights its new bytes are split by), and the marks the next read measures from. Observers see
 * each subflow's movement.
 */
export function subflowMovement(state: ConnState, subflows: readonly SubflowInfo[], observers: readonly SubflowObserver[]): { up: Map<string, number>; down: Map<string, number>; marks: Map<string, SubflowMark> } {
  const up = new Map<string, number>();
  const down = new Map<string, number>();
  const marks = new Map<string, SubflowMark>();
  for (const s of subflows) {
    const key = subflowKey(s);
    const p = pathKey(s);
    const before = state.subflows?.get(key) ?? { sent: 0, received: 0, path: p, dSent: 0, dReceived: 0 };
    // Counters only grow; a smaller value means a new socket reused the 4-tuple.
    const dSent = s.bytesAcked >= before.sent ? s.bytesAcked - before.sent : s.bytesAcked;
    const dRecv = s.bytesReceived >= before.received ? s.bytesReceived - before.received : s.bytesReceived;
    add(up, p, dSent);
    add(down, p, dRecv);
    marks.set(key, { sent: s.bytesAcked, received: s.bytesReceived, path: p, dSent, dReceived: dRecv });
    if (observers.length) {
      state.wireUp += dSent;
      state.wireDown += dRecv;
      for (const o of observers) o.subflow(p, s, dSent, dRecv);
    }
  }
  return { up, down, marks };
}

/**
 * A subflow that closed since the last read (its path demoted or gone, a reset) took the bytes it
 * moved after that read with it. The MPTCP connection's own counters still have them: what they
 * moved beyond the remaining subflows' counters was carried by the subflows that went.
 */
export function vanishedSubflows(state: ConnState, seen: Map<string, SubflowMark>, conn: MptcpInfo, weightsUp: Map<string, number>, weightsDown: Map<string, number>, observers: readonly SubflowObserver[]): void {
  const known = state.connAcked >= 0;
  const dAcked = conn.bytesAcked - state.connAcked;
  const dReceived = conn.bytesReceived - state.connReceived;
  state.connAcked = conn.bytesAcked;
  state.connReceived = conn.bytesReceived;
  if (!known || observers.length === 0 || !state.subflows) return;
  const gone: string[] = [];
  for (const [k, m] of state.subflows) if (!seen.has(k)) gone.push(m.path);
  if (gone.length === 0) return;
  const sum = (m: Map<string, number>): number => [...m.values()].reduce((a, b) => a + b, 0);
  const gapUp = Math.max(0, dAcked - sum(weightsUp));
  const gapDown = Math.max(0, dReceived - sum(weightsDown));
  if (gapUp === 0 && gapDown === 0) return;
  const weights = new Map(gone.map((p) => [p, 1]));
  const ups = splitByWeight(gapUp, weights);
  const downs = splitByWeight(gapDown, weights);
  state.wireUp += gapUp;
  state.wireDown += gapDown;
  for (const p of weights.keys()) for (const o of observers) o.residual(p, ups.get(p) ?? 0, downs.get(p) ?? 0);
}

/**
 * A closed connection's bytes that its subflows never showed: what the proxy counted beyond the
 * subflows' own counters, for the observers (a download's last bytes after the last read).
 */
export function closedResidual(state: ConnState, snap: ConnectionSnapshot, observers: readonly SubflowObserver[]): void {
  // An MPTCP connection's own counters at the last read are the reference: its subflows' sum
  // also holds data sent twice (reinjected on another subflow), which would hide the last bytes.
  const restUp = Math.max(0, snap.bytesUp - (state.connAcked >= 0 ? state.connAcked : state.wireUp));
  const restDown = Math.max(0, snap.bytesDown - (state.connReceived >= 0 ? state.connReceived : state.wireDown));
  if (restUp === 0 && restDown === 0) return;
  const fallback = new Map([[state.latest[0] ? pathKey(state.latest[0]) : 'unknown', 1]]);
  // Split like the last read's movement (a path demoted meanwhile carried none of it), else like all of it.
  const lastUp = new Map<string, number>();
  const lastDown = new Map<string, number>();
  for (const m of state.subflows?.values() ?? []) {
    add(lastUp, m.path, m.dSent);
    add(lastDown, m.path, m.dReceived);
  }
  const ups = splitByWeight(restUp, lastUp.size ? lastUp : state.shareUp?.size ? state.shareUp : fallback);
  const downs = splitByWeight(restDown, lastDown.size ? lastDown : state.shareDown?.size ? state.shareDown : fallback);
  for (const k of new Set([...ups.keys(), ...downs.keys()])) for (const o of observers) o.residual(k, ups.get(k) ?? 0, downs.get(k) ?? 0);
}
