/**
 * Per-interface path policy. `use`: the link carries traffic alongside the others, from a
 * connection's first byte. `secondary`: joins a connection only when that connection needs it (it
 * is bulk and its `use` paths are saturated; see secondary.ts), and leaves it when the need ends.
 * `backup`: carries traffic only when no `use` path works. `off`: carries nothing.
 *
 * Defaults by kind: WiFi and Ethernet `use`; cellular `backup` (usually metered, and the user
 * expects it to step in only when the others fail); anything else (`other`: bridges, VPN tunnels,
 * container veths) `off`, since adding subflows on virtual links mostly creates useless ones.
 */
import type { InterfaceKind } from './kinds';
import type { PathRule } from './rules';
import type { DataCap } from './caps';
import { defaultQualityConfig, type QualityConfig } from './quality';

export type PathPolicy = 'use' | 'secondary' | 'backup' | 'off';
export const PATH_POLICIES: readonly PathPolicy[] = ['use', 'secondary', 'backup', 'off'];

/**
 * How subflows are made. `userspace`: Braid is the network namespace's MPTCP path manager
 * (net.mptcp.path_manager = userspace) and decides per connection: secondary paths, rules. `kernel`:
 * the kernel's in-kernel path manager with one endpoint per address, applied to every connection
 * alike (secondary then acts as backup, and rules only choose the first subflow).
 */
export type PathManagerKind = 'userspace' | 'kernel';

export interface PathsConfig {
  enabled: boolean;                                // manage paths at all
  manager: PathManagerKind;
  defaults: Record<InterfaceKind, PathPolicy>;
  interfaces: Record<string, PathPolicy>;          // by interface name; beats the default
  maxSubflows: number;                             // extra subflows per connection (the kernel's limit is 8)
  rules: PathRule[];                               // per destination: which paths a connection may use
  caps: Record<string, DataCap>;                   // data caps by interface name (paths/caps.ts)
  quality: QualityConfig;                          // demotion of paths whose RTT or loss degrades (paths/quality.ts)
}

export function defaultPathsConfig(): PathsConfig {
  return {
    enabled: true,
    manager: 'userspace',
    defaults: { wifi: 'use', ethernet: 'use', cellular: 'backup', other: 'off' },
    interfaces: {},
    maxSubflows: 8,
    rules: [],
    caps: {},
    quality: defaultQualityConfig(),
  };
}

export function policyFor(cfg: PathsConfig, ifname: string, kind: InterfaceKind): { policy: PathPolicy; explicit: boolean } {
  const explicit = cfg.interfaces[ifname];
  return explicit ? { policy: explicit, explicit: true } : { policy: cfg.defaults[kind], explicit: false };
}

/** How much a policy lets a path carry: a demotion can only lower it. */
export const POLICY_RANK: Record<PathPolicy, number> = { off: 0, backup: 1, secondary: 2, use: 3 };

export const lowerPolicy = (a: PathPolicy, b: PathPolicy): PathPolicy => (POLICY_RANK[a] <= POLICY_RANK[b] ? a : b);
