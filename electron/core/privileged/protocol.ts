/**
 * The privileged helper's whole surface: newline-delimited JSON over a local Unix socket, one
 * request and one answer at a time. Small on purpose: every field is checked here, and the helper
 * builds the nftables rules itself from these checked values; the caller never sends rules.
 */
import net from 'node:net';
import { BraidError } from '../errors';
import { parseBypass, validateCgroup, type CgroupRef } from '../transparent/ruleset';

export const DEFAULT_HELPER_SOCKET = '/run/braid/helper.sock';

export function helperSocketPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.BRAID_HELPER_SOCKET || DEFAULT_HELPER_SOCKET;
}

/** Transparent mode for the calling user: their traffic (and only theirs) to their own listener. */
export interface TransparentRequest {
  port: number;
  ipv6: boolean;
  bypass: string[];
  relay: string[];
  /** The caller's own cgroup, holding Braid (its dials are let through by it). */
  self: CgroupRef;
  everything: boolean;
  scopes: CgroupRef[];
  blockQuic: boolean;
}

/**
 * What an unprivileged Braid wants for one of its own MPTCP connections, from the helper's path
 * manager: which paths its rule allows, and later whether its secondary paths are needed. The
 * connection is named by its token and the local port of its first subflow; the helper checks in
 * the kernel's socket table that this port is a connection of the caller's uid.
 */
export interface PathsConnectionRequest {
  token: number;
  localPort: number;
  /** per interface what the rule lets it be; null = no rule */
  allowed: { name: string; as: 'allowed' | 'backup' }[] | null;
  rule: string | null;
}

export interface PathsSecondaryRequest {
  token: number;
  state: 'idle' | 'active' | 'standby';
}

export type HelperRequest =
  | { id: number; op: 'hello' }
  | { id: number; op: 'transparent.apply'; params: TransparentRequest }
  | { id: number; op: 'transparent.clear' }
  | { id: number; op: 'paths.connection'; params: PathsConnectionRequest }
  | { id: number; op: 'paths.secondary'; params: PathsSecondaryRequest };

export type HelperAnswer = { id: number; ok: true; result: unknown } | { id: number | null; ok: false; error: { code: string; message: string } };

export const MAX_LINE = 64 * 1024;

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function cgroupOf(v: unknown, field: string): CgroupRef {
  if (!isObj(v) || typeof v.path !== 'string' || typeof v.level !== 'number') throw new BraidError('EBADREQUEST', `${field} must be {path, level}`);
  return validateCgroup({ path: v.path, level: v.level });
}

/** Parses and checks one request line; throws EBADREQUEST naming the field. */
export function parseRequest(line: string): HelperRequest {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    throw new BraidError('EBADREQUEST', 'not JSON');
  }
  if (!isObj(v) || !Number.isInteger(v.id)) throw new BraidError('EBADREQUEST', 'a request needs an integer id');
  const id = v.id as number;
  if (v.op === 'hello' || v.op === 'transparent.clear') return { id, op: v.op };
  if (v.op === 'paths.connection' || v.op === 'paths.secondary') return parsePathsRequest(id, v.op, v.params);
  if (v.op !== 'transparent.apply') throw new BraidError('EBADREQUEST', `unknown op ${JSON.stringify(v.op)}`);
  const p = v.params;
  if (!isObj(p)) throw new BraidError('EBADREQUEST', 'params must be an object');
  const bad = (f: string, m: string): never => {
    throw new BraidError('EBADREQUEST', `params.${f} ${m}`);
  };
  if (!Number.isInteger(p.port) || (p.port as number) < 1 || (p.port as number) > 65535) bad('port', 'must be 1-65535');
  for (const k of ['ipv6', 'everything', 'blockQuic'] as const) if (typeof p[k] !== 'boolean') bad(k, 'must be true or false');
  if (!Array.isArray(p.bypass) || p.bypass.length > 256) bad('bypass', 'must be a list of at most 256 entries');
  (p.bypass as unknown[]).forEach((b, i) => {
    if (typeof b !== 'string') bad(`bypass[${i}]`, 'must be a string');
    parseBypass(b as string);
  });
  if (!Array.isArray(p.relay) || p.relay.length > 16 || !(p.relay as unknown[]).every((a) => typeof a === 'string' && net.isIP(a) !== 0)) bad('relay', 'must be at most 16 numeric addresses');
  if (!Array.isArray(p.scopes) || p.scopes.length > 64) bad('scopes', 'must be a list of at most 64 cgroups');
  return {
    id,
    op: 'transparent.apply',
    params: {
      port: p.port as number,
      ipv6: p.ipv6 as boolean,
      bypass: p.bypass as string[],
      relay: p.relay as string[],
      self: cgroupOf(p.self, 'params.self'),
      everything: p.everything as boolean,
      scopes: (p.scopes as unknown[]).map((c, i) => cgroupOf(c, `params.scopes[${i}]`)),
      blockQuic: p.blockQuic as boolean,
    },
  };
}

const IFNAME = /^[^\s/]{1,15}$/;

function parsePathsRequest(id: number, op: 'paths.connection' | 'paths.secondary', p: unknown): HelperRequest {
  if (!isObj(p)) throw new BraidError('EBADREQUEST', 'params must be an object');
  const bad = (f: string, m: string): never => {
    throw new BraidError('EBADREQUEST', `params.${f} ${m}`);
  };
  if (!Number.isInteger(p.token) || (p.token as number) < 1 || (p.token as number) > 0xffffffff) bad('token', 'must be an MPTCP token (1 to 2^32-1)');
  const token = p.token as number;
  if (op === 'paths.secondary') {
    if (p.state !== 'idle' && p.state !== 'active' && p.state !== 'standby') bad('state', 'must be idle, active or standby');
    return { id, op, params: { token, state: p.state as PathsSecondaryRequest['state'] } };
  }
  if (!Number.isInteger(p.localPort) || (p.localPort as number) < 1 || (p.localPort as number) > 65535) bad('localPort', 'must be 1-65535');
  let allowed: PathsConnectionRequest['allowed'] = null;
  if (p.allowed !== null) {
    if (!Array.isArray(p.allowed) || p.allowed.length > 64) bad('allowed', 'must be null or a list of at most 64 {name, as}');
    allowed = (p.allowed as unknown[]).map((a, i) => {
      if (!isObj(a) || typeof a.name !== 'string' || !IFNAME.test(a.name) || (a.as !== 'allowed' && a.as !== 'backup')) bad(`allowed[${i}]`, 'must be {name: interface, as: allowed|backup}');
      return { name: (a as { name: string }).name, as: (a as { as: 'allowed' | 'backup' }).as };
    });
  }
  if (p.rule !== null && (typeof p.rule !== 'string' || p.rule.length === 0 || p.rule.length > 64)) bad('rule', 'must be null or a name of 1 to 64 characters');
  return { id, op, params: { token, localPort: p.localPort as number, allowed, rule: p.rule as string | null } };
}
