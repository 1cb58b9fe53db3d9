/**
 * The one place that says what each interface may carry now: the configured policy (config file,
 * `braid paths set`, the dashboard) overlaid with demotions. A demotion lowers a path for a reason
 * that is not the user's choice: a data cap reached, a path whose quality collapsed. Everything that
 * acts on paths reads `policyOf` here: the endpoints of the kernel path manager, the first subflow
 * the dialer picks, the subflows Braid's own path manager opens per connection, secondary paths
 * and rules. So a new reason to demote a path is one call:
 *
 *   board.demote('cap', 'wwan0', { to: 'off', reason: 'data cap 2 GB/month reached' });
 *   board.demote('cap', 'wwan0', null);   // lifted
 *
 * A demotion only ever lowers (use > secondary > backup > off); of several, the lowest wins, and
 * its reason is the one shown.
 */
import { EventEmitter } from 'node:events';
import type { InterfaceKind } from './kinds';
import { policyFor, POLICY_RANK, type PathPolicy, type PathsConfig } from './policy';

export interface Demotion {
  to: Exclude<PathPolicy, 'use'>;
  reason: string;
}

export interface EffectivePolicy {
  /** what the path may carry now */
  policy: PathPolicy;
  /** what the user configured (or the default for its kind) */
  configured: PathPolicy;
  explicit: boolean;
  /**
   * Whether Braid steers this interface: a kind it knows (WiFi, Ethernet, cellular), one the user
   * set a policy for, or one another program gave an MPTCP endpoint. An unconfigured tunnel or
   * bridge is not: connections the routing table sends there are left alone.
   */
  managed: boolean;
  /** the demotion in force, if it lowered the configured policy */
  demotion: (Demotion & { source: string }) | null;
}

export class PolicyBoard extends EventEmitter<{ changed: [] }> {
  /** source -> interface -> demotion */
  private readonly demotions = new Map<string, Map<string, Demotion>>();
  private adoption: ((iface: { name: string; kind: InterfaceKind }) => PathPolicy | null) | null = null;

  constructor(private readonly config: () => PathsConfig) {
    super();
  }

  /** Sets (or with null, lifts) the demotion `source` holds on `iface`; emits 'changed' when it changed. */
  demote(source: string, iface: string, d: Demotion | null): void {
    let bySource = this.demotions.get(source);
    const before = bySource?.get(iface);
    if (d === null) {
      if (!before) return;
      bySource!.delete(iface);
      if (bySource!.size === 0) this.demotions.delete(source);
    } else {
      if (before && before.to === d.to && before.reason === d.reason) return;
      if (!bySource) this.demotions.set(source, (bySource = new Map()));
      bySource.set(iface, { to: d.to, reason: d.reason });
    }
    this.emit('changed');
  }

  /** Every demotion held now, for status and tests. */
  list(): { source: string; iface: string; to: PathPolicy; reason: string }[] {
    const out: { source: string; iface: string; to: PathPolicy; reason: string }[] = [];
    for (const [source, m] of this.demotions) for (const [iface, d] of m) out.push({ source, iface, ...d });
    return out;
  }

  /**
   * While Braid is the path manager, the kernel's endpoints do nothing; an endpoint another program
   * (NetworkManager, an administrator) made on an interface Braid has no policy for (kind `other`,
   * not configured) is then taken as that interface's policy: `use`, or `backup` if flagged so.
   */
  setAdoption(fn: ((iface: { name: string; kind: InterfaceKind }) => PathPolicy | null) | null): void {
    this.adoption = fn;
  }

  policyOf(iface: { name: string; kind: InterfaceKind }): EffectivePolicy {
    const found = policyFor(this.config(), iface.name, iface.kind);
    const adopted = !found.explicit && iface.kind === 'other' ? this.adoption?.(iface) ?? null : null;
    const configured = adopted ?? found.policy;
    const explicit = found.explicit;
    const managed = explicit || iface.kind !== 'other' || adopted !== null;
    let policy = configured;
    let demotion: EffectivePolicy['demotion'] = null;
    for (const [source, m] of this.demotions) {
      const d = m.get(iface.name);
      if (d && POLICY_RANK[d.to] < POLICY_RANK[policy]) {
        policy = d.to;
        demotion = { ...d, source };
      }
    }
    return { policy, configured, explicit, managed, demotion };
  }
}
