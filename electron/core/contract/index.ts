/**
 * The one contract between Braid's core and everything that drives it: the desktop shell (IPC via
 * the preload), the renderer, the headless control API (HTTP + WebSocket) and the CLI. Commands
 * with their parameter checks, results and event payloads are declared here once; every transport
 * dispatches through the same handler table typed by `Commands`.
 *
 * Pure TypeScript with type-only imports: the renderer bundles this file.
 */
import type { BraidConfig, ConfigInput } from '../config/schema';
import { arrayOf, bool, int, json, obj, oneOf, optional, str, type Check } from './validate';

export * from './validate';
export type { BraidConfig, ConfigInput };

// ---- data ------------------------------------------------------------------------------------

export type InterfaceKind = 'wifi' | 'cellular' | 'ethernet' | 'other';
export type PathPolicy = 'use' | 'secondary' | 'backup' | 'off';
export const PATH_POLICIES: readonly PathPolicy[] = ['use', 'secondary', 'backup', 'off'];
export type PathState = 'active' | 'secondary' | 'backup' | 'off' | 'down' | 'no-address' | 'managed-elsewhere' | 'unmanaged';
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
  /** what it may carry now: `policy` lowered by a demotion (a data cap, poor quality), if any */
  effective: PathPolicy;
  demotion: { source: string; to: PathPolicy; reason: string } | null;
  state: PathState;
  endpoints: EndpointView[];
  note: string | null;  // what path management last did here, in words ("endpoint added (id 3, subflow)", "blocked: …")
  /** data used and its cap (paths.caps); absent where no usage is known (no running braid) */
  usage?: PathUsageView | null;
  /** RTT, its variation and retransmissions measured on Braid's traffic here (paths.quality) */
  quality?: PathQualityView | null;
}

/** A data cap (config `paths.caps`): bytes per day, or per month from `resetDay`; at the cap the path is `atCap`. */
export interface DataCapView {
  bytes: number;
  period: 'day' | 'month';
  resetDay: number;
  atCap: 'backup' | 'off';
}

/** Data used on one interface: today, and in its cap's period. */
export interface PathUsageView {
  name: string;
  today: { up: number; down: number };
  cap: DataCapView | null;
  /** bytes (both ways) in the cap's period (today without a cap) */
  used: number;
  from: string;         // first day of the period, YYYY-MM-DD (local)
  until: string;        // first day of the next period
  reached: boolean;
}

export interface UsageView {
  interfaces: PathUsageView[];
  /** per day (oldest first, up to 62): bytes per interface */
  days: { day: string; interfaces: Record<string, { up: number; down: number }> }[];
}

export interface PathQualityView {
  rttMs: number | null;            // null: no recent traffic to measure
  rttVarMs: number | null;
  retransPercent: number | null;   // of what this side sent; null: too little sent (a download's losses are the far end's)
  sampledAt: number | null;
  demoted: boolean;
  reason: string | null;           // "wlan0 demoted: RTT 850 ms (best other path 40 ms), 12 % retransmits"
}

/** Bytes a program's connections carried on one path since start. */
export interface ProgramPathView {
  program: string;                 // "(unknown)" when the program was not found
  path: string;
  up: number;
  down: number;
}

/** A per-destination rule (config `paths.rules`): which paths a matching connection may use. */
export interface PathRuleView {
  name: string | null;
  match: { host?: string; cidr?: string; port?: number | [number, number] };
  paths: string[];     // interface names, kinds (wifi, cellular, ethernet, other) or "*"
  backup: string[];    // allowed as backup only
}

export interface PathsView {
  managed: boolean;
  reason: string | null;
  /** whose path manager makes subflows: Braid's per connection ('userspace') or the kernel's ('kernel') */
  manager: 'userspace' | 'kernel' | null;
  managerNote: string | null;
  rules: PathRuleView[];
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
  program: { name: string; pid: number } | null;  // the local program that opened it (null: unknown, or another host)
  protocol: 'socks5' | 'http-connect' | 'http' | 'transparent' | null;
  destination: string | null;     // host:port as asked
  address: string | null;         // what it connected to (the relay, when one is used)
  startedAt: number;
  bytesUp: number;
  bytesDown: number;
  transport: Transport;
  paths: string[];                // path keys its subflows use
  subflows: SubflowView[];
  /** how its paths were chosen: the rule that matched, the first subflow's path, why (null: not dialled yet) */
  route: RouteView | null;
}

export interface RouteView {
  rule: string | null;
  via: string | null;             // first subflow's interface (null: left to the routing table)
  note: string | null;            // e.g. "no use path reaches …; first subflow on backup path wwan0"
  /** its secondary paths: not needed, on trial, carrying, or kept as backup after the need ended */
  secondary: 'idle' | 'trial' | 'active' | 'standby' | null;
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

/** Transparent mode (every app's TCP through Braid) and `braid run` scopes. */
export interface TransparentView {
  enabled: boolean;              // switched on in the config ("All apps")
  active: boolean;               // the nftables table is in place and the listener runs
  via: 'braid' | 'helper' | null;
  listen: string | null;         // the transparent listener
  bypass: string[];              // reached directly (CIDR or CIDR:PORT)
  blockQuic: boolean;            // UDP 443 rejected while redirecting, so browsers use TCP
  scopes: number;                // `braid run` programs redirected now
  error: string | null;
}

/** One change Braid has made on this system and puts back on exit (or its guardian does, after a crash). */
export interface SystemChangeView {
  kind: string;         // 'mptcp-endpoints', 'system-proxy', …
  description: string;
  pid: number;          // the Braid process that made it (this one, or e.g. `braid paths daemon`)
}

export interface StatusView {
  version: string;
  pid: number;          // the process answering (braid up, or the desktop app)
  proxy: ProxyView;
  relay: RelayView | null;
  paths: PathsView;
  connections: { active: number; total: number };
  systemProxy: SystemProxyView;
  systemChanges: SystemChangeView[];
  transparent: TransparentView;
  /** The last `doctor.run` here, if any. */
  doctor?: DoctorSummaryView | null;
}

/** `braid doctor`: one finding, in plain words with a fix (electron/core/doctor/). */
export type FindingStatus = 'ok' | 'warn' | 'fail';
export interface DoctorFinding {
  check: string;               // stable dotted name: kernel.limits, path.mptcp, path.route, live.fallback, …
  subject: string | null;      // the interface, for checks about one path; null otherwise
  status: FindingStatus;       // fail: it keeps Braid from using every path
  message: string;
  fix: string | null;
}

export interface SpeedPathView {
  path: string;                // interface name
  downMbit: number | null;     // null: not measured (it failed, or a URL test has no upload)
  upMbit: number | null;
}

export interface SpeedView {
  via: 'relay' | 'url';
  paths: SpeedPathView[];      // each path alone
  all: { downMbit: number | null; upMbit: number | null };  // every path together, one MPTCP connection
  summary: string;             // "link1 18.9 + link2 19.0 Mbit/s; together 37.2, 98 % of the sum"
}

export interface DoctorReport {
  ok: boolean;                 // no finding fails: nothing found that keeps aggregation from working
  findings: DoctorFinding[];
  speed: SpeedView | null;
  startedAt: number;
  finishedAt: number;
}

export interface DoctorProgressView {
  runId: number;
  step: string;                // what it is doing now, in words
  done: number;
  total: number;
  finding: DoctorFinding | null;  // a finding made by this step, as it comes
}

/** The last diagnosis, as status carries it (the tray names its first failing finding). */
export interface DoctorSummaryView {
  at: number;
  ok: boolean;
  failing: number;
  firstFailing: DoctorFinding | null;
}

// ---- commands ---------------------------------------------------------------------------------

export interface DoctorRunParams {
  speed?: boolean;             // also measure each path and all together (through the relay, or speedUrl)
  relay?: string;              // a braid:// link to diagnose instead of the configured relay
  speedUrl?: string;           // without a relay: a URL to download from for the speed test
  target?: string;             // without a relay: HOST[:PORT] whose route and reachability each path is checked for
  portalUrl?: string;          // overrides doctor.portalUrl for this run
  seconds?: number;            // per direction and path for the speed test (default 6)
}

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
  /** Replaces the per-destination rules (checked as the config file's `paths.rules`). */
  'paths.setRules': spec<{ rules: PathRuleView[] }, PathsView>(obj({ rules: json }) as Check<{ rules: PathRuleView[] }>),
  /** Data used per interface (today, and in each cap's period) and the daily history. */
  'paths.usage': spec<Record<string, never>, UsageView>(none),
  /** Sets (or with cap null, removes) an interface's data cap. */
  'paths.setCap': spec<{ interface: string; cap: DataCapView | null }, PathsView>(
    obj({ interface: str({ min: 1, max: 15, pattern: /^[^\s/]+$/ }), cap: json }) as Check<{ interface: string; cap: DataCapView | null }>,
  ),
  /** Measured quality per path (interface name -> view), for paths that carried traffic. */
  'paths.quality': spec<Record<string, never>, Record<string, PathQualityView>>(none),
  /** Bytes per program per path since start. */
  'stats.programs': spec<Record<string, never>, ProgramPathView[]>(none),
  'connections.list': spec<Record<string, never>, ConnectionView[]>(none),
  'connections.close': spec<{ id: number }, { closed: boolean }>(obj({ id: int(0, Number.MAX_SAFE_INTEGER) })),
  /** Closes several at once (the dashboard's "close the filtered"); ids no longer live are skipped. */
  'connections.closeMany': spec<{ ids: number[] }, { closed: number }>(obj({ ids: arrayOf(int(0, Number.MAX_SAFE_INTEGER), 10_000) })),
  'config.get': spec<Record<string, never>, BraidConfig>(none),
  'config.set': spec<{ patch: ConfigInput }, BraidConfig>(obj({ patch: json }) as Check<{ patch: ConfigInput }>),
  'relay.import': spec<{ link: string }, RelayView>(obj({ link: str({ min: 1, max: 2048 }) })),
  'relay.clear': spec<Record<string, never>, null>(none),
  'stats.history': spec<{ seconds?: number }, StatsTick[]>(obj({ seconds: optional(int(1, 3600)) })),
  'systemProxy.set': spec<{ enabled: boolean }, SystemProxyView>(obj({ enabled: bool })),
  'transparent.set': spec<{ enabled: boolean }, TransparentView>(obj({ enabled: bool })),
  /** `braid run`: redirect the TCP of a cgroup (named as nft names it) that `pid` is in, until run.detach. */
  'run.attach': spec<{ cgroup: string; level: number; pid: number }, { id: number }>(
    obj({ cgroup: str({ min: 1, max: 512, pattern: /^[A-Za-z0-9_.@:+\-/]+$/ }), level: int(1, 32), pid: int(1, 4_194_304) }),
  ),
  'run.detach': spec<{ id: number }, { detached: boolean }>(obj({ id: int(1, Number.MAX_SAFE_INTEGER) })),
  /** Runs the diagnosis (progress as `doctor.progress` events); `relay` overrides the configured one for this run. */
  'doctor.run': spec<DoctorRunParams, DoctorReport>(
    obj({
      speed: optional(bool),
      relay: optional(str({ min: 1, max: 2048 })),
      speedUrl: optional(str({ min: 1, max: 2048, pattern: /^https?:\/\// })),
      target: optional(str({ min: 1, max: 300 })),
      portalUrl: optional(str({ min: 1, max: 2048, pattern: /^http:\/\// })),
      seconds: optional(int(1, 10)),
    }),
  ),
  'doctor.last': spec<Record<string, never>, DoctorReport | null>(none),
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
  /** a tick every 500 ms while any connection moves bytes, every 5 s while none does (rates are over the time since the last) */
  stats: StatsTick;
  'connection.opened': ConnectionView;
  'connection.closed': ConnectionView;
  'paths.changed': PathsView;
  'mptcp.event': PmEventView;
  'status.changed': StatusView;
  'doctor.progress': DoctorProgressView;
  'doctor.finished': DoctorReport;
  error: { code: string; message: string; source: string };
}
export type EventName = keyof Events;
export const EVENT_NAMES: readonly EventName[] = ['stats', 'connection.opened', 'connection.closed', 'paths.changed', 'mptcp.event', 'status.changed', 'doctor.progress', 'doctor.finished', 'error'];

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
