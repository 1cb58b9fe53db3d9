/**
 * Per-interface path policy. `use`: an MPTCP subflow endpoint, the link carries traffic alongside
 * the others. `backup`: a subflow endpoint flagged backup, carrying traffic only when no `use` path
 * works. `off`: no endpoint.
 *
 * Defaults by kind: WiFi and Ethernet `use`; cellular `backup` (usually metered, and the user
 * expects it to step in only when the others fail); anything else (`other`: bridges, VPN tunnels,
 * container veths) `off`, since adding endpoints on virtual links mostly creates useless subflows.
 */
import type { InterfaceKind } from './kinds';

export type PathPolicy = 'use' | 'backup' | 'off';
export const PATH_POLICIES: readonly PathPolicy[] = ['use', 'backup', 'off'];

export interface PathsConfig {
  enabled: boolean;                                // manage endpoints at all
  defaults: Record<InterfaceKind, PathPolicy>;
  interfaces: Record<string, PathPolicy>;          // by interface name; beats the default
  maxSubflows: number;                             // the kernel's limit is 8
}

export function defaultPathsConfig(): PathsConfig {
  return {
    enabled: true,
    defaults: { wifi: 'use', ethernet: 'use', cellular: 'backup', other: 'off' },
    interfaces: {},
    maxSubflows: 8,
  };
}

export function policyFor(cfg: PathsConfig, ifname: string, kind: InterfaceKind): { policy: PathPolicy; explicit: boolean } {
  const explicit = cfg.interfaces[ifname];
  return explicit ? { policy: explicit, explicit: true } : { policy: cfg.defaults[kind], explicit: false };
}
