/**
 * Where a connection's first subflow leaves, decided at dial time: the policy, not the routing
 * table, governs every byte. Among the interfaces whose routes reach the destination as well as the
 * best route does (the same prefix length: two default routes are alternatives, a VPN's or a LAN's
 * more specific route is not), the dialer tries the `use` paths first, best first by measured RTT
 * and rate, then `secondary`, then `backup`; `off` paths and paths the connection's rule does not
 * allow never. When the routing table's own choice is not a path Braid manages (a VPN tunnel, a
 * container bridge: interfaces of kind `other` that the user did not configure), the connection is
 * left to the routing table, so Braid never routes around a tunnel.
 *
 * The plan also carries what the userspace path manager needs for the connection's other subflows
 * (its rule, per path) and, when the choice is not the obvious one, a note for the connections list.
 */
import net from 'node:net';
import type { BraidError } from '../errors';
import { ExplainedDialError } from '../proxy/dial-errors';
import { listRoutes, type RouteInfo } from '../native/netlink';
import type { PolicyBoard } from './effective';
import { snapshot, type InterfaceState } from './inventory';
import type { PathPolicy, PathsConfig } from './policy';
import { matchRule, ruleAllows } from './rules';
import { tierOn, type ConnWish, type PathInfo } from './subflow-plan';
import { QUALITY_SOURCE } from './quality';

export interface FirstCandidate {
  iface: string;
  ifindex: number;
  tier: Exclude<PathPolicy, 'off'>;
  localAddress: string;
}

export interface RoutePlan {
  /** null: not Braid's to choose (paths unmanaged, loopback, a tunnel's route): dial as the routing table says */
  candidates: FirstCandidate[] | null;
  rule: string | null;
  wish: ConnWish;
  /** paths that are `secondary` on this connection (the secondary controller watches these) */
  secondary: string[];
  /** paths that are `use` on this connection */
  use: string[];
  note: string | null;
  /** set when no allowed path reaches the destination: the dial fails with it */
  error: BraidError | null;
}

export interface RouteTarget {
  /** the name the client asked for, if any (for host rules) */
  host: string | null;
  /** the address being dialled */
  address: string;
  port: number;
  /** the destination rules are matched against, when it differs from what is dialled (a relay's) */
  ruleTarget?: { host: string | null; address: string | null; port: number };
}

export interface PathMeasure {
  rttUs: number | null;
  /** highest rate seen on the path lately, bytes/s */
  peakBps: number | null;
}

export interface RouteChooserOptions {
  board: PolicyBoard;
  config: () => PathsConfig;
  measure?: (iface: string) => PathMeasure | null;
  /** injectable for tests */
  interfaces?: () => InterfaceState[];
  routes?: () => RouteInfo[];
}

const CACHE_MS = 1000;

function prefixCovers(route: RouteInfo, address: string, family: 4 | 6): boolean {
  if (route.family !== family) return false;
  if (route.isDefault || route.dstLen === 0) return true;
  if (!route.dst) return false;
  const list = new net.BlockList();
  list.addSubnet(route.dst, route.dstLen, family === 4 ? 'ipv4' : 'ipv6');
  return list.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

const TIER_ORDER: Record<string, number> = { use: 0, secondary: 1, backup: 2 };

export class RouteChooser {
  private cache: { at: number; ifaces: InterfaceState[]; routes: RouteInfo[] } | null = null;

  constructor(private readonly opts: RouteChooserOptions) {}

  /** Links, addresses or routes changed: the next plan reads them again. */
  invalidate(): void {
    this.cache = null;
    this.reachCache.clear();
  }

  private readonly reachCache = new Map<string, Map<string, { len: number; metric: number }>>();

  private state(): { ifaces: InterfaceState[]; routes: RouteInfo[] } {
    const now = Date.now();
    if (!this.cache || now - this.cache.at > CACHE_MS) {
      this.reachCache.clear();
      this.cache = { at: now, ifaces: (this.opts.interfaces ?? snapshot)(), routes: (this.opts.routes ?? listRoutes)() };
    }
    return this.cache;
  }

  /** Every interface as the userspace path manager sees it: with its effective policy. */
  paths(): PathInfo[] {
    return this.state().ifaces.map((i) => {
      const p = this.opts.board.policyOf(i);
      return {
        name: i.name, ifindex: i.ifindex, kind: i.kind, up: i.up,
        addresses: i.addresses.map((a) => ({ address: a.address, family: a.family })),
        policy: p.policy,
        managed: p.managed,
        slow: p.demotion?.source === QUALITY_SOURCE,
      };
    });
  }

  /**
   * The interfaces whose routes reach `address` as well as the best route does (the longest
   * prefix), with their best metric. A path outside this set would route around a more specific
   * route (a VPN's, a LAN's): neither the first subflow nor any other is opened there.
   */
  reach(address: string, family = net.isIP(address) as 0 | 4 | 6): Map<string, { len: number; metric: number }> {
    const out = new Map<string, { len: number; metric: number }>();
    if (family === 0) return out;
    const { ifaces, routes } = this.state();
    const cached = this.reachCache.get(address);
    if (cached) return cached;
    if (this.reachCache.size > 4096) this.reachCache.clear();
    this.reachCache.set(address, out);
    const byIfindex = new Map(ifaces.map((i) => [i.ifindex, i]));
    for (const r of routes) {
      if (r.type !== 1 || !prefixCovers(r, address, family)) continue;
      const idxs = r.nexthops?.length ? r.nexthops.map((n) => n.ifindex) : [r.ifindex];
      for (const idx of idxs) {
        const i = byIfindex.get(idx);
        if (!i) continue;
        const cur = out.get(i.name);
        const metric = r.priority ?? 0;
        if (!cur || r.dstLen > cur.len || (r.dstLen === cur.len && metric < cur.metric)) out.set(i.name, { len: r.dstLen, metric });
      }
    }
    const best = Math.max(-1, ...[...out.values()].map((v) => v.len));
    for (const [k, v] of out) if (v.len !== best) out.delete(k);
    return out;
  }

  /** The names of reach(address), or null when no route reaches it at all (then nothing is ruled out). */
  alternatives(address: string): Set<string> | null {
    const r = this.reach(address);
    return r.size ? new Set(r.keys()) : null;
  }

  plan(t: RouteTarget): RoutePlan {
    const cfg = this.opts.config();
    const family = net.isIP(t.address) as 0 | 4 | 6;
    const rt = t.ruleTarget ?? { host: t.host, address: t.address, port: t.port };
    const matched = matchRule(cfg.rules, rt);
    const { ifaces, routes } = this.state();
    const allowed = matched ? new Map<string, 'allowed' | 'backup'>() : null;
    if (matched) {
      for (const i of ifaces) {
        const a = ruleAllows(matched.rule, i);
        if (a !== 'no') allowed!.set(i.name, a);
      }
    }
    const wish: ConnWish = { allowed, secondary: 'idle', rule: matched?.label ?? null };
    const infos = new Map(this.paths().map((p) => [p.name, p]));
    const secondary = [...infos.values()].filter((p) => tierOn(p, wish) === 'secondary').map((p) => p.name);
    const use = [...infos.values()].filter((p) => tierOn(p, wish) === 'use').map((p) => p.name);
    const base = { rule: wish.rule, wish, secondary, use, note: null, error: null };
    if (!cfg.enabled || family === 0) return { ...base, candidates: null };
    const ip = new net.SocketAddress({ address: t.address, family: family === 4 ? 'ipv4' : 'ipv6' });
    if (ip.address.startsWith('127.') || ip.address === '::1' || /^fe80:/i.test(ip.address)) return { ...base, candidates: null };

    const reach = this.reach(t.address, family);
    if (reach.size === 0) return { ...base, candidates: null };
    const alternatives = ifaces.filter((i) => reach.has(i.name));
    const kernelChoice = alternatives.sort((a, b) => reach.get(a.name)!.metric - reach.get(b.name)!.metric)[0]!;
    const managed = (i: InterfaceState): boolean => infos.get(i.name)?.managed ?? false;
    if (!managed(kernelChoice)) return { ...base, candidates: null };

    const candidates: FirstCandidate[] = [];
    const excluded: string[] = [];
    for (const i of alternatives) {
      if (!managed(i)) continue;
      const info = infos.get(i.name)!;
      const tier = tierOn(info, wish);
      const local = i.addresses.find((a) => a.family === family);
      if (tier === 'off' || !i.up || !local) {
        excluded.push(`${i.name} ${!i.up ? 'is down' : !local ? `has no IPv${family} address` : info.policy === 'off' ? 'is off' : `is not allowed by rule "${wish.rule}"`}`);
        continue;
      }
      candidates.push({ iface: i.name, ifindex: i.ifindex, tier, localAddress: local.address });
    }
    const m = (n: string): PathMeasure | null => this.opts.measure?.(n) ?? null;
    candidates.sort((a, b) => {
      if (a.tier !== b.tier) return TIER_ORDER[a.tier]! - TIER_ORDER[b.tier]!;
      const ma = m(a.iface);
      const mb = m(b.iface);
      if (ma?.rttUs && mb?.rttUs && Math.abs(ma.rttUs - mb.rttUs) > 0.2 * Math.min(ma.rttUs, mb.rttUs)) return ma.rttUs - mb.rttUs;
      if (ma?.peakBps && mb?.peakBps && ma.peakBps !== mb.peakBps) return mb.peakBps - ma.peakBps;
      return reach.get(a.iface)!.metric - reach.get(b.iface)!.metric;
    });
    const dest = `${t.ruleTarget ? `${rt.host ?? rt.address}:${rt.port} (via ${t.address})` : `${t.host && t.host !== t.address ? `${t.host} (${t.address})` : t.address}`}`;
    if (candidates.length === 0) {
      const why = excluded.length ? excluded.join('; ') : 'no path has a route to it';
      return { ...base, candidates: [], error: new ExplainedDialError('ENOPATH', `no allowed path reaches ${dest}: ${why}`) };
    }
    let note: string | null = null;
    if (candidates[0]!.tier !== 'use') {
      note = `no use path reaches ${dest}${excluded.length ? ` (${excluded.join('; ')})` : ''}; first subflow on ${candidates[0]!.tier} path ${candidates[0]!.iface}`;
    }
    return { ...base, candidates, note };
  }
}
