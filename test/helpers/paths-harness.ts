/**
 * Shared moves of the path-management tests: `ip mptcp` readings of a namespace, a config file for
 * `braid up --config`, bounded polling, a way to run without CAP_NET_ADMIN, and a two-link topology
 * in which Braid (not the test) owns the client's endpoints.
 */
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { run, Topology, type Link, type Namespace } from './netns';
import type { ConfigInput } from '../../electron/core/config/schema';

export interface IpEndpoint {
  address: string;
  id: number;
  dev?: string;
  port?: number;
  signal?: boolean;
  subflow?: boolean;
  backup?: boolean;
  fullmesh?: boolean;
  implicit?: boolean;
}

export interface Limits { subflows: number; addAddrAccepted: number }

export async function ip(ns: Namespace, ...argv: string[]): Promise<string> {
  return (await run(['ip', '-n', ns.name, ...argv])).stdout;
}

export async function ipEndpoints(ns: Namespace): Promise<IpEndpoint[]> {
  const text = (await ip(ns, '-j', 'mptcp', 'endpoint', 'show')).trim();
  return text ? (JSON.parse(text) as IpEndpoint[]) : [];
}

export async function ipLimits(ns: Namespace): Promise<Limits> {
  const text = await ip(ns, 'mptcp', 'limits', 'show');
  const num = (k: string): number => Number(new RegExp(`${k} (\\d+)`).exec(text)?.[1] ?? NaN);
  return { subflows: num('subflows'), addAddrAccepted: num('add_addr_accepted') };
}

export const flagsOf = (e: IpEndpoint): string[] =>
  (['signal', 'subflow', 'backup', 'fullmesh', 'implicit'] as const).filter((f) => e[f]);

/** Polls `probe` every `everyMs` until it returns non-undefined, at most `withinMs`; returns it and the time taken. */
export async function until<T>(probe: () => Promise<T | undefined>, withinMs: number, what: string, everyMs = 20): Promise<{ value: T; ms: number }> {
  const start = performance.now();
  const maxTries = Math.ceil(withinMs / everyMs) + 1;
  let lastError: unknown = null;
  for (let i = 0; i < maxTries; i++) {
    try {
      const v = await probe();
      if (v !== undefined) return { value: v, ms: performance.now() - start };
    } catch (err) {
      lastError = err;
    }
    if (performance.now() - start > withinMs) break;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`${what}: not within ${withinMs} ms${lastError ? ` (last error: ${(lastError as Error).message})` : ''}`);
}

/** A throwaway directory holding a config file and a state directory; removed at exit. */
export function scratchDir(tag: string): { dir: string; config: string; state: string; write(c: ConfigInput): void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `braid-paths-${tag}-`));
  process.once('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  const config = path.join(dir, 'config.json');
  return {
    dir,
    config,
    state: path.join(dir, 'state'),
    write: (c) => fs.writeFileSync(config, JSON.stringify(c, null, 2)),
  };
}

/** A way to run a shell command without CAP_NET_ADMIN (checked, not assumed), or null. */
export async function capabilityDropper(): Promise<((cmd: string) => string[]) | null> {
  const candidates: Array<(cmd: string) => string[]> = [
    (cmd) => ['capsh', '--drop=cap_net_admin', '--', '-c', cmd],
    (cmd) => ['setpriv', '--inh-caps=-net_admin', '--bounding-set=-net_admin', 'sh', '-c', cmd],
  ];
  for (const c of candidates) {
    const r = await run(c('grep CapEff /proc/self/status'), { allowFailure: true });
    const eff = /CapEff:\s*([0-9a-f]+)/.exec(r.stdout)?.[1];
    // CAP_NET_ADMIN is bit 12
    if (r.code === 0 && eff !== undefined && (BigInt(`0x${eff}`) & (1n << 12n)) === 0n) return c;
  }
  return null;
}

export const shellQuote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

export interface PathsTopology {
  topology: Topology;
  client: Namespace;
  server: Namespace;
  l1: Link;
  l2: Link;
  destroy(): Promise<void>;
}

/**
 * Client and server joined by two links, like createTwoLinkTopology but with no endpoint in the
 * client (Braid adds them) and the kernel's default limits in the client (Braid raises them). The
 * server accepts joins (limits 8/8) and reaches the client's link-2 subnet directly; the client
 * reaches the server's link-1 address over link 2 too, by a less preferred route, so that a subflow
 * bound to link 2 finds its way to the address the connection was opened to.
 */
export async function createPathsTopology(opts: { rateMbit: number | null }): Promise<PathsTopology> {
  const topology = new Topology();
  try {
    const client = await topology.addNamespace('pc');
    const server = await topology.addNamespace('ps');
    const l1 = await topology.link(client, server, { rateMbit: opts.rateMbit });
    const l2 = await topology.link(client, server, { rateMbit: opts.rateMbit });
    await server.setMptcpLimits(8, 8);
    await client.addRoute({ family: 4, prefix: l1.subnet4, via: l2.b.ipv4, dev: l2.a.dev, metric: 100 });
    await client.addRoute({ family: 6, prefix: l1.subnet6, via: l2.b.ipv6, dev: l2.a.dev, metric: 1024 });
    return { topology, client, server, l1, l2, destroy: () => topology.destroy() };
  } catch (err) {
    await topology.destroy();
    throw err;
  }
}

// ---- children started through helpers/proc.ts die with the test, on a signal too ----------------

const tracked = new Set<ChildProcess>();
let signalsHooked = false;

/**
 * proc.ts kills its children on 'exit', which a signal death skips; netns.ts deletes namespaces on
 * SIGINT/SIGTERM/SIGHUP, which leaves a process started inside running. This kills them and then
 * re-raises the signal (the listener is gone by then, so the default disposition applies).
 */
export function killOnSignal<T extends { child: ChildProcess }>(r: T): T {
  tracked.add(r.child);
  r.child.once('exit', () => tracked.delete(r.child));
  if (!signalsHooked) {
    signalsHooked = true;
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      process.once(sig, () => {
        for (const c of tracked) { try { c.kill('SIGKILL'); } catch { /* gone */ } }
        process.kill(process.pid, sig);
      });
    }
  }
  return r;
}
