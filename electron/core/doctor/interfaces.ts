/**
 * The doctor's local checks, one interface at a time: is it up with an address, does it have the
 * MPTCP endpoint its policy calls for (and whose is it), and can a subflow bound to it reach the
 * relay (or a given target) at all. The last one is the policy-routing trap: a subflow bound to an
 * interface uses that interface's routes only, and without one the kernel sends it as if the relay
 * were on the local link, where nothing answers.
 */
import fs from 'node:fs';
import { errorCode } from '../errors';
import * as netlink from '../native/netlink';
import type { PmEndpoint, RouteInfo } from '../native/netlink';
import type { InterfaceState } from '../paths/inventory';
import { endpointsRecordFile } from '../paths/records';
import { policyFor, type PathPolicy, type PathsConfig } from '../paths/policy';
import { currentNetns } from '../paths/reconcile';
import type { Findings } from './findings';

export interface Target {
  host: string;
  port: number;
  addresses: string[];   // resolved, numeric
  label: string;         // "the relay 203.0.113.5:8443", "example.org:443", "the internet"
  isRelay: boolean;
}

export interface PathCandidate {
  iface: InterfaceState;
  policy: PathPolicy;
  policyExplicit: boolean;
  /** Its address towards the target (the target's family), or its first one. */
  address: string | null;
  /** The target address of that family. */
  targetAddress: string | null;
  /** Endpoints for its addresses (or bound to it). */
  endpoints: PmEndpoint[];
  /** The first subflow of each connection to the target leaves here (the routing table's choice). */
  primary: boolean;
  /** Could carry traffic: up, addressed, and not off (or has an endpoint, or is primary). */
  usable: boolean;
  /** Route from this interface to the target: true, false, or null when not checked. */
  route: boolean | null;
  /** The gateway of that route (null: on the link, or no route). */
  routeVia: string | null;
  /** What path management last said about it (a running braid up), in words. */
  note: string | null;
}

export interface InterfaceInput {
  interfaces: InterfaceState[];
  endpoints: PmEndpoint[];
  paths: PathsConfig;
  /** Endpoint ids Braid made (its own record, or a running manager's view). */
  braidIds: Set<number>;
  /** Braid manages endpoints now (a running braid up with path management). */
  managed: boolean;
  /** Braid is the (userspace) path manager: subflows come from it per connection, not from endpoints. */
  braidIsPathManager?: boolean;
  notes: Map<string, string | null>;
  target: Target | null;
}

/** Endpoint ids recorded by a Braid that manages endpoints in this network namespace. */
export function recordedBraidIds(stateDir: string | null): Set<number> {
  if (!stateDir) return new Set();
  try {
    const rec = JSON.parse(fs.readFileSync(endpointsRecordFile(stateDir), 'utf8')) as { netns?: string | null; owned?: { id: number }[] };
    if (rec.netns && rec.netns !== currentNetns()) return new Set();
    return new Set((rec.owned ?? []).map((o) => o.id));
  } catch {
    return new Set();
  }
}

const familyOf = (a: string): 4 | 6 => (a.includes(':') ? 6 : 4);

/** The route the kernel gives an unbound socket towards `dst`, or null. */
function primaryRoute(dst: string): RouteInfo | null {
  try {
    return netlink.routeGet({ dst, fibMatch: true });
  } catch {
    return null;
  }
}

const viaIface = (r: RouteInfo | null, ifindex: number): boolean =>
  !!r && (r.ifindex === ifindex || (r.nexthops ?? []).some((n) => n.ifindex === ifindex));

export function gatherCandidates(input: InterfaceInput): PathCandidate[] {
  const target = input.target;
  const primaryByFamily = new Map<4 | 6, RouteInfo | null>();
  for (const a of target?.addresses ?? []) if (!primaryByFamily.has(familyOf(a))) primaryByFamily.set(familyOf(a), primaryRoute(a));
  return input.interfaces.map((iface) => {
    const { policy, explicit } = policyFor(input.paths, iface.name, iface.kind);
    const targetAddress = target?.addresses.find((t) => iface.addresses.some((a) => a.family === familyOf(t))) ?? null;
    const address = (targetAddress ? iface.addresses.find((a) => a.family === familyOf(targetAddress))?.address : iface.addresses[0]?.address) ?? null;
    const endpoints = input.endpoints.filter((e) => e.ifindex === iface.ifindex || iface.addresses.some((a) => a.address === e.address));
    const primary = targetAddress !== null && viaIface(primaryByFamily.get(familyOf(targetAddress)) ?? null, iface.ifindex);
    const carries = policy !== 'off' || endpoints.some((e) => e.flagNames.includes('subflow')) || primary;
    return {
      iface, policy, policyExplicit: explicit, address, targetAddress, endpoints, primary,
      usable: carries && iface.up && iface.addresses.length > 0,
      route: null,
      routeVia: null,
      note: input.notes.get(iface.name) ?? null,
    };
  });
}

/** Interfaces worth a word: anything that could carry traffic, or that the user set explicitly. */
export const relevant = (c: PathCandidate): boolean =>
  c.policy !== 'off' || c.policyExplicit || c.endpoints.length > 0 || c.primary;

export function interfaceFindings(cands: PathCandidate[], input: InterfaceInput, f: Findings): void {
  for (const c of cands) {
    if (!relevant(c)) continue;
    const name = c.iface.name;
    if (c.policy === 'off' && c.endpoints.length === 0 && !c.primary) {
      f.ok('iface.policy', name, `${name} is not used: its policy is off${c.policyExplicit ? '' : ` (the default for ${c.iface.kind} links)`}.`);
      continue;
    }
    if (!c.iface.up) {
      f.warn('iface.up', name, `${name} is down: it carries nothing until it comes back.`, `bring it up (cable, WiFi, modem), or \`ip link set ${name} up\``);
      continue;
    }
    if (c.iface.addresses.length === 0) {
      f.warn('iface.up', name, `${name} is up but has no usable address (DHCP not finished, or IPv6 still being checked): it carries nothing yet.`,
        `check the connection's settings (e.g. \`nmcli device show ${name}\`)`);
      continue;
    }
    f.ok('iface.up', name, `${name} is up with ${c.iface.addresses.map((a) => a.address).join(', ')}.`);
    if (input.braidIsPathManager) {
      f.ok('iface.endpoint', name, `Braid opens subflows over ${name} per connection (policy ${c.policy}); no MPTCP endpoint is needed.`);
      continue;
    }
    endpointFinding(c, input, f);
  }
  // Endpoints on no interface of this host are leftovers: they make the kernel try addresses that do not exist.
  const known = new Set(cands.flatMap((c) => c.endpoints.map((e) => e.id)));
  for (const e of input.endpoints) {
    if (known.has(e.id)) continue;
    f.warn('iface.foreign', null, `MPTCP endpoint id ${e.id} (${e.address}, ${e.flagNames.join(' ') || 'no flags'}) matches no interface here: a leftover.`,
      `sudo ip mptcp endpoint delete id ${e.id}`);
  }
}

function endpointFinding(c: PathCandidate, input: InterfaceInput, f: Findings): void {
  const name = c.iface.name;
  const subflowEps = c.endpoints.filter((e) => e.flagNames.includes('subflow'));
  const describe = (e: PmEndpoint): string => `id ${e.id}, ${e.address}, ${e.flagNames.join(' ') || 'no flags'}${e.ifname ? `, dev ${e.ifname}` : ''}`;
  for (const e of c.endpoints.filter((x) => !input.braidIds.has(x.id) && !x.flagNames.includes('implicit'))) {
    f.ok('iface.foreign', name, `The MPTCP endpoint of ${name} (${describe(e)}) was made by another program or an administrator, not Braid; Braid leaves it alone.`);
  }
  const addAdvice = `sudo ip mptcp endpoint add ${c.address} dev ${name} subflow${c.policy === 'backup' ? ' backup' : ''}`;
  if (subflowEps.length === 0) {
    if (c.policy === 'off' && !c.primary) return;
    if (c.primary && !input.managed) {
      f.ok('iface.endpoint', name, `${name} has no MPTCP endpoint, but it carries the first subflow of each connection (it holds the route to ${input.target?.label ?? 'the destination'}), which needs none.`);
      return;
    }
    const why = input.managed && c.note ? ` Path management says: ${c.note}.` : '';
    f.fail('iface.endpoint', name, `${name} has no MPTCP "subflow" endpoint, so connections never open a subflow over it.${why}`,
      input.managed ? `see the note above; or by hand: ${addAdvice}` : `run braid up with path management (as root, or with \`sudo braid paths daemon\`), or by hand: ${addAdvice}`);
    return;
  }
  const e = subflowEps[0];
  const backup = e.flagNames.includes('backup');
  if (c.policy === 'use' && backup) {
    f.warn('iface.endpoint', name, `${name}'s endpoint (${describe(e)}) is a backup: its subflow carries data only when no other path works.`,
      input.braidIds.has(e.id) ? `braid paths set ${name} use` : `sudo ip mptcp endpoint change id ${e.id} nobackup`);
  } else if (c.policy === 'backup' && !backup) {
    f.warn('iface.endpoint', name, `${name}'s policy is backup, but its endpoint (${describe(e)}) is not: it carries data all the time.`,
      input.braidIds.has(e.id) ? null : `sudo ip mptcp endpoint change id ${e.id} backup`);
  } else {
    f.ok('iface.endpoint', name, `${name} has an MPTCP subflow endpoint (${describe(e)})${input.braidIds.has(e.id) ? ', made by Braid' : ''}.`);
  }
  if (e.ifindex === 0 && !c.primary) {
    f.warn('iface.endpoint', name, `${name}'s endpoint (${describe(e)}) names no interface: its subflows are routed by the main table, which may send them out of another interface with ${name}'s address.`,
      `sudo ip mptcp endpoint delete id ${e.id} && ${addAdvice}`);
  }
}

/** Gateways seen on an interface in any routing table, for a fix that can be pasted. */
function gatewaysOn(ifindex: number, family: 4 | 6): { gateway: string; table: number }[] {
  let routes: RouteInfo[] = [];
  try {
    routes = netlink.listRoutes();
  } catch {
    return [];
  }
  const out: { gateway: string; table: number }[] = [];
  for (const r of routes) {
    if (r.family !== family) continue;
    if (r.gateway && r.ifindex === ifindex) out.push({ gateway: r.gateway, table: r.table });
    for (const n of r.nexthops ?? []) if (n.gateway && n.ifindex === ifindex) out.push({ gateway: n.gateway, table: r.table });
  }
  return out;
}

/**
 * Whether a subflow bound to each usable interface finds a route to the target, asked of the
 * kernel with the interface as output device and its address as source (so `ip rule from` rules
 * apply), matching routing-table entries only.
 */
export function routeFindings(cands: PathCandidate[], target: Target, f: Findings): void {
  for (const c of cands) {
    if (!c.usable) continue;
    const name = c.iface.name;
    if (!c.targetAddress || !c.address) {
      f.warn('path.route', name, `${name} has no address of the family ${target.label} uses (${target.addresses.join(', ')}): it cannot reach it.`);
      c.route = false;
      continue;
    }
    let r: RouteInfo | null = null;
    let err = '';
    try {
      r = netlink.routeGet({ dst: c.targetAddress, src: c.address, oif: c.iface.ifindex, fibMatch: true });
    } catch (e) {
      err = errorCode(e);
    }
    if (r && viaIface(r, c.iface.ifindex)) {
      c.route = true;
      const via = r.gateway ?? r.nexthops?.find((n) => n.ifindex === c.iface.ifindex)?.gateway ?? null;
      c.routeVia = via;
      const table = r.table !== 254 ? ` (table ${r.table})` : '';
      f.ok('path.route', name, `${name} has a route to ${target.label}: ${r.isDefault ? 'default' : `${r.dst}/${r.dstLen}`}${via ? ` via ${via}` : ' on the link'}${table}.`);
      continue;
    }
    c.route = false;
    const family = familyOf(c.targetAddress);
    const gws = gatewaysOn(c.iface.ifindex, family);
    const ip = family === 6 ? 'ip -6' : 'ip';
    const otherTable = gws.find((g) => g.table !== 254);
    let fix: string;
    if (otherTable) {
      fix = `sudo ${ip} rule add from ${c.address} table ${otherTable.table}  (${name}'s routes are in table ${otherTable.table}, but no rule sends its traffic there)`;
    } else {
      const gw = gws[0]?.gateway ?? 'GATEWAY';
      const where = gws.length ? '' : `, where GATEWAY is ${name}'s router (\`ip route show dev ${name}\` on a working setup, or its DHCP lease)`;
      fix = `sudo ${ip} route add default via ${gw} dev ${name} metric 600${where}: a default route for ${name} behind your main one; or policy routing: \`${ip} rule add from ${c.address} table 100\` and \`${ip} route add default via ${gw} dev ${name} table 100\``;
    }
    f.fail('path.route', name, `${name} has no route to ${target.label}${err ? ` (the kernel answers ${err})` : ''}: a subflow bound to ${name} is sent as if ${c.targetAddress} were on ${name}'s local network, where nothing answers, so ${name} carries nothing.`, fix);
  }
}
