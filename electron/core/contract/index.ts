/**
 * The one contract between Braid's core and everything that drives it: the desktop shell (IPC via
 * the preload), the renderer, the headless control API (HTTP + WebSocket) and the CLI. Commands
 * with their parameter checks, results and event payloads are declared here once; every transport
 * dispatches through the same handler table typed by `Commands`.
 *
 * Pure TypeScript with type-only imports: the renderer bundles this file.
 */
import type { BraidConfig, ConfigInput } from '../config/schema';
import { bool, int, json, obj, oneOf, optional, str, type Check } from './validate';

export * from './validate';
export type { BraidConfig, ConfigInput };

// ---- data ------------------------------------------------------------------------------------

export type InterfaceKind = 'wifi' | 'cellular' | 'ethernet' | 'other';
export type PathPolicy = 'use' | 'backup' | 'off';
export const PATH_POLICIES: readonly PathPolicy[] = ['use', 'backup', 'off'];
export type PathState = 'active' | 'backup' | 'off' | 'down' | 'no-address' | 'managed-elsewhere' | 'unmanaged';
export type Transport = 'mptcp' | 'fallback' | 'tcp' | 'unknown';

export interface EndpointView {
  id: number;
  address: string;
  flags: string[];
  owner: 'braid' | 'elsewhere';
}

export interface InterfaceView {
  name: string;
  kind: InterfaceKind;
  up: boolean;
  addresses: { address: string; family: 4 | 6; prefixlen: number }[];
  defaultRoute: boolean;
  ssid: string | null;
  signal: number | null;
  policy: PathPolicy;
  policyExplicit: boolean;
  state: PathState;
  endpoints: EndpointView[];
}

export interface PathsView {
  managed: boolean;
  reason: string | null;
  interfaces: InterfaceView[];
  foreign: { id: number; address: string; flagNames: string[]; ifname: string | null }[];
  limits: { subflows: number; addAddrAccepted: number } | null;
}

export interface SubflowView {
  localAddress: string;
  remoteAddress: string;
  interface: string | null;
  bytesSent: number;
  bytesReceived: number;
  rttUs: number;
  backup: boolean;
}

export interface ConnectionView {
  id: number;
  client: string;
  protocol: 'socks5' | 'http-connect' | 'http' | null;
  destination: string | null;     // host:port as asked
  address: string | null;         // what it connected to (the relay, when one is used)
  startedAt: number;
  bytesUp: number;
  bytesDown: number;
  transport: Transport;
  paths: string[];                // path keys its subflows use
  subflows: SubflowView[];
}

/** One path's numbers at one tick. A path is an interface (or a local address without one). */
export interface PathSample {
  path: string;
  upBps: number;       // bytes per second over the last tick
  downBps: number;
  rttUs: number | null;
  totalUp: number;     // since start, including closed connections
  totalDown: number;
  subflows: number;
}

export interface StatsTick {
  t: number;           // ms since epoch
  paths: PathSample[];
  connections: number;
  totalUp: number;
  totalDown: number;
  system: {
    mptcpSockets: number | null;  // MPTCP sockets in this network namespace, not only Braid's (listeners too)
    sampleUs?: number;            // CPU time computing this tick cost the proxy, µs (the bench reads it)
  };
}

export interface RelayView {
  host: string;
  port: number;
  name: string | null;
  pin: string;
  state: 'ok' | 'error' | 'unused';
  error: string | null;
}

export interface ProxyView {
  running: boolean;
  listen: string | null;
  dial: 'mptcp' | 'tcp';
  mptcp: { supported: boolean; reason: string | null };
}

export interface SystemProxyView {
  enabled: boolean;
  backend: string | null;
  error: string | null;
}

export interface StatusView {
  version: string;
  proxy: ProxyView;
  relay: RelayView | null;
  paths: PathsView;
  connections: { active: number; total: number };
  systemProxy: SystemProxyView;
}

// ---- commands ---------------------------------------------------------------------------------

interface Spec<P, R> {
  params: Check<P>;
  result?: R; // phantom: carries the result type
}

const spec = <P, R>(params: Check<P>): Spec<P, R> => ({ params });
const none = obj({});

export const COMMANDS = {
  status: spec<Record<string, never>, StatusView>(none),
  'proxy.start': spec<Record<string, never>, ProxyView>(none),
  'proxy.stop': spec<Record<string, never>, ProxyView>(none),
  'paths.list': spec<Record<string, never>, PathsView>(none),
  'paths.setPolicy': spec<{ interface: string; policy: PathPolicy }, PathsView>(
    obj({ interface: str({ min: 1, max: 15, pattern: /^[^\s/]+$/ }), policy: oneOf(PATH_POLICIES) }) as Check<{ interface: string; policy: PathPolicy }>,
  ),
  'connections.list': spec<Record<string, never>, ConnectionView[]>(none),
  'connections.close': spec<{ id: number }, { closed: boolean }>(obj({ id: int(0, Number.MAX_SAFE_INTEGER) })),
  'config.get': spec<Record<string, never>, BraidConfig>(none),
  'config.set': spec<{ patch: ConfigInput }, BraidConfig>(obj({ patch: json }) as Check<{ patch: ConfigInput }>),
  'relay.import': spec<{ link: string }, RelayView>(obj({ link: str({ min: 1, max: 2048 }) })),
  'relay.clear': spec<Record<string, never>, null>(none),
  'stats.history': spec<{ seconds?: number }, StatsTick[]>(obj({ seconds: optional(int(1, 3600)) })),
  'systemProxy.set': spec<{ enabled: boolean }, SystemProxyView>(obj({ enabled: bool })),
} as const;

export type CommandName = keyof typeof COMMANDS;
export type ParamsOf<C extends CommandName> = (typeof COMMANDS)[C] extends Spec<infer P, unknown> ? P : never;
export type ResultOf<C extends CommandName> = (typeof COMMANDS)[C] extends Spec<unknown, infer R> ? R : never;
export type Handlers = { [C in CommandName]: (params: ParamsOf<C>) => Promise<ResultOf<C>> | ResultOf<C> };

export function isCommand(name: unknown): name is CommandName {
  return typeof name === 'string' && Object.prototype.hasOwnProperty.call(COMMANDS, name);
}

// ---- events -----------------------------------------------------------------------------------

export interface PmEventView {
  type: string;
  token: number | null;
  saddr: string | null;
  daddr: string | null;
  sport: number | null;
  dport: number | null;
  ifname: string | null;
  backup: boolean | null;
}

export interface Events {
  stats: StatsTick;
  'connection.opened': ConnectionView;
  'connection.closed': ConnectionView;
  'paths.changed': PathsView;
  'mptcp.event': PmEventView;
  'status.changed': StatusView;
  error: { code: string; message: string; source: string };
}
export type EventName = keyof Events;
export const EVENT_NAMES: readonly EventName[] = ['stats', 'connection.opened', 'connection.closed', 'paths.changed', 'mptcp.event', 'status.changed', 'error'];

// ---- wire frames (WebSocket and IPC carry the same shapes) -----------------------------------

export interface RequestFrame { id: number | string; command: CommandName; params?: unknown }
export interface ResponseFrame { id: number | string; ok: true; result: unknown }
export interface ErrorFrame { id: number | string | null; ok: false; error: { code: string; message: string } }
export interface EventFrame { event: EventName; data: unknown }

// ---- the desktop bridge ----------------------------------------------------------------------

/**
 * What the Electron preload exposes to the renderer as `window.braid` (contextBridge): the same
 * commands and events as the WebSocket, carried over IPC. Errors reject with {code, message}.
 */
export interface PreloadApi {
  call<C extends CommandName>(command: C, params: ParamsOf<C>): Promise<ResultOf<C>>;
  on<E extends EventName>(event: E, listener: (data: Events[E]) => void): () => void;
}

/** IPC channel names shared by main and preload. */
export const IPC = { call: 'braid:call', event: 'braid:event' } as const;
