/**
 * Braid's configuration: the one typed shape, its defaults and its runtime validation.
 * Later sections (relay, paths, control) are added here so that the CLI, the desktop app and the
 * tests all read the same contract.
 */
import net from 'node:net';
import { BraidError } from '../errors';

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
  maxConnections: number;
}

export interface BraidConfig {
  proxy: ProxyConfig;
  timeouts: TimeoutsConfig;
  limits: LimitsConfig;
}

/** A partial config as found in a file or assembled from flags, before defaults. */
export type ConfigInput = {
  proxy?: Partial<ProxyConfig>;
  timeouts?: Partial<TimeoutsConfig>;
  limits?: Partial<LimitsConfig>;
};

export function defaultConfig(): BraidConfig {
  return {
    proxy: { host: '127.0.0.1', port: 1080, dial: 'mptcp' },
    timeouts: { handshakeMs: 10_000, idleMs: 300_000, connectMs: 10_000 },
    limits: { maxConnections: 1024 },
  };
}

function fail(field: string, message: string): never {
  throw new BraidError('ECONFIG', `config field '${field}' ${message}`);
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
  checkKeys(input, '', ['proxy', 'timeouts', 'limits']);
  const out = defaultConfig();

  const proxy = section(input, 'proxy');
  checkKeys(proxy, 'proxy', ['host', 'port', 'auth', 'dial']);
  if (proxy.host !== undefined) {
    const host = nonEmptyString(proxy.host, 'proxy.host', 255);
    // The listener binds a numeric address; a name would resolve differently on different machines.
    if (net.isIP(host) === 0) fail('proxy.host', `must be a numeric IPv4 or IPv6 address, got '${host}'`);
    out.proxy.host = host;
  }
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
