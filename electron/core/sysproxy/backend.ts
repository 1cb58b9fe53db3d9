/**
 * The contract every desktop's system-proxy backend meets. A snapshot is backend-specific JSON
 * holding exactly what was there before Braid touched anything, so that restore puts back the
 * user's own values (including a manual proxy of their own), not some "proxy off" default.
 */

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export type ProxySnapshot = { [key: string]: Json };

export interface ProxySettings {
  /** Where Braid listens (SOCKS5 and HTTP on the same port). Never a wildcard address. */
  host: string;
  port: number;
  /** Hosts/networks that must not go through the proxy, in the neutral form of DEFAULT_BYPASS. */
  bypass: string[];
}

export interface SystemProxyBackend {
  readonly name: string;
  /** The environment its tools run with, when not the process's own (tests: a throwaway keyfile). */
  readonly env?: NodeJS.ProcessEnv;
  /** True when this backend's tools exist and can work on this machine/session. */
  available(): Promise<boolean>;
  read(): Promise<ProxySnapshot>;
  apply(settings: ProxySettings): Promise<void>;
  restore(snapshot: ProxySnapshot): Promise<void>;
  /**
   * Whether `current` still shows what Braid applied (`applied` is the snapshot read right after
   * apply). False means the user changed their proxy since, and a restore would clobber that choice.
   */
  stillApplied(current: ProxySnapshot, applied: ProxySnapshot): boolean;
}

/**
 * Loopback and link-local names: a local proxy that routed these to itself would break local
 * services (and itself). Backends translate the CIDR forms where the desktop has no CIDR syntax.
 */
export const DEFAULT_BYPASS: readonly string[] = ['localhost', '127.0.0.0/8', '::1', '*.local', '169.254.0.0/16'];

export function jsonEqual(a: Json | undefined, b: Json | undefined): boolean {
  if (a === b) return true;
  if (a === null || b === null || a === undefined || b === undefined || typeof a !== 'object' || typeof b !== 'object') return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const bb = b as Json[];
    return a.length === bb.length && a.every((v, i) => jsonEqual(v, bb[i]));
  }
  const ao = a as { [k: string]: Json };
  const bo = b as { [k: string]: Json };
  const keys = Object.keys(ao);
  if (keys.length !== Object.keys(bo).length) return false;
  return keys.every((k) => Object.prototype.hasOwnProperty.call(bo, k) && jsonEqual(ao[k], bo[k]));
}

/** "host:port" with IPv6 bracketed, the form most proxy settings take. */
export function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * The variables that decide *where* a desktop's proxy settings live. The journal keeps them, so
 * that whoever restores (the guardian, the next start) writes to the same place the settings were
 * applied, not to wherever its own environment happens to point.
 */
// Not the session bus address: it changes with every login, and a restore after a reboot must
// reach the new session's settings daemon, which stores them in the same place.
export const SETTINGS_LOCATION_ENV = ['GSETTINGS_BACKEND', 'XDG_CONFIG_HOME', 'HOME'] as const;

export function settingsLocation(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of SETTINGS_LOCATION_ENV) if (env[k] !== undefined) out[k] = env[k]!;
  return out;
}
