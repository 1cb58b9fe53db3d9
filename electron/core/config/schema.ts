/**
 * Braid's configuration: the one typed shape, its defaults and its runtime validation.
 * Later sections (relay, paths, control) are added here so that the CLI, the desktop app and the
 * tests all read the same contract.
 */
import net from 'node:net';
import { BraidError } from '../errors';
import { defaultMaxConnections } from '../fd-limit';
import { defaultPathsConfig, PATH_POLICIES, type PathPolicy, type PathsConfig } from '../paths/policy';
import { MAX_RULES, RuleError, validateRule } from '../paths/rules';
import { parseRelayLink } from '../relay/share-link';
import { parseBypass } from '../transparent/ruleset';

export type { PathPolicy, PathsConfig };

export type DialMode = 'mptcp' | 'tcp';

export interface ProxyAuth {
  username: string;
  password: string;
}

export interface ProxyConfig {
  host: string;
  port: number;
  auth?: ProxyAuth;
  dial: DialMode;
}

export interface TimeoutsConfig {
  handshakeMs: number;  // from accept until the client has told us where to go
  idleMs: number;       // a relayed connection with no bytes either way for this long is closed
  connectMs: number;    // resolving plus connecting to the destination, all addresses together
}

export interface LimitsConfig {
  /** default: sized from the open-file limit, (soft limit − 256) / 2 (see fd-limit.ts) */
  maxConnections: number;
}

/** The desktop side of a relay (see electron/core/relay/client.ts). */
export interface RelayClientConfig {
  link: string | null;   // braid://… share link; null = dial destinations directly
  poolSize: number;      // warm connections kept to the relay
  poolIdleMs: number;    // a warm connection is replaced after this long unused
}

/** The local control API (HTTP + WebSocket) used by the dashboard and `braid status`. */
export interface ControlConfig {
  enabled: boolean;
  host: string;          // loopback unless deliberately changed
  port: number;          // 0 = pick one; the chosen port is written to the state directory
  token: string | null;  // null = generate one per start (written to the state directory, mode 0600)
}

/** Transparent mode: every app's outbound TCP through Braid, by nftables redirect (electron/core/transparent/). */
export interface TransparentConfig {
  enabled: boolean;
  /** Destinations reached directly: CIDR or CIDR:PORT ([V6CIDR]:PORT). null = the default list (LAN, loopback, …). */
  bypass: string[] | null;
  /** Reject UDP 443 while redirecting, so QUIC falls back to TCP (which Braid carries). */
  blockQuic: boolean;
}

/** `braid doctor` (electron/core/doctor/). */
export interface DoctorConfig {
  /** Fetched over each interface to spot a captive portal (an answer other than 204 or plain 2xx); null = no probe. */
  portalUrl: string | null;
}

export interface BraidConfig {
  proxy: ProxyConfig;
  timeouts: TimeoutsConfig;
  limits: LimitsConfig;
  relay: RelayClientConfig;
  paths: PathsConfig;
  control: ControlConfig;
  transparent: TransparentConfig;
  doctor: DoctorConfig;
}

/** A partial config as found in a file or assembled from flags, before defaults. */
export type ConfigInput = {
  proxy?: Partial<ProxyConfig>;
  timeouts?: Partial<TimeoutsConfig>;
  limits?: Partial<LimitsConfig>;
  relay?: Partial<RelayClientConfig>;
  paths?: Partial<PathsConfig>;
  control?: Partial<ControlConfig>;
  transparent?: Partial<TransparentConfig>;
  doctor?: Partial<DoctorConfig>;
};

export function defaultConfig(): BraidConfig {
  return {
    proxy: { host: '127.0.0.1', port: 1080, dial: 'mptcp' },
    timeouts: { handshakeMs: 10_000, idleMs: 300_000, connectMs: 10_000 },
    limits: { maxConnections: defaultMaxConnections() },
    relay: { link: null, poolSize: 2, poolIdleMs: 45_000 },
    paths: defaultPathsConfig(),
    control: { enabled: true, host: '127.0.0.1', port: 9797, token: null },
    transparent: { enabled: false, bypass: null, blockQuic: true },
    doctor: { portalUrl: null },
  };
}

/** A bad setting: which field (dotted path) and what is wrong, so a caller can name its own source (a flag). */
export class ConfigError extends BraidError {
  constructor(readonly field: string, readonly problem: string) {
    super('ECONFIG', `config field '${field}' ${problem}`);
  }
}

function fail(field: string, message: string): never {
  throw new ConfigError(field, message);
}

/** A listener's address: numeric (a name resolves differently on different machines), or 'localhost'. */
function listenHost(v: unknown, field: string): string {
  const host = nonEmptyString(v, field, 255);
  // What people type; the listener binds the IPv4 loopback address it stands for.
  if (host.toLowerCase() === 'localhost') return '127.0.0.1';
  if (net.isIP(host) === 0) fail(field, `must be a numeric IPv4 or IPv6 address or 'localhost', got '${host}'`);
  return host;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkKeys(obj: Record<string, unknown>, where: string, allowed: readonly string[]): void {
  for (const k of Object.keys(obj)) {
    // Unknown keys are rejected rather than ignored: a typo would otherwise silently keep a default.
    if (!allowed.includes(k)) fail(where ? `${where}.${k}` : k, `is not a known setting (known: ${allowed.join(', ')})`);
  }
}

function integer(v: unknown, field: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) fail(field, `must be an integer, got ${JSON.stringify(v)}`);
  if (v < min || v > max) fail(field, `must be from ${min} to ${max}, got ${v}`);
  return v;
}

function nonEmptyString(v: unknown, field: string, maxLen: number): string {
  if (typeof v !== 'string' || v.length === 0) fail(field, `must be a non-empty string`);
  if (v.length > maxLen) fail(field, `must be at most ${maxLen} characters`);
  return v;
}

function section(input: Record<string, unknown>, name: string): Record<string, unknown> {
  const v = input[name];
  if (v === undefined) return {};
  if (!isPlainObject(v)) fail(name, 'must be an object');
  return v;
}

/**
 * Validates `input` (already parsed JSON or flags) and fills in defaults. Every error names the
 * offending field with its dotted path and carries code ECONFIG.
 */
export function validateConfig(input: unknown): BraidConfig {
  if (!isPlainObject(input)) throw new BraidError('ECONFIG', 'config must be a JSON object');
  checkKeys(input, '', ['proxy', 'timeouts', 'limits', 'relay', 'paths', 'control', 'transparent', 'doctor']);
  const out = defaultConfig();

  const proxy = section(input, 'proxy');
  checkKeys(proxy, 'proxy', ['host', 'port', 'auth', 'dial']);
  if (proxy.host !== undefined) out.proxy.host = listenHost(proxy.host, 'proxy.host');
  if (proxy.port !== undefined) out.proxy.port = integer(proxy.port, 'proxy.port', 0, 65535);
  if (proxy.dial !== undefined) {
    if (proxy.dial !== 'mptcp' && proxy.dial !== 'tcp') fail('proxy.dial', `must be 'mptcp' or 'tcp', got ${JSON.stringify(proxy.dial)}`);
    out.proxy.dial = proxy.dial;
  }
  if (proxy.auth !== undefined && proxy.auth !== null) {
    if (!isPlainObject(proxy.auth)) fail('proxy.auth', 'must be an object {username, password}');
    checkKeys(proxy.auth, 'proxy.auth', ['username', 'password']);
    // RFC 1929 carries each in one length byte.
    const username = nonEmptyString(proxy.auth.username, 'proxy.auth.username', 255);
    const password = nonEmptyString(proxy.auth.password, 'proxy.auth.password', 255);
    out.proxy.auth = { username, password };
  }

  const timeouts = section(input, 'timeouts');
  checkKeys(timeouts, 'timeouts', ['handshakeMs', 'idleMs', 'connectMs']);
  const day = 24 * 3600 * 1000;
  if (timeouts.handshakeMs !== undefined) out.timeouts.handshakeMs = integer(timeouts.handshakeMs, 'timeouts.handshakeMs', 1, day);
  if (timeouts.idleMs !== undefined) out.timeouts.idleMs = integer(timeouts.idleMs, 'timeouts.idleMs', 1, day);
  if (timeouts.connectMs !== undefined) out.timeouts.connectMs = integer(timeouts.connectMs, 'timeouts.connectMs', 1, day);

  const limits = section(input, 'limits');
  checkKeys(limits, 'limits', ['maxConnections']);
  if (limits.maxConnections !== undefined) out.limits.maxConnections = integer(limits.maxConnections, 'limits.maxConnections', 1, 1_000_000);

  const relay = section(input, 'relay');
  checkKeys(relay, 'relay', ['link', 'poolSize', 'poolIdleMs']);
  if (relay.link !== undefined && relay.link !== null) {
    const link = nonEmptyString(relay.link, 'relay.link', 2048);
    try {
      parseRelayLink(link);
    } catch (err) {
      fail('relay.link', `is not a usable relay link: ${(err as Error).message}`);
    }
    out.relay.link = link;
  }
  if (relay.poolSize !== undefined) out.relay.poolSize = integer(relay.poolSize, 'relay.poolSize', 0, 64);
  if (relay.poolIdleMs !== undefined) out.relay.poolIdleMs = integer(relay.poolIdleMs, 'relay.poolIdleMs', 1000, day);

  const paths = section(input, 'paths');
  checkKeys(paths, 'paths', ['enabled', 'manager', 'defaults', 'interfaces', 'maxSubflows', 'rules', 'caps', 'quality']);
  if (paths.enabled !== undefined) {
    if (typeof paths.enabled !== 'boolean') fail('paths.enabled', 'must be true or false');
    out.paths.enabled = paths.enabled;
  }
  const policy = (v: unknown, field: string): PathPolicy => {
    if (!PATH_POLICIES.includes(v as PathPolicy)) fail(field, `must be one of ${PATH_POLICIES.join(', ')}, got ${JSON.stringify(v)}`);
    return v as PathPolicy;
  };
  if (paths.defaults !== undefined) {
    if (!isPlainObject(paths.defaults)) fail('paths.defaults', 'must be an object {wifi, ethernet, cellular, other}');
    checkKeys(paths.defaults, 'paths.defaults', ['wifi', 'ethernet', 'cellular', 'other']);
    for (const [k, v] of Object.entries(paths.defaults)) out.paths.defaults[k as keyof PathsConfig['defaults']] = policy(v, `paths.defaults.${k}`);
  }
  if (paths.interfaces !== undefined) {
    if (!isPlainObject(paths.interfaces)) fail('paths.interfaces', 'must be an object {interfaceName: policy}');
    for (const [k, v] of Object.entries(paths.interfaces)) {
      if (!/^[^\s/]{1,15}$/.test(k)) fail(`paths.interfaces.${k}`, 'is not a valid interface name');
      out.paths.interfaces[k] = policy(v, `paths.interfaces.${k}`);
    }
  }
  if (paths.maxSubflows !== undefined) out.paths.maxSubflows = integer(paths.maxSubflows, 'paths.maxSubflows', 1, 8);
  if (paths.manager !== undefined) {
    if (paths.manager !== 'userspace' && paths.manager !== 'kernel') fail('paths.manager', `must be 'userspace' or 'kernel', got ${JSON.stringify(paths.manager)}`);
    out.paths.manager = paths.manager;
  }
  if (paths.rules !== undefined) out.paths.rules = validateRules(paths.rules, 'paths.rules');
  if (paths.caps !== undefined) out.paths.caps = validateCaps(paths.caps, 'paths.caps');
  if (paths.quality !== undefined) {
    const q = section(paths, 'quality');
    checkKeys(q, 'paths.quality', ['enabled', 'rttMs', 'retransPercent']);
    if (q.enabled !== undefined) {
      if (typeof q.enabled !== 'boolean') fail('paths.quality.enabled', 'must be true or false');
      out.paths.quality.enabled = q.enabled;
    }
    if (q.rttMs !== undefined) out.paths.quality.rttMs = integer(q.rttMs, 'paths.quality.rttMs', 10, 10_000);
    if (q.retransPercent !== undefined) out.paths.quality.retransPercent = integer(q.retransPercent, 'paths.quality.retransPercent', 1, 100);
  }

  const control = section(input, 'control');
  checkKeys(control, 'control', ['enabled', 'host', 'port', 'token']);
  if (control.enabled !== undefined) {
    if (typeof control.enabled !== 'boolean') fail('control.enabled', 'must be true or false');
    out.control.enabled = control.enabled;
  }
  if (control.host !== undefined) out.control.host = listenHost(control.host, 'control.host');
  if (control.port !== undefined) out.control.port = integer(control.port, 'control.port', 0, 65535);
  if (control.token !== undefined && control.token !== null) out.control.token = nonEmptyString(control.token, 'control.token', 256);

  const transparent = section(input, 'transparent');
  checkKeys(transparent, 'transparent', ['enabled', 'bypass', 'blockQuic']);
  for (const k of ['enabled', 'blockQuic'] as const) {
    if (transparent[k] === undefined) continue;
    if (typeof transparent[k] !== 'boolean') fail(`transparent.${k}`, 'must be true or false');
    out.transparent[k] = transparent[k] as boolean;
  }
  if (transparent.bypass !== undefined && transparent.bypass !== null) {
    if (!Array.isArray(transparent.bypass)) fail('transparent.bypass', 'must be a list of CIDR or CIDR:PORT strings (or null for the default)');
    if (transparent.bypass.length > 256) fail('transparent.bypass', 'must have at most 256 entries');
    transparent.bypass.forEach((b, i) => {
      try {
        parseBypass(b as string);
      } catch (err) {
        fail(`transparent.bypass[${i}]`, `is not usable: ${(err as Error).message}`);
      }
    });
    out.transparent.bypass = [...(transparent.bypass as string[])];
  }

  const doctor = section(input, 'doctor');
  checkKeys(doctor, 'doctor', ['portalUrl']);
  if (doctor.portalUrl !== undefined && doctor.portalUrl !== null) {
    const url = nonEmptyString(doctor.portalUrl, 'doctor.portalUrl', 2048);
    // A portal intercepts plain HTTP; over HTTPS it would only show as a certificate error.
    if (!/^http:\/\/[^/\s]+/.test(url)) fail('doctor.portalUrl', `must be an http:// URL, got ${JSON.stringify(url)}`);
    out.doctor.portalUrl = url;
  }

  return out;
}

/** The per-destination rules (paths/rules.ts), every problem named by its place in the list. */
export function validateRules(v: unknown, field: string): PathsConfig['rules'] {
  if (!Array.isArray(v)) fail(field, 'must be a list of rules {name?, match: {host?, cidr?, port?}, paths, backup?}');
  if (v.length > MAX_RULES) fail(field, `must have at most ${MAX_RULES} rules`);
  return v.map((r, i) => {
    try {
      return validateRule(r);
    } catch (err) {
      if (err instanceof RuleError) fail(err.field ? `${field}[${i}].${err.field}` : `${field}[${i}]`, err.problem);
      throw err;
    }
  });
}

/** Data caps by interface (paths/caps.ts): {bytes, period: day|month, resetDay?, atCap?: off|backup}. */
export function validateCaps(v: unknown, field: string): PathsConfig['caps'] {
  if (!isPlainObject(v)) fail(field, 'must be an object {interfaceName: {bytes, period, resetDay?, atCap?}}');
  const out: PathsConfig['caps'] = {};
  for (const [iface, c] of Object.entries(v)) {
    const f = `${field}.${iface}`;
    if (!/^[^\s/]{1,15}$/.test(iface)) fail(f, 'is not a valid interface name');
    if (!isPlainObject(c)) fail(f, 'must be an object {bytes, period, resetDay?, atCap?}');
    checkKeys(c, f, ['bytes', 'period', 'resetDay', 'atCap']);
    const bytes = integer(c.bytes, `${f}.bytes`, 1, Number.MAX_SAFE_INTEGER);
    if (c.period !== 'day' && c.period !== 'month') fail(`${f}.period`, `must be 'day' or 'month', got ${JSON.stringify(c.period)}`);
    const resetDay = c.resetDay === undefined ? 1 : integer(c.resetDay, `${f}.resetDay`, 1, 31);
    if (c.atCap !== undefined && c.atCap !== 'off' && c.atCap !== 'backup') fail(`${f}.atCap`, `must be 'off' or 'backup', got ${JSON.stringify(c.atCap)}`);
    out[iface] = { bytes, period: c.period, resetDay, atCap: (c.atCap as 'off' | 'backup' | undefined) ?? 'off' };
  }
  return out;
}

/** Deep-merges `over` onto `base` section by section; undefined values in `over` keep `base`. */
export function mergeConfigInput(base: ConfigInput, over: ConfigInput): ConfigInput {
  const out: Record<string, Record<string, unknown>> = {};
  for (const src of [base, over] as Record<string, unknown>[]) {
    for (const [name, sec] of Object.entries(src)) {
      if (!isPlainObject(sec)) {
        // Leave malformed sections for validateConfig to report with their field name.
        (out as Record<string, unknown>)[name] = sec;
        continue;
      }
      const target = isPlainObject(out[name]) ? out[name] : (out[name] = {});
      for (const [k, v] of Object.entries(sec)) if (v !== undefined) target[k] = v;
    }
  }
  return out as ConfigInput;
}
