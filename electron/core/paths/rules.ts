/**
 * Per-destination rules: which paths a connection may use, decided when it is dialled. A rule
 * matches a host name suffix, an address range (CIDR) and/or a port (all that it names must match;
 * the first matching rule wins) and names its paths by interface (`wlan0`), by kind (`wifi`,
 * `cellular`, `ethernet`, `other`) or `*` for all:
 *
 *   { "name": "video calls", "match": { "host": "zoom.us" }, "paths": ["wifi"], "backup": ["cellular"] }
 *
 * `paths` may carry the connection as their own policy says; `backup` paths only as backup. Every
 * other path carries nothing of it. A rule never brings back a path that is `off`: off (by policy,
 * or demoted to off) means zero bytes, whatever the destination.
 */
import net from 'node:net';
import type { InterfaceKind } from './kinds';

export interface RuleMatch {
  /** a host name and its subdomains ("example.org" matches example.org and a.example.org) */
  host?: string;
  /** an address range, matched against the address dialled */
  cidr?: string;
  /** a port, or an inclusive range [from, to] */
  port?: number | [number, number];
}

export interface PathRule {
  name: string | null;
  match: RuleMatch;
  paths: string[];
  backup: string[];
}

export const KIND_SELECTORS: readonly InterfaceKind[] = ['wifi', 'cellular', 'ethernet', 'other'];
export const MAX_RULES = 256;

/** A problem with one rule, naming the field (relative to the rule) so a caller can place it. */
export class RuleError extends Error {
  constructor(readonly field: string, readonly problem: string) {
    super(`${field} ${problem}`);
  }
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const HOST_RE = /^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$/;
const IFNAME_RE = /^[^\s/]{1,15}$/;

function normalizeHost(h: string): string {
  return h.trim().toLowerCase().replace(/^\*?\./, '').replace(/\.$/, '');
}

export function parseCidr(text: string): { address: string; prefix: number; family: 4 | 6 } {
  const m = /^([^/]+)(?:\/(\d{1,3}))?$/.exec(text.trim());
  const family = m ? net.isIP(m[1]!) : 0;
  if (!m || family === 0) throw new RuleError('match.cidr', `must be an address or ADDRESS/PREFIX, got ${JSON.stringify(text)}`);
  const max = family === 4 ? 32 : 128;
  const prefix = m[2] === undefined ? max : Number(m[2]);
  if (prefix > max) throw new RuleError('match.cidr', `prefix must be at most ${max}, got ${prefix}`);
  return { address: m[1]!, prefix, family: family as 4 | 6 };
}

function selectors(v: unknown, field: string, required: boolean): string[] {
  if (v === undefined && !required) return [];
  if (!Array.isArray(v) || (required && v.length === 0)) throw new RuleError(field, `must be a ${required ? 'non-empty ' : ''}list of interface names, kinds (${KIND_SELECTORS.join(', ')}) or "*"`);
  if (v.length > 64) throw new RuleError(field, 'must have at most 64 entries');
  return v.map((s, i) => {
    if (typeof s !== 'string' || !IFNAME_RE.test(s)) throw new RuleError(`${field}[${i}]`, `must be an interface name, a kind (${KIND_SELECTORS.join(', ')}) or "*", got ${JSON.stringify(s)}`);
    return s;
  });
}

/** Checks one rule as found in a config file or sent by the dashboard; throws RuleError. */
export function validateRule(v: unknown): PathRule {
  if (!isObj(v)) throw new RuleError('', 'must be an object {name?, match, paths, backup?}');
  for (const k of Object.keys(v)) if (!['name', 'match', 'paths', 'backup'].includes(k)) throw new RuleError(k, 'is not a known setting (known: name, match, paths, backup)');
  let name: string | null = null;
  if (v.name !== undefined && v.name !== null) {
    if (typeof v.name !== 'string' || v.name.length === 0 || v.name.length > 64) throw new RuleError('name', 'must be a string of 1 to 64 characters');
    name = v.name;
  }
  if (!isObj(v.match)) throw new RuleError('match', 'must be an object with host, cidr and/or port');
  const m = v.match;
  for (const k of Object.keys(m)) if (!['host', 'cidr', 'port'].includes(k)) throw new RuleError(`match.${k}`, 'is not a known match (known: host, cidr, port)');
  const match: RuleMatch = {};
  if (m.host !== undefined) {
    const h = typeof m.host === 'string' ? normalizeHost(m.host) : '';
    if (!HOST_RE.test(h) || net.isIP(h) !== 0) throw new RuleError('match.host', `must be a host name or suffix such as "example.org", got ${JSON.stringify(m.host)}`);
    match.host = h;
  }
  if (m.cidr !== undefined) {
    if (typeof m.cidr !== 'string') throw new RuleError('match.cidr', 'must be a string such as "203.0.113.0/24"');
    const c = parseCidr(m.cidr);
    match.cidr = `${c.address}/${c.prefix}`;
  }
  if (m.port !== undefined) {
    const okPort = (p: unknown): p is number => typeof p === 'number' && Number.isInteger(p) && p >= 1 && p <= 65535;
    if (okPort(m.port)) match.port = m.port;
    else if (Array.isArray(m.port) && m.port.length === 2 && okPort(m.port[0]) && okPort(m.port[1]) && m.port[0] <= m.port[1]) match.port = [m.port[0], m.port[1]];
    else throw new RuleError('match.port', `must be a port (1-65535) or a range [from, to], got ${JSON.stringify(m.port)}`);
  }
  if (match.host === undefined && match.cidr === undefined && match.port === undefined) throw new RuleError('match', 'must name a host, a cidr or a port');
  return { name, match, paths: selectors(v.paths, 'paths', true), backup: selectors(v.backup, 'backup', false) };
}

/** The label a rule is shown by: its name, or its place in the list. */
export const ruleLabel = (rule: PathRule, index: number): string => rule.name ?? `rule ${index + 1}`;

export interface RuleTarget {
  host: string | null;      // the name asked for (null when only an address is known)
  address: string | null;   // the address being dialled, when known
  port: number;
}

function hostMatches(suffix: string, host: string | null): boolean {
  if (!host || net.isIP(host) !== 0) return false;
  const h = normalizeHost(host);
  return h === suffix || h.endsWith(`.${suffix}`);
}

function cidrMatches(cidr: string, address: string | null): boolean {
  if (!address) return false;
  const fam = net.isIP(address);
  if (fam === 0) return false;
  const c = parseCidr(cidr);
  const list = new net.BlockList();
  list.addSubnet(c.address, c.prefix, c.family === 4 ? 'ipv4' : 'ipv6');
  // An IPv4-mapped IPv6 address is the IPv4 address it maps.
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1];
  return list.check(mapped ?? address, mapped ? 'ipv4' : fam === 4 ? 'ipv4' : 'ipv6');
}

export function ruleMatches(rule: PathRule, t: RuleTarget): boolean {
  const m = rule.match;
  if (m.host !== undefined && !hostMatches(m.host, t.host)) return false;
  if (m.cidr !== undefined && !cidrMatches(m.cidr, t.address ?? (t.host && net.isIP(t.host) ? t.host : null))) return false;
  if (m.port !== undefined && (typeof m.port === 'number' ? t.port !== m.port : t.port < m.port[0] || t.port > m.port[1])) return false;
  return true;
}

/** The first rule that matches, with its index, or null. */
export function matchRule(rules: readonly PathRule[], t: RuleTarget): { rule: PathRule; index: number; label: string } | null {
  for (let i = 0; i < rules.length; i++) if (ruleMatches(rules[i]!, t)) return { rule: rules[i]!, index: i, label: ruleLabel(rules[i]!, i) };
  return null;
}

/** Whether a selector names this interface. */
export function selects(selector: string, iface: { name: string; kind: InterfaceKind }): boolean {
  return selector === '*' || selector === iface.name || selector === iface.kind;
}

/** What a rule lets a path be on a connection: carry it ('allowed'), only as backup, or not at all. */
export function ruleAllows(rule: PathRule, iface: { name: string; kind: InterfaceKind }): 'allowed' | 'backup' | 'no' {
  if (rule.paths.some((s) => selects(s, iface))) return 'allowed';
  if (rule.backup.some((s) => selects(s, iface))) return 'backup';
  return 'no';
}
