/**
 * What subflows one MPTCP connection should have, as a pure function of what it has, the paths
 * (with their effective policy, effective.ts), what Braid wants for it (its rule and whether its
 * secondary paths are needed) and the subflows that recently failed. The userspace path manager
 * (userspace-pm.ts) runs the actions; tests drive this directly.
 *
 * Per path, on this connection:
 * - `use`: a subflow, not backup.
 * - `secondary`: none until the connection needs it ('active': a subflow, not backup); when the
 *   need ends ('standby') the subflow stays as backup, and goes when the need stays gone ('idle').
 *   When no `use` path carries the connection any more, secondary paths stand in as `use` would.
 * - `backup`: a subflow flagged backup (MP_JOIN's B bit), so failover needs no handshake.
 * - `off`, or not allowed by the connection's rule: nothing; an existing subflow is destroyed.
 * The first subflow cannot be moved: if its path is not `use` for this connection it is flagged
 * backup (MP_PRIO) as soon as another subflow can carry the data.
 *
 * A path demoted for its quality (`slow`) loses its carrying extra subflows instead of having them
 * flagged backup, when another subflow carries the connection; a backup subflow is opened there
 * again at once (its close is no failure, see userspace-pm.ts). So does its first subflow: the
 * connection lives on over the others (userspace-pm.ts also resets that subflow's socket, which the
 * kernel keeps half open). Why: MP_PRIO only steers the data the peer schedules from then on. What
 * its scheduler already put on the slow subflow (up to the subflow's send buffer: about 1 MB of a
 * 20 Mbit/s download was measured queued there) is still sent there, now at the slow path's rate,
 * and MPTCP delivers in order: the receiver's window fills with the fast path's data waiting for
 * it, and the fast path stalls too, for seconds. The kernel reinjects a subflow's unacknowledged
 * data on the others only when that subflow closes (__mptcp_close_ssk ->
 * __mptcp_retransmit_pending_data) or its MPTCP retransmit timer expires,
 * which every slow acknowledgement on the slow path re-arms.
 */
import type { InterfaceKind } from './kinds';
import { lowerPolicy, type PathPolicy } from './policy';

export interface PathInfo {
  name: string;
  ifindex: number;
  kind: InterfaceKind;
  up: boolean;
  addresses: { address: string; family: 4 | 6 }[];
  /** effective policy (configured, overlaid with demotions) */
  policy: PathPolicy;
  /** false: not a path Braid steers (an unconfigured tunnel or bridge); its first subflows are left alone */
  managed: boolean;
  /** demoted for its quality (RTT, loss): data queued on its subflows must move, not just new data */
  slow?: boolean;
}

export type SecondaryState = 'idle' | 'active' | 'standby';

export interface ConnWish {
  /** per interface name what the connection's rule lets it be; null = every path at its policy */
  allowed: Map<string, 'allowed' | 'backup'> | null;
  secondary: SecondaryState;
  rule: string | null;
}

export interface SubflowState {
  localAddress: string;
  localPort: number;
  remoteAddress: string;
  remotePort: number;
  iface: string | null;
  backup: boolean;
  initial: boolean;
}

export interface ConnState {
  token: number;
  family: 4 | 6;
  remoteAddress: string;
  remotePort: number;
  subflows: SubflowState[];
  /** remote addresses the peer announced (ADD_ADDR), beyond the one the connection was opened to */
  announced: { address: string; port: number }[];
}

export type SubflowAction =
  | { op: 'create'; iface: string; ifindex: number; localAddress: string; remoteAddress: string; remotePort: number; backup: boolean; why: string }
  | { op: 'destroy'; subflow: SubflowState; why: string }
  | { op: 'priority'; subflow: SubflowState; backup: boolean; why: string };

export interface PlanOptions {
  /** extra subflows at most (the first one not counted) */
  maxSubflows: number;
  /** `iface|remoteAddress` keys not to create now: a create is in flight or failed recently */
  hold: ReadonlySet<string>;
  /** the interfaces whose routes reach an address as well as its best route does (null: no route known, none ruled out) */
  reaches?: (address: string) => ReadonlySet<string> | null;
}

/** What a path is on this connection, before secondary needs are looked at. */
export function tierOn(path: PathInfo, wish: ConnWish | null): PathPolicy {
  if (path.policy === 'off') return 'off';
  const a = wish?.allowed ? wish.allowed.get(path.name) : 'allowed';
  if (a === undefined) return 'off';
  return a === 'backup' ? lowerPolicy(path.policy, 'backup') : path.policy;
}

export const subflowKey = (iface: string, remote: string): string => `${iface}|${remote}`;

export function planConnection(conn: ConnState, paths: PathInfo[], wish: ConnWish | null, opts: PlanOptions): SubflowAction[] {
  const byName = new Map(paths.map((p) => [p.name, p]));
  const usable = (p: PathInfo | undefined): p is PathInfo => !!p && p.up && p.addresses.some((a) => a.family === conn.family);
  // A path whose routes reach the peer less specifically than the best route would route around
  // that route (a VPN's, a LAN's): no subflow there.
  const reachSets = new Map<string, ReadonlySet<string> | null>();
  const routed = (p: PathInfo, address: string): boolean => {
    if (!opts.reaches) return true;
    if (!reachSets.has(address)) reachSets.set(address, opts.reaches(address));
    const set = reachSets.get(address);
    return !set || set.has(p.name);
  };
  const tier = (name: string | null): PathPolicy => {
    const p = name ? byName.get(name) : undefined;
    return p && p.up ? tierOn(p, wish) : 'off';
  };
  // Is some `use` path carrying it? If not, secondary paths stand in.
  // A first subflow on an interface Braid does not steer (or does not know) carries as it is.
  const unsteered = (name: string | null): boolean => !name || byName.get(name)?.managed === false;
  const useAlive = conn.subflows.some((s) => tier(s.iface) === 'use' || (s.initial && unsteered(s.iface)));
  const useWanted = paths.some((p) => usable(p) && routed(p, conn.remoteAddress) && tier(p.name) === 'use' && !opts.hold.has(subflowKey(p.name, conn.remoteAddress)));
  const secondaryMode: SecondaryState | 'rescue' = !useAlive && !useWanted ? 'rescue' : (wish?.secondary ?? 'idle');

  /** What a subflow on a path of this tier should be: carrying, backup, or absent. */
  const want = (t: PathPolicy, existing: boolean): 'carry' | 'backup' | 'none' => {
    if (t === 'use') return 'carry';
    if (t === 'backup') return 'backup';
    if (t === 'secondary') {
      if (secondaryMode === 'active' || secondaryMode === 'rescue') return 'carry';
      if (secondaryMode === 'standby' && existing) return 'backup';
      return 'none';
    }
    return 'none';
  };

  const actions: SubflowAction[] = [];
  const initial = conn.subflows.find((s) => s.initial) ?? null;
  const extras = conn.subflows.filter((s) => !s.initial);
  const remotes = [{ address: conn.remoteAddress, port: conn.remotePort }, ...conn.announced];
  const willCarry = new Set<string>();

  // Existing extra subflows: keep, reflag or destroy.
  const carries = (s: SubflowState): boolean => (s.initial && unsteered(s.iface)) || want(tier(s.iface), true) === 'carry';
  for (const s of extras) {
    const w = want(tier(s.iface), true);
    if (w === 'none') actions.push({ op: 'destroy', subflow: s, why: `${s.iface ?? s.localAddress} is ${describeTier(tier(s.iface), secondaryMode)} on this connection` });
    else if (w === 'backup' && !s.backup && s.iface && byName.get(s.iface)?.slow && conn.subflows.some((o) => o !== s && carries(o))) {
      actions.push({ op: 'destroy', subflow: s, why: `${s.iface} was demoted for its quality: closed, so that the peer sends what it had queued on it again over the other paths (reopened as backup)` });
    } else {
      if (w === 'carry') willCarry.add(s.iface ?? s.localAddress);
      if (s.backup !== (w === 'backup')) actions.push({ op: 'priority', subflow: s, backup: w === 'backup', why: w === 'backup' ? `${s.iface} only as backup now` : `${s.iface} carries again` });
    }
  }
  const initialWant = !initial ? 'none' : unsteered(initial.iface) ? 'carry' : want(tier(initial.iface), true);
  if (initial && initialWant === 'carry') willCarry.add(initial.iface ?? initial.localAddress);

  // New subflows: one per wanted path and remote address that has none.
  let count = extras.length - actions.filter((a) => a.op === 'destroy').length;
  const ordered = [...paths].sort((a, b) => rank(tier(a.name)) - rank(tier(b.name)));
  for (const p of ordered) {
    if (!usable(p)) continue;
    const w = want(tier(p.name), false);
    if (w === 'none') continue;
    const local = p.addresses.find((a) => a.family === conn.family)!;
    for (const r of remotes) {
      const has = conn.subflows.some((s) => s.iface === p.name && s.remoteAddress === r.address);
      if (has || !routed(p, r.address)) continue;
      // Toward an announced address, one subflow is enough (as the kernel's own path manager does).
      if (r !== remotes[0] && conn.subflows.some((s) => s.remoteAddress === r.address)) continue;
      if (r !== remotes[0] && w !== 'carry') continue;
      if (opts.hold.has(subflowKey(p.name, r.address))) continue;
      if (count >= opts.maxSubflows) break;
      count++;
      if (w === 'carry') willCarry.add(p.name);
      actions.push({ op: 'create', iface: p.name, ifindex: p.ifindex, localAddress: local.address, remoteAddress: r.address, remotePort: r.port, backup: w === 'backup', why: `${p.name} is ${describeTier(tier(p.name), secondaryMode)}` });
    }
  }

  // The first subflow: flagged backup when its path should not carry this connection, provided
  // something else will; cleared again when its path carries after all. On a path demoted for its
  // quality it is closed like any other subflow there, when another one carries the connection now
  // (the connection lives on without it; a backup subflow is opened on that path afterwards).
  if (initial && initialWant === 'backup' && initial.iface && byName.get(initial.iface)?.slow && conn.subflows.some((o) => o !== initial && carries(o))) {
    actions.push({ op: 'destroy', subflow: initial, why: `${initial.iface} was demoted for its quality: the first subflow is closed, so that the peer sends what it had queued on it again over the other paths (reopened as backup)` });
  } else if (initial) {
    const iname = initial.iface ?? initial.localAddress;
    const others = [...willCarry].some((n) => n !== iname);
    const backup = initialWant !== 'carry' && others;
    if (initial.backup !== backup) actions.push({ op: 'priority', subflow: initial, backup, why: backup ? `first subflow's path ${iname} is ${describeTier(tier(initial.iface), secondaryMode)} here` : `${iname} carries again` });
  }
  return actions;
}

const rank = (t: PathPolicy): number => ({ use: 0, secondary: 1, backup: 2, off: 3 })[t];

function describeTier(t: PathPolicy, secondary: SecondaryState | 'rescue'): string {
  if (t !== 'secondary') return t === 'off' ? 'off or not allowed' : t;
  return secondary === 'active' ? 'secondary, needed' : secondary === 'rescue' ? 'secondary, standing in for the use paths' : secondary === 'standby' ? 'secondary, need ended' : 'secondary, not needed';
}
