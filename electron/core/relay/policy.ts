/**
 * Which destinations a relay may dial. A relay on a server must never become a door into that
 * server's own network: loopback, link-local, private, CGNAT, multicast and unspecified ranges are
 * refused unless explicitly allowed, and an explicit deny always wins.
 */
import net from 'node:net';
import { BraidError } from '../errors';

interface Cidr {
  text: string;
  family: 4 | 6;
  bits: bigint;
  prefix: number;
}

/**
 * Why a destination is refused, as the relay tells its client (`X-Braid-Reason`): stable codes, so a
 * client can explain the refusal without the relay's log, and nothing about the relay's own set-up.
 */
export type PolicyReason = 'loopback' | 'private' | 'link-local' | 'cgnat' | 'multicast' | 'reserved' | 'denied';

const DEFAULT_DENY: Array<[string, PolicyReason]> = [
  ['0.0.0.0/8', 'reserved'], ['10.0.0.0/8', 'private'], ['100.64.0.0/10', 'cgnat'], ['127.0.0.0/8', 'loopback'],
  ['169.254.0.0/16', 'link-local'], ['172.16.0.0/12', 'private'], ['192.0.0.0/24', 'reserved'], ['192.168.0.0/16', 'private'],
  ['198.18.0.0/15', 'reserved'], ['224.0.0.0/4', 'multicast'], ['240.0.0.0/4', 'reserved'],
  ['::/128', 'reserved'], ['::1/128', 'loopback'], ['::ffff:0:0/96', 'reserved'], ['fc00::/7', 'private'],
  ['fe80::/10', 'link-local'], ['ff00::/8', 'multicast'],
];

const REASON_TEXT: Record<PolicyReason, string> = {
  loopback: 'loopback address',
  private: 'private address',
  'link-local': 'link-local address',
  cgnat: 'carrier-grade NAT address',
  multicast: 'multicast address',
  reserved: 'reserved address',
  denied: "in the relay's deny list",
};

/** What a client tells its user about a refusal with this reason (a code from another relay version is shown as is). */
export function explainRefusal(reason: string | undefined): string {
  if (reason === 'denied') return "refused by the relay's policy (in the relay's deny list, set by its operator with --deny)";
  const text = reason && reason in REASON_TEXT ? REASON_TEXT[reason as PolicyReason] : reason ? reason.replace(/[^a-z0-9-]/g, '') : null;
  return `refused by the relay's policy${text ? ` (${text})` : ''}; the relay's operator can allow it with --allow CIDR`;
}

export interface Refusal {
  reason: PolicyReason;
  /** for the relay's own log: names the address and the range */
  message: string;
}

/** A dial the policy refused (a name whose every address is refused). */
export class PolicyRefusal extends BraidError {
  constructor(message: string, readonly reason: PolicyReason) {
    super('EPOLICY', message);
  }
}

function toBigInt(address: string): { family: 4 | 6; value: bigint } {
  const family = net.isIP(address);
  if (family === 4) {
    return { family: 4, value: address.split('.').reduce((acc, p) => (acc << 8n) | BigInt(Number(p)), 0n) };
  }
  if (family === 6) {
    // Expand "::" and any embedded IPv4 tail, then read eight 16-bit groups.
    let text = address.toLowerCase();
    const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
    if (v4) {
      const n = toBigInt(v4[1]).value;
      text = text.slice(0, -v4[1].length) + `${(n >> 16n).toString(16)}:${(n & 0xffffn).toString(16)}`;
    }
    const [head, tail] = text.split('::');
    const h = head ? head.split(':') : [];
    const t = tail !== undefined ? (tail ? tail.split(':') : []) : [];
    const groups = tail !== undefined ? [...h, ...Array(8 - h.length - t.length).fill('0'), ...t] : h;
    return { family: 6, value: groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n) };
  }
  throw new BraidError('EBADADDR', `'${address}' is not an IP address`);
}

export function parseCidr(text: string): Cidr {
  const [addr, len] = text.trim().split('/');
  if (!net.isIP(addr)) throw new BraidError('ECONFIG', `'${text}' is not a CIDR (expected e.g. 203.0.113.0/24 or 2001:db8::/32)`);
  const { family, value } = toBigInt(addr);
  const max = family === 4 ? 32 : 128;
  const prefix = len === undefined ? max : Number(len);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max) {
    throw new BraidError('ECONFIG', `'${text}' has a bad prefix length (0-${max})`);
  }
  return { text, family, bits: value >> BigInt(max - prefix), prefix };
}

function contains(c: Cidr, family: 4 | 6, value: bigint): boolean {
  if (c.family !== family) return false;
  const max = family === 4 ? 32 : 128;
  return value >> BigInt(max - c.prefix) === c.bits;
}

export interface PolicyOptions {
  allow?: string[];  // exceptions to the default deny list (e.g. a LAN the relay should reach)
  deny?: string[];   // more ranges to refuse; beats allow
}

export class DestinationPolicy {
  private readonly allow: Cidr[];
  private readonly deny: Cidr[];
  private readonly builtin = DEFAULT_DENY.map(([text, reason]) => ({ cidr: parseCidr(text), reason }));

  constructor(opts: PolicyOptions = {}) {
    this.allow = (opts.allow ?? []).map(parseCidr);
    this.deny = (opts.deny ?? []).map(parseCidr);
  }

  /** null when allowed, else why not. */
  check(address: string): Refusal | null {
    const { family, value } = toBigInt(address);
    const hit = (list: Cidr[]) => list.find((c) => contains(c, family, value));
    const denied = hit(this.deny);
    if (denied) return { reason: 'denied', message: `${address} is in the relay's deny list (${denied.text})` };
    if (hit(this.allow)) return null;
    const builtin = this.builtin.find((b) => contains(b.cidr, family, value));
    if (builtin) return { reason: builtin.reason, message: `${address} is a ${REASON_TEXT[builtin.reason]} (${builtin.cidr.text}); allow it with --allow` };
    return null;
  }
}
