/**
 * The nftables ruleset of transparent mode, as text for `nft -f`: everything lives in one table,
 * `inet braid`, and no other table is ever touched. A pure function of a validated spec, so the
 * same spec always gives the same rules and every input is checked before it reaches nft.
 *
 * Outbound TCP that is not bypassed is redirected (nat output `redirect`) to Braid's transparent
 * listener on loopback, which reads the original destination with SO_ORIGINAL_DST. Braid's own
 * connections are let through by their firewall mark (SO_MARK, when Braid has CAP_NET_ADMIN) or by
 * their cgroup (when the privileged helper applies the rules for an unprivileged Braid), so nothing
 * loops. `braid run` scopes are cgroups whose TCP is redirected even when the rest is not.
 */
import net from 'node:net';
import { BraidError } from '../errors';

export const TABLE_FAMILY = 'inet';
export const TABLE_NAME = 'braid';

export interface BypassEntry {
  /** Network in CIDR form, e.g. 10.0.0.0/8 or fd00::/8. */
  cidr: string;
  family: 4 | 6;
  /** Only this destination port, or every port. */
  port: number | null;
}

/** A cgroup v2 as nft names it: the path under /sys/fs/cgroup/ and its depth in the cgroup2 tree. */
export interface CgroupRef {
  path: string;
  level: number;
}

export interface RulesetSpec {
  /** Braid's transparent listener, on 127.0.0.1 and ::1. */
  port: number;
  /** False where there is no IPv6 loopback to redirect to: IPv6 is then left alone. */
  ipv6: boolean;
  bypass: BypassEntry[];
  /** The relay's addresses: always reached directly. */
  relay: string[];
  /** Braid's own sockets, never redirected. */
  exclude: { mark: number | null; cgroups: CgroupRef[] };
  /** Whose traffic: a user's sockets only (`meta skuid`), or every user's (null: Braid running as root). */
  uid: number | null;
  /** Transparent mode on: every outbound TCP connection of `uid`. */
  everything: boolean;
  /** `braid run` scopes: TCP from these cgroups (and their children) is redirected. */
  scopes: CgroupRef[];
  /** Reject UDP 443 for whatever is redirected, so QUIC falls back to TCP. */
  blockQuic: boolean;
}

/**
 * Loopback, link-local, private (RFC 1918, ULA), CGNAT, multicast and reserved ranges: the LAN
 * stays the LAN. A value the user gives replaces this list.
 */
export const DEFAULT_BYPASS: readonly string[] = [
  '0.0.0.0/8', '10.0.0.0/8', '100.64.0.0/10', '127.0.0.0/8', '169.254.0.0/16', '172.16.0.0/12',
  '192.168.0.0/16', '224.0.0.0/4', '240.0.0.0/4',
  '::1/128', '::/128', 'fe80::/10', 'fc00::/7', 'ff00::/8',
];

/** Parses a bypass entry: `CIDR`, `ADDRESS`, `CIDR:PORT`, `[V6CIDR]:PORT`. Throws EBADBYPASS. */
export function parseBypass(text: string): BypassEntry {
  const bad = (why: string): BraidError => new BraidError('EBADBYPASS', `bypass entry '${text}' ${why}`);
  if (typeof text !== 'string' || text.length === 0 || text.length > 64) throw bad('must be a CIDR, optionally with :PORT');
  let body = text;
  let port: number | null = null;
  const bracket = /^\[([^\]]+)\]:(\d{1,5})$/.exec(text);
  if (bracket) {
    body = bracket[1]!;
    port = Number(bracket[2]);
  } else if (!text.includes('::') && /^[^:]+:\d{1,5}$/.test(text)) {
    // IPv4 with a port; IPv6 needs brackets to carry one.
    const i = text.lastIndexOf(':');
    body = text.slice(0, i);
    port = Number(text.slice(i + 1));
  }
  if (port !== null && (port < 1 || port > 65535)) throw bad('has a port outside 1-65535');
  const [addr, prefixText, extra] = body.split('/');
  if (extra !== undefined) throw bad('has more than one /');
  const family = net.isIP(addr ?? '');
  if (family === 0) throw bad('does not start with an IPv4 or IPv6 address');
  const max = family === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? max : /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
  if (!(prefix >= 0 && prefix <= max)) throw bad(`has a prefix length outside 0-${max}`);
  return { cidr: `${addr}/${prefix}`, family: family as 4 | 6, port };
}

const CGROUP_PATH = /^[A-Za-z0-9_.@:+\-/]{1,512}$/;

export function validateCgroup(c: CgroupRef): CgroupRef {
  if (!CGROUP_PATH.test(c.path) || c.path.split('/').some((p) => p === '' || p === '.' || p === '..')) {
    throw new BraidError('EBADCGROUP', `cgroup path '${c.path}' is not a plain relative path`);
  }
  if (!Number.isInteger(c.level) || c.level < 1 || c.level > 32) throw new BraidError('EBADCGROUP', `cgroup level ${c.level} is not from 1 to 32`);
  return c;
}

function check(spec: RulesetSpec): void {
  const bad = (m: string): BraidError => new BraidError('EBADRULESET', m);
  if (!Number.isInteger(spec.port) || spec.port < 1 || spec.port > 65535) throw bad(`listener port ${spec.port} is not from 1 to 65535`);
  for (const b of spec.bypass) parseBypass(b.port === null ? b.cidr : b.family === 6 ? `[${b.cidr}]:${b.port}` : `${b.cidr}:${b.port}`);
  for (const a of spec.relay) if (net.isIP(a) === 0) throw bad(`relay address '${a}' is not numeric`);
  const m = spec.exclude.mark;
  if (m !== null && (!Number.isInteger(m) || m < 1 || m > 0xffffffff)) throw bad(`mark ${m} is not a 32-bit value`);
  for (const c of [...spec.exclude.cgroups, ...spec.scopes]) validateCgroup(c);
  const uid = spec.uid;
  if (uid !== null && (!Number.isInteger(uid) || uid < 0 || uid > 0xfffffffe)) throw bad(`uid ${uid} is not valid`);
}

const cg = (c: CgroupRef): string => `socket cgroupv2 level ${c.level} "${c.path}"`;

function set(name: string, type: string, elements: string[]): string[] {
  if (elements.length === 0) return [];
  return [`  set ${name} {`, `    type ${type}; flags interval;`, `    elements = { ${elements.join(', ')} }`, '  }'];
}

/** The rules of one spec, in its own chains (`nat_N`, `quic_N`), with its own sets (`sN_…`). */
function specChains(spec: RulesetSpec, n: number): { sets: string[]; nat: string[]; quic: string[] } {
  const v4 = spec.bypass.filter((b) => b.family === 4);
  const v6 = spec.bypass.filter((b) => b.family === 6);
  const relay4 = spec.relay.filter((a) => net.isIP(a) === 4);
  const relay6 = spec.relay.filter((a) => net.isIP(a) === 6);
  const p = `s${n}_`;
  const sets = [
    ...set(`${p}bypass_v4`, 'ipv4_addr', v4.filter((b) => b.port === null).map((b) => b.cidr)),
    ...set(`${p}bypass_v6`, 'ipv6_addr', v6.filter((b) => b.port === null).map((b) => b.cidr)),
    ...set(`${p}bypass_v4_port`, 'ipv4_addr . inet_service', v4.filter((b) => b.port !== null).map((b) => `${b.cidr} . ${b.port}`)),
    ...set(`${p}bypass_v6_port`, 'ipv6_addr . inet_service', v6.filter((b) => b.port !== null).map((b) => `${b.cidr} . ${b.port}`)),
  ];
  const excludes: string[] = [];
  if (spec.exclude.mark !== null) excludes.push(`meta mark 0x${spec.exclude.mark.toString(16)} return`);
  for (const c of spec.exclude.cgroups) excludes.push(`${cg(c)} return`);
  const bypass: string[] = [];
  if (v4.some((b) => b.port === null)) bypass.push(`ip daddr @${p}bypass_v4 return`);
  if (v6.some((b) => b.port === null)) bypass.push(`ip6 daddr @${p}bypass_v6 return`);
  const redirect = `redirect to :${spec.port}`;
  const nat = [
    ...(spec.ipv6 ? [] : ['meta nfproto ipv6 return']),
    ...excludes,
    ...(relay4.length ? [`ip daddr { ${relay4.join(', ')} } return`] : []),
    ...(relay6.length ? [`ip6 daddr { ${relay6.join(', ')} } return`] : []),
    ...bypass,
    ...(v4.some((b) => b.port !== null) ? [`ip daddr . tcp dport @${p}bypass_v4_port return`] : []),
    ...(v6.some((b) => b.port !== null) ? [`ip6 daddr . tcp dport @${p}bypass_v6_port return`] : []),
    ...(spec.everything ? [`meta l4proto tcp ${redirect}`] : []),
    ...spec.scopes.map((c) => `${cg(c)} meta l4proto tcp ${redirect}`),
  ];
  // QUIC: only what would have gone through Braid as TCP (not DNS, not the LAN, not Braid's own).
  const quic = spec.blockQuic && (spec.everything || spec.scopes.length > 0)
    ? [...excludes, ...bypass, ...(spec.everything ? ['udp dport 443 reject'] : []), ...spec.scopes.map((c) => `${cg(c)} udp dport 443 reject`)]
    : [];
  return { sets, nat, quic };
}

/**
 * The whole table, for `nft -f`. One spec per Braid whose traffic it redirects: Braid itself as
 * root (uid null: every user's traffic), or one per user when the privileged helper serves
 * several; each in chains of its own, entered only for that user's sockets (`meta skuid`).
 */
export function renderRuleset(specs: RulesetSpec | RulesetSpec[]): string {
  const list = Array.isArray(specs) ? specs : [specs];
  list.forEach(check);
  if (list.filter((s) => s.uid === null).length > 1 || (list.some((s) => s.uid === null) && list.length > 1)) {
    throw new BraidError('EBADRULESET', 'a spec for every user cannot share the table with others');
  }
  const built = list.map((s, n) => ({ spec: s, ...specChains(s, n) }));
  const who = (s: RulesetSpec): string => (s.uid === null ? '' : `meta skuid ${s.uid} `);
  const lines = [`table ${TABLE_FAMILY} ${TABLE_NAME} {`, ...built.flatMap((b) => b.sets)];
  lines.push('  chain nat_output {', '    type nat hook output priority -100; policy accept;', '    meta l4proto != tcp return',
    // This host's own addresses are local traffic, whatever range they are in.
    '    fib daddr type local return');
  built.forEach((b, n) => lines.push(`    ${who(b.spec)}jump nat_${n}`));
  lines.push('  }');
  built.forEach((b, n) => lines.push(`  chain nat_${n} {`, ...b.nat.map((r) => `    ${r}`), '  }'));
  const quic = built.map((b, n) => ({ b, n })).filter(({ b }) => b.quic.length > 0);
  if (quic.length) {
    lines.push('  chain block_quic {', '    type filter hook output priority 0; policy accept;', '    meta l4proto != udp return');
    quic.forEach(({ b, n }) => lines.push(`    ${who(b.spec)}jump quic_${n}`));
    lines.push('  }');
    quic.forEach(({ b, n }) => lines.push(`  chain quic_${n} {`, ...b.quic.map((r) => `    ${r}`), '  }'));
  }
  lines.push('}');
  return lines.join('\n') + '\n';
}
