/**
 * Path management over netlink, typed: MPTCP endpoints and limits (the kernel's `mptcp_pm` generic
 * netlink family, what `ip mptcp` speaks), MPTCP connection/subflow events, and rtnetlink watching
 * of links, addresses and routes. Everything acts in the network namespace of this process.
 *
 * Changing endpoints or limits, and subscribing to MPTCP events, needs CAP_NET_ADMIN (errors then
 * have code 'EPERM'); listing and link watching do not. Kernel refusals keep the kernel's errno as
 * `code` and its explanation in the message (e.g. EINVAL "limit greater than maximum (8)").
 */
import net from 'node:net';
import { binding } from './binding';

// ---- endpoint flags: the one place where names and bits meet ----------------------------------

/** MPTCP_PM_ADDR_FLAG_*. `laminar` exists from kernel 6.18; older kernels drop unknown bits. */
export const ENDPOINT_FLAGS = {
  signal: 1 << 0,    // announce this address to peers (ADD_ADDR)
  subflow: 1 << 1,   // open additional subflows from this address
  backup: 1 << 2,    // subflows from it are backup: used when no other path works
  fullmesh: 1 << 3,  // one subflow from it to every known peer address
  implicit: 1 << 4,  // created by the kernel for a subflow's address; read-only
  laminar: 1 << 5,
} as const;

export type EndpointFlagName = keyof typeof ENDPOINT_FLAGS;
export type EndpointFlags = number | readonly EndpointFlagName[];

const FLAG_NAMES = Object.keys(ENDPOINT_FLAGS) as EndpointFlagName[];

export function flagNames(bits: number): EndpointFlagName[] {
  return FLAG_NAMES.filter((n) => (bits & ENDPOINT_FLAGS[n]) !== 0);
}

export function flagBits(flags: EndpointFlags): number {
  if (typeof flags === 'number') {
    if (!Number.isInteger(flags) || flags < 0 || flags > 0xffffffff) throw invalid(`flags must be a 32-bit unsigned integer, got ${flags}`);
    return flags;
  }
  if (!Array.isArray(flags)) throw invalid('flags must be a number or an array of flag names');
  let bits = 0;
  for (const name of flags) {
    const bit = (ENDPOINT_FLAGS as Record<string, number>)[name as string];
    if (bit === undefined) throw invalid(`unknown endpoint flag '${String(name)}' (known: ${FLAG_NAMES.join(', ')})`);
    bits |= bit;
  }
  return bits;
}

/** MPTCP_PM_EV_FLAG_* in the `flags` of created/established events. */
export const PM_EVENT_FLAGS = {
  denyJoinId0: 1 << 0,  // the peer refuses subflows to its initial address
  serverSide: 1 << 1,   // this host accepted the connection
} as const;

function invalid(message: string): Error {
  return Object.assign(new TypeError(message), { code: 'ERR_INVALID_ARG_VALUE' });
}

// ---- endpoints and limits --------------------------------------------------------------------

export interface PmEndpoint {
  id: number;
  family: 4 | 6;
  address: string;
  port: number;                 // 0 = none
  flags: number;
  flagNames: EndpointFlagName[];
  ifindex: number;              // 0 = any interface
  ifname: string | null;
}

export interface AddEndpointOptions {
  address: string;
  id?: number;                  // 1..255; default: the kernel picks
  flags?: EndpointFlags;        // default none (the endpoint then only serves as id for the address)
  ifindex?: number;
  device?: string;              // interface name, instead of ifindex
  port?: number;                // only with 'signal'
}

/** An endpoint by id, or by address (the only way to reach id 0, the initial subflow's). */
export type EndpointSelector = { id: number; address?: string } | { id?: number; address: string };

export interface PmLimits {
  subflows: number;             // additional subflows per connection
  addAddrAccepted: number;      // peer ADD_ADDRs acted upon per connection
}

export interface PmFamilyInfo {
  id: number;
  version: number;
  eventsGroup: number;
}

type RawEndpoint = Omit<PmEndpoint, 'flagNames'>;

/** The kernel's mptcp_pm family; throws ENOENT when the kernel has no MPTCP path manager. */
export const pmFamily = (): PmFamilyInfo => binding.pmFamily();

export function listEndpoints(): PmEndpoint[] {
  return binding.pmListEndpoints().map((e) => ({ ...e, flagNames: flagNames(e.flags) }));
}

/** Adds an endpoint and returns its id (the kernel's choice unless `id` was given). */
export function addEndpoint(opts: AddEndpointOptions): number {
  const { flags, ...rest } = opts;
  return binding.pmAddEndpoint({ ...rest, flags: flagBits(flags ?? 0) });
}

export function removeEndpoint(sel: EndpointSelector): void {
  binding.pmRemoveEndpoint(sel);
}

export interface FlagChange {
  backup?: boolean;
  fullmesh?: boolean;
}

/**
 * Changes an endpoint's backup/fullmesh flags (the only ones the kernel lets change in place;
 * others need remove + add). `change` is either the complete wanted set, or booleans for just the
 * flags to flip, the rest being read from the current endpoint.
 */
export function setEndpointFlags(sel: EndpointSelector, change: EndpointFlags | FlagChange): void {
  let bits: number;
  if (typeof change === 'number' || Array.isArray(change)) {
    bits = flagBits(change as EndpointFlags);
  } else {
    const c = change as FlagChange;
    const current = findEndpoint(sel);
    if (!current) {
      throw Object.assign(new Error(`no MPTCP endpoint ${sel.id !== undefined ? `with id ${sel.id}` : `with address ${sel.address}`}`), { code: 'ENOENT' });
    }
    bits = current.flags;
    if (c.backup !== undefined) bits = c.backup ? bits | ENDPOINT_FLAGS.backup : bits & ~ENDPOINT_FLAGS.backup;
    if (c.fullmesh !== undefined) bits = c.fullmesh ? bits | ENDPOINT_FLAGS.fullmesh : bits & ~ENDPOINT_FLAGS.fullmesh;
  }
  binding.pmSetFlags({ ...sel, flags: bits });
}

function findEndpoint(sel: EndpointSelector): PmEndpoint | undefined {
  return listEndpoints().find((e) => (sel.id !== undefined && sel.id !== 0 ? e.id === sel.id : e.address === normalizeAddress(sel.address ?? '')));
}

function normalizeAddress(a: string): string {
  // The kernel reports IPv6 in canonical form ('fd00::1'); the caller may not have written it so.
  const family = net.isIP(a);
  return family === 0 ? a : new net.SocketAddress({ address: a, family: family === 6 ? 'ipv6' : 'ipv4' }).address;
}

/** Removes every endpoint (`ip mptcp endpoint flush`). */
export const flushEndpoints = (): void => binding.pmFlushEndpoints();

export const getLimits = (): PmLimits => binding.pmGetLimits();

/** Sets the given limits (an absent one is left as is) and returns the limits now in force. */
export const setLimits = (limits: Partial<PmLimits>): PmLimits => binding.pmSetLimits(limits);

// ---- the userspace path manager: one connection's subflows ---------------------------------

/**
 * A subflow of one connection (named by its MPTCP token), for the kernel's userspace path manager
 * (`net.mptcp.path_manager = userspace`, set when the connection was created). Needs CAP_NET_ADMIN.
 * The kernel refuses with EINVAL for a connection the in-kernel path manager owns.
 */
export interface SubflowCreateOptions {
  token: number;
  localAddress: string;
  /** 1..255, the same for the same address on one connection (the kernel checks the pair). */
  localId: number;
  /** bind the subflow to this interface (its routes are then used) */
  ifindex?: number;
  /** flag it backup in its MP_JOIN: the peer's scheduler uses it only when no other subflow works */
  backup?: boolean;
  remoteAddress: string;
  remotePort: number;
}

export interface SubflowSelector {
  token: number;
  localAddress: string;
  localPort: number;
  remoteAddress: string;
  remotePort: number;
}

/** Opens a subflow; the outcome comes later as a sub_established or sub_closed event. */
export const subflowCreate = (o: SubflowCreateOptions): void => binding.pmSubflowCreate(o);
/** Closes one subflow of a connection (ESRCH when there is no such subflow). */
export const subflowDestroy = (o: SubflowSelector): void => binding.pmSubflowDestroy(o);
/** MP_PRIO on one subflow: backup (used only when no other works) or not. Ports may be 0 = any. */
export const subflowPriority = (o: Omit<SubflowSelector, 'localPort' | 'remotePort'> & { localPort?: number; remotePort?: number; backup: boolean }): void =>
  binding.pmSubflowPriority(o);

// ---- watches ---------------------------------------------------------------------------------

/**
 * A netlink subscription. It keeps the process alive until close() unless unref() is called;
 * close() is idempotent and no callback runs after it.
 */
export interface WatchHandle {
  close(): void;
  ref(): WatchHandle;
  unref(): WatchHandle;
  isClosed(): boolean;
}

export type PmEventType =
  | 'created' | 'established' | 'closed' | 'announced' | 'removed'
  | 'sub_established' | 'sub_closed' | 'sub_priority' | 'listener_created' | 'listener_closed' | 'unknown';

/**
 * One MPTCP path-manager event with every attribute the kernel sent (see the MPTCP_EVENT_* notes
 * in linux/mptcp.h for which event carries which): ports in host order, token as an unsigned
 * number, attributes this code does not know in `extra` keyed by attribute number.
 */
export interface PmEventFields {
  typeId: number;               // MPTCP_EVENT_* number
  token?: number;
  family?: 4 | 6;
  saddr?: string;
  daddr?: string;
  sport?: number;
  dport?: number;
  locId?: number;
  remId?: number;
  ifindex?: number;
  ifname?: string | null;
  backup?: boolean;
  error?: number;               // the subflow's sk_err (errno number)
  flags?: number;               // PM_EVENT_FLAGS
  timeout?: number;
  resetReason?: number;
  resetFlags?: number;
  serverSide?: boolean;
  extra?: Record<string, Buffer>;
}

export interface PmConnectionEvent extends PmEventFields {
  type: 'created' | 'established';
  token: number; family: 4 | 6; saddr: string; daddr: string; sport: number; dport: number;
}
export interface PmClosedEvent extends PmEventFields { type: 'closed'; token: number }
export interface PmAnnouncedEvent extends PmEventFields { type: 'announced'; token: number; remId: number; family: 4 | 6; daddr: string }
export interface PmRemovedEvent extends PmEventFields { type: 'removed'; token: number; remId: number }
export interface PmSubflowEvent extends PmEventFields {
  type: 'sub_established' | 'sub_closed' | 'sub_priority';
  token: number; family: 4 | 6; locId: number; remId: number;
  saddr: string; daddr: string; sport: number; dport: number; backup: boolean;
}
export interface PmListenerEvent extends PmEventFields { type: 'listener_created' | 'listener_closed'; family: 4 | 6; saddr: string; sport: number }
export interface PmUnknownEvent extends PmEventFields { type: 'unknown' }
export type PmEvent =
  | PmConnectionEvent | PmClosedEvent | PmAnnouncedEvent | PmRemovedEvent | PmSubflowEvent
  | PmListenerEvent | PmUnknownEvent
  | { type: 'overflow' }
  | { type: 'error'; code: string; message: string };

/** Subscribes to `mptcp_pm_events` (needs CAP_NET_ADMIN). */
export function pmEvents(callback: (event: PmEvent) => void): WatchHandle {
  if (typeof callback !== 'function') throw invalid('pmEvents(callback) needs a function');
  return binding.pmEvents(callback);
}

export interface LinkInfo {
  kind: 'link';
  ifindex: number;
  ifname: string | null;
  flags: number;                // IFF_*
  up: boolean;                  // IFF_UP: administratively up
  running: boolean;             // IFF_RUNNING: operationally up (carrier and not dormant)
  lowerUp: boolean;             // IFF_LOWER_UP: carrier
  loopback: boolean;
  carrier: boolean | null;
  operstate: 'unknown' | 'notpresent' | 'down' | 'lowerlayerdown' | 'testing' | 'dormant' | 'up';
  mtu: number;
  mac: string | null;
  linkKind: string | null;      // 'veth', 'wireguard', 'bridge', ... (IFLA_INFO_KIND)
  type: number;                 // ARPHRD_*
}

export type Scope = 'global' | 'site' | 'link' | 'host' | 'nowhere' | number;

export interface AddressInfo {
  kind: 'addr';
  family: 4 | 6;
  ifindex: number;
  ifname: string | null;
  address: string;
  peer: string | null;          // point-to-point peer
  prefixlen: number;
  scope: Scope;
  flags: number;                // IFA_F_*
  tentative: boolean;           // IPv6 DAD still running: not usable yet
  deprecated: boolean;
  dadFailed: boolean;
  permanent: boolean;
  label: string | null;
}

export interface RouteInfo {
  kind: 'route';
  family: 4 | 6;
  dst: string | null;           // null for the default route
  dstLen: number;
  isDefault: boolean;
  gateway: string | null;
  prefsrc: string | null;
  ifindex: number;
  ifname: string | null;
  table: number;                // 254 = main
  protocol: number;             // RTPROT_*
  scope: Scope;
  type: number;                 // RTN_* (1 = unicast)
  priority: number | null;      // metric
  nexthops?: Array<{ ifindex: number; ifname: string | null; gateway: string | null; weight: number }>;
}

export type Action = { action: 'new' | 'del' };
export type LinkEvent =
  | (LinkInfo & Action) | (AddressInfo & Action) | (RouteInfo & Action)
  | { kind: 'overflow' }
  | { kind: 'error'; code: string; message: string };

export interface LinkWatchOptions {
  /** also route changes of every table but `local` (default true) */
  routes?: boolean;
}

/** Watches links, addresses and (by default) routes. Needs no privilege. */
export function linkWatch(callback: (event: LinkEvent) => void, opts: LinkWatchOptions = {}): WatchHandle {
  if (typeof callback !== 'function') throw invalid('linkWatch(callback) needs a function');
  return binding.rtLinkWatch(callback, opts);
}

export const listLinks = (): LinkInfo[] => binding.rtListLinks();
export const listAddresses = (): AddressInfo[] => binding.rtListAddresses();
/** Routes of every table but `local`, without the route cache. */
export const listRoutes = (): RouteInfo[] => binding.rtListRoutes();

export interface RouteQuery {
  dst: string;                  // numeric address
  src?: string;                 // as if sent from this local address (rules that match on it apply)
  oif?: number;                 // as if the socket were bound to this interface
  /**
   * Answer with the routing-table entry that matched; a lookup that matched none then fails
   * (EHOSTUNREACH or ENETUNREACH) instead of the kernel's "assume it is on the link" answer for an
   * interface-bound socket, which is what a subflow bound to an interface with no route gets.
   */
  fibMatch?: boolean;
}

/** The route the kernel picks for a destination (`ip route get [fibmatch] DST from SRC oif DEV`). */
export const routeGet = (q: RouteQuery): RouteInfo | null => binding.rtRouteGet(q);

// ---- the native interface (binding.ts includes it in NativeBinding) ----------------------------

export interface NetlinkBinding {
  pmFamily(): PmFamilyInfo;
  pmListEndpoints(): RawEndpoint[];
  pmAddEndpoint(opts: { address: string; id?: number; flags: number; ifindex?: number; device?: string; port?: number }): number;
  pmRemoveEndpoint(sel: { id?: number; address?: string }): void;
  pmSetFlags(sel: { id?: number; address?: string; flags: number }): void;
  pmFlushEndpoints(): void;
  pmGetLimits(): PmLimits;
  pmSetLimits(limits: Partial<PmLimits>): PmLimits;
  pmEvents(callback: (event: PmEvent) => void): WatchHandle;
  pmSubflowCreate(o: SubflowCreateOptions): void;
  pmSubflowDestroy(o: SubflowSelector): void;
  pmSubflowPriority(o: { token: number; localAddress: string; localPort?: number; remoteAddress: string; remotePort?: number; backup: boolean }): void;
  rtLinkWatch(callback: (event: LinkEvent) => void, opts?: LinkWatchOptions): WatchHandle;
  rtListLinks(): LinkInfo[];
  rtListAddresses(): AddressInfo[];
  rtListRoutes(): RouteInfo[];
  rtRouteGet(q: RouteQuery): RouteInfo | null;
}
