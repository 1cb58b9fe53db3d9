/**
 * The host's interfaces as paths: kind, state, usable addresses, default route, and for WiFi the
 * SSID and signal. Links, addresses and routes come from rtnetlink (fast, no subprocess); WiFi
 * details from systeminformation, which shells out, so they are cached and fetched only when a WiFi
 * interface exists.
 */
import si from 'systeminformation';
import { listAddresses, listLinks, listRoutes, type AddressInfo } from '../native/netlink';
import { classify, readSysfs, type InterfaceKind } from './kinds';

export interface PathAddress {
  address: string;
  family: 4 | 6;
  prefixlen: number;
}

export interface InterfaceState {
  name: string;
  ifindex: number;
  kind: InterfaceKind;
  up: boolean;                  // administratively up and operationally running
  mac: string | null;
  linkKind: string | null;      // veth, bridge, wireguard ... (null for hardware)
  addresses: PathAddress[];     // global/site scope, ready for use (no DAD pending or failed)
  defaultRoute: boolean;
  ssid: string | null;
  signal: number | null;        // dBm (negative) or percent, as the platform reports
}

/** Addresses an endpoint can use: not loopback, not link-local, not tentative or deprecated. */
export function usable(a: AddressInfo): boolean {
  return (a.scope === 'global' || a.scope === 'site') && !a.tentative && !a.dadFailed && !a.deprecated;
}

export function snapshot(): InterfaceState[] {
  const links = listLinks();
  const addrs = listAddresses();
  const routes = listRoutes();
  const out: InterfaceState[] = [];
  for (const l of links) {
    if (l.loopback || !l.ifname) continue;
    const ifname = l.ifname;
    const kind = classify(ifname, readSysfs(ifname));
    out.push({
      name: ifname,
      ifindex: l.ifindex,
      kind,
      up: l.up && (l.running || l.operstate === 'unknown'),
      mac: l.mac,
      linkKind: l.linkKind,
      addresses: addrs
        .filter((a) => a.ifindex === l.ifindex && usable(a))
        .map((a) => ({ address: a.address, family: a.family, prefixlen: a.prefixlen })),
      defaultRoute: routes.some((r) => r.isDefault && (r.ifindex === l.ifindex || r.nexthops?.some((n) => n.ifindex === l.ifindex))),
      ssid: null,
      signal: null,
    });
  }
  return out;
}

interface WifiCache {
  at: number;
  byIface: Map<string, { ssid: string | null; signal: number | null }>;
}
let wifiCache: WifiCache | null = null;
const WIFI_TTL_MS = 10_000;

/** Adds SSID and signal to WiFi interfaces; never throws (the details are a nicety). */
export async function withWifiDetails(list: InterfaceState[]): Promise<InterfaceState[]> {
  if (!list.some((i) => i.kind === 'wifi')) return list;
  if (!wifiCache || Date.now() - wifiCache.at > WIFI_TTL_MS) {
    const byIface = new Map<string, { ssid: string | null; signal: number | null }>();
    try {
      for (const c of await si.wifiConnections()) {
        byIface.set(c.iface, { ssid: c.ssid || null, signal: Number.isFinite(c.signalLevel) ? c.signalLevel : null });
      }
    } catch {
      /* no iw/nmcli on this host: leave SSID unknown */
    }
    wifiCache = { at: Date.now(), byIface };
  }
  return list.map((i) => ({ ...i, ...(wifiCache!.byIface.get(i.name) ?? {}) }));
}
