/**
 * The relay's namespace topology and the moves its tests and the benchmark share.
 *
 *   client ──link1 (tbf)──┐
 *          ──link2 (tbf)──┴ relay ──link3 (unshaped)── destination
 *
 * The client has an MPTCP `subflow` endpoint on link 2 (as createTwoLinkTopology arranges for a
 * client and a server), so its one connection to the relay's link-1 address gets a second subflow
 * over link 2. The destination is reachable only from the relay: the client has no route to link 3
 * and the relay does not forward, so everything the client gets from there came through `braid
 * relay`. Link 3 is in private ranges, so the relay must be started with `--allow` for it, which
 * exercises the destination policy on every test.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Link, tbf, Topology, type LinkEnd, type Namespace, type NsProcess } from './netns';
import { BRAID_CLI } from './multipath-harness';

const START_TIMEOUT_MS = 15_000;

export interface RelayTopology {
  topology: Topology;
  client: Namespace;
  relay: Namespace;
  dest: Namespace;
  /** client ⇄ relay, shaped */
  links: [Link, Link];
  /** relay ⇄ destination, unshaped */
  destLink: Link;
  relayAddress(link: 1 | 2, family?: 4 | 6): string;
  clientAddress(link: 1 | 2, family?: 4 | 6): string;
  destAddress(family?: 4 | 6): string;
  /** link 3's subnets: what the relay's --allow must name */
  destSubnets: [string, string];
  /** which client⇄relay link (1 or 2) an address belongs to, or null */
  linkOf(address: string): 1 | 2 | null;
  destroy(): Promise<void>;
}

export interface RelayTopologyOptions {
  /** tbf rate of both client⇄relay links, on both ends; null = unshaped (default 20) */
  rateMbit?: number | null;
  /** one-way delay added on each client⇄relay link, ms (default 0: none, no delay line) */
  oneWayMs?: number;
}

export async function createRelayTopology(opts: RelayTopologyOptions = {}): Promise<RelayTopology> {
  const topology = new Topology();
  try {
    const client = await topology.addNamespace('c');
    const relay = await topology.addNamespace('r');
    const dest = await topology.addNamespace('d');
    const rateMbit = opts.rateMbit === undefined ? 20 : opts.rateMbit;
    const oneWayMs = opts.oneWayMs ?? 0;
    const shapedLink = (): Promise<Link> => (oneWayMs > 0 ? delayedLink(topology, client, relay, rateMbit, oneWayMs) : topology.link(client, relay, { rateMbit }));
    const l1 = await shapedLink();
    const l2 = await shapedLink();
    const l3 = await topology.link(relay, dest, { rateMbit: null });
    for (const ns of [client, relay]) await ns.setMptcpLimits(8, 8);
    // The relay is a host, not a router: the client must not reach the destination past it.
    await relay.exec(['sysctl', '-qw', 'net.ipv4.ip_forward=0', 'net.ipv6.conf.all.forwarding=0']);
    // Link 2 reaches the relay's link-1 address too (a less preferred route), so the subflow the
    // client's link-2 endpoint opens has a way there; see createTwoLinkTopology.
    await client.addRoute({ family: 4, prefix: l1.subnet4, via: l2.b.ipv4, dev: l2.a.dev, metric: 100 });
    await client.addRoute({ family: 6, prefix: l1.subnet6, via: l2.b.ipv6, dev: l2.a.dev, metric: 1024 });
    await client.addMptcpEndpoint(l2.a.ipv4, { dev: l2.a.dev, flags: ['subflow'] });
    await client.addMptcpEndpoint(l2.a.ipv6, { dev: l2.a.dev, flags: ['subflow'] });
    const links: [Link, Link] = [l1, l2];
    const norm = (a: string): string => a.replace(/^::ffff:/i, '').toLowerCase();
    return {
      topology, client, relay, dest, links, destLink: l3,
      relayAddress: (n, family = 4) => (family === 4 ? links[n - 1]!.b.ipv4 : links[n - 1]!.b.ipv6),
      clientAddress: (n, family = 4) => (family === 4 ? links[n - 1]!.a.ipv4 : links[n - 1]!.a.ipv6),
      destAddress: (family = 4) => (family === 4 ? l3.b.ipv4 : l3.b.ipv6),
      destSubnets: [l3.subnet4, l3.subnet6],
      linkOf: (address) => {
        const a = norm(address);
        for (const [i, l] of links.entries()) if ([l.a.ipv4, l.b.ipv4, l.a.ipv6, l.b.ipv6].some((x) => x.toLowerCase() === a)) return (i + 1) as 1 | 2;
        return null;
      },
      destroy: () => topology.destroy(),
    };
  } catch (err) {
    await topology.destroy();
    throw err;
  }
}

/** The userspace delay line (this kernel has no netem): test/helpers/delay-line.py in the source tree. */
export const DELAY_LINE = path.resolve(__dirname, '..', '..', '..', 'test', 'helpers', 'delay-line.py');

/**
 * A client⇄relay link whose frames pass through the delay line in a namespace of its own:
 *
 *   client ──near── [delay line] ──far── relay
 *
 * The relay's end of `far` takes the address `near` gave its far end, so client and relay share one
 * subnet as on a direct link, and the returned Link has the client's and the relay's end (tbf on
 * both, as Topology.link shapes a direct one, so reshape() and the interface counters apply alike).
 */
async function delayedLink(topology: Topology, client: Namespace, relay: Namespace, rateMbit: number | null, oneWayMs: number): Promise<Link> {
  const middle = await topology.addNamespace(`x${topology.links.length + 1}`);
  const near = await topology.link(client, middle);
  const far = await topology.link(middle, relay);
  for (const end of [near.b, far.a, far.b]) await end.ns.exec(['ip', 'addr', 'flush', 'dev', end.dev]);
  await relay.exec(['ip', 'addr', 'add', `${near.b.ipv4}/24`, 'dev', far.b.dev]);
  await relay.exec(['ip', '-6', 'addr', 'add', `${near.b.ipv6}/64`, 'dev', far.b.dev, 'nodad']);
  const relayEnd: LinkEnd = { ns: relay, dev: far.b.dev, ipv4: near.b.ipv4, ipv6: near.b.ipv6 };
  const link = new Link(near.index, near.a, relayEnd, near.subnet4, near.subnet6, rateMbit);
  if (rateMbit !== null) {
    for (const end of [link.a, link.b]) await end.ns.exec(['tc', 'qdisc', 'add', 'dev', end.dev, 'root', ...tbf(rateMbit)]);
  }
  const line = middle.spawn(['python3', DELAY_LINE, near.b.dev, far.a.dev, String(oneWayMs)], { label: `delay line ${near.index}` });
  await line.waitForLine(/^ready$/, START_TIMEOUT_MS);
  return link;
}

export interface DelayedRelayTopology extends RelayTopology {
  /** round-trip time added between client and relay, ms */
  rttMs: number;
}

/**
 * Client and relay on one subnet whose frames pass through a delay line in a namespace between
 * them, so that connection set-up pays real round trips (RTT = 2 x oneWayMs), as on the internet:
 *
 *   client ──link1── [delay line] ──link2── relay ──link3── destination
 *
 * One path only: this topology measures set-up latency, not aggregation. The delay line's own
 * namespace has no addresses; link 2's relay end takes the address 10.X.1.2 on link 1's subnet.
 * relayAddress(1|2) is that address; the destination is reachable only from the relay, as before.
 */
export async function createDelayedRelayTopology(oneWayMs: number): Promise<DelayedRelayTopology> {
  const topology = new Topology();
  try {
    const client = await topology.addNamespace('c');
    const line = await topology.addNamespace('x');
    const relay = await topology.addNamespace('r');
    const dest = await topology.addNamespace('d');
    const l1 = await topology.link(client, line);
    const l2 = await topology.link(line, relay);
    const l3 = await topology.link(relay, dest, { rateMbit: null });
    for (const end of [l1.b, l2.a, l2.b]) await end.ns.exec(['ip', 'addr', 'flush', 'dev', end.dev]);
    await relay.exec(['ip', 'addr', 'add', `${l1.b.ipv4}/24`, 'dev', l2.b.dev]);
    await relay.exec(['sysctl', '-qw', 'net.ipv4.ip_forward=0']);
    const proc = line.spawn(['python3', DELAY_LINE, l1.b.dev, l2.a.dev, String(oneWayMs)], { label: 'delay line' });
    await proc.waitForLine(/^ready$/, START_TIMEOUT_MS);
    const relayAddress = (): string => l1.b.ipv4;
    return {
      topology, client, relay, dest, links: [l1, l2], destLink: l3, rttMs: 2 * oneWayMs,
      relayAddress,
      clientAddress: () => l1.a.ipv4,
      destAddress: (family = 4) => (family === 4 ? l3.b.ipv4 : l3.b.ipv6),
      destSubnets: [l3.subnet4, l3.subnet6],
      linkOf: (address) => (address.replace(/^::ffff:/i, '') === l1.b.ipv4 || address.replace(/^::ffff:/i, '') === l1.a.ipv4 ? 1 : null),
      destroy: () => topology.destroy(),
    };
  } catch (err) {
    await topology.destroy();
    throw err;
  }
}

export interface RelayProcess {
  proc: NsProcess;
  /** the share link as printed */
  link: string;
  port: number;
  metricsUrl: string | null;
  dir: string;
}

/**
 * `braid relay --listen [::]:PORT --allow <link 3> --dir DIR --metrics 127.0.0.1:0` in the relay
 * namespace; resolves once it printed its share link. `dir` is reused across restarts (same key,
 * certificate and secret); the caller removes it.
 */
export async function startRelay(topo: RelayTopology, opts: { port: number; dir: string; publicHost?: string; extra?: string[] }): Promise<RelayProcess> {
  const argv = [process.execPath, BRAID_CLI, 'relay', '--listen', `[::]:${opts.port}`,
    ...topo.destSubnets.flatMap((s) => ['--allow', s]),
    '--dir', opts.dir, '--metrics', '127.0.0.1:0', '--public-host', opts.publicHost ?? topo.relayAddress(1),
    ...(opts.extra ?? [])];
  const proc = topo.relay.spawn(argv, { label: 'braid relay' });
  const { line } = await proc.waitForLine(/^braid: share link: /, START_TIMEOUT_MS);
  const listening = proc.lines.find((l) => l.startsWith('braid: relay listening on '));
  const metrics = proc.lines.find((l) => l.startsWith('braid: metrics on '));
  const port = Number(/:(\d+) \(/.exec(listening ?? '')?.[1] ?? NaN);
  return { proc, link: line.slice('braid: share link: '.length).trim(), port, metricsUrl: metrics ? metrics.slice('braid: metrics on '.length).trim() : null, dir: opts.dir };
}

export function tempRelayDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'braid-relay-dir-'));
}

/** `braid up --relay LINK` in the client namespace (path management off: the topology owns the endpoints). */
export async function startRelayClient(ns: Namespace, opts: { port: number; link: string; extra?: string[]; env?: NodeJS.ProcessEnv }): Promise<NsProcess> {
  const argv = [process.execPath, BRAID_CLI, 'up', '--host', '127.0.0.1', '--port', String(opts.port), '--dial', 'mptcp',
    '--relay', opts.link, '--paths', 'off', ...(opts.extra ?? [])];
  const proc = ns.spawn(argv, { label: 'braid up --relay', env: opts.env });
  await proc.waitForLine(/^braid: proxy listening on .*via relay/, START_TIMEOUT_MS);
  return proc;
}

/** Waits (bounded) until something accepts TCP connections on 127.0.0.1:port inside `ns`. */
export async function waitForPort(ns: Namespace, port: number, what: string): Promise<void> {
  for (let i = 0; i < 50; i++) {
    const r = await ns.exec(['bash', '-c', `exec 3<>/dev/tcp/127.0.0.1/${port}`], { allowFailure: true, timeoutMs: 2000 });
    if (r.code === 0) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${what} did not listen on port ${port} within 5 s`);
}

/**
 * The shadowsocks-libev chain the benches compare the relay with: ss-server --mptcp on the relay's
 * link-1 address, ss-local --mptcp in the client namespace on 127.0.0.1:localPort; resolves once
 * ss-local accepts connections.
 */
export async function startShadowsocksChain(topo: RelayTopology, opts: { serverPort: number; localPort: number; cipher: string }): Promise<{ ssServer: NsProcess; ssLocal: NsProcess }> {
  const password = 'bench-' + crypto.randomBytes(6).toString('hex');
  const server = topo.relayAddress(1);
  const ssServer = topo.relay.spawn(['ss-server', '-s', server, '-p', String(opts.serverPort), '-k', password, '-m', opts.cipher, '--mptcp'], { label: 'ss-server' });
  const ssLocal = topo.client.spawn(['ss-local', '-s', server, '-p', String(opts.serverPort), '-b', '127.0.0.1', '-l', String(opts.localPort), '-k', password, '-m', opts.cipher, '--mptcp'], { label: 'ss-local' });
  await waitForPort(topo.client, opts.localPort, 'ss-local');
  return { ssServer, ssLocal };
}

/** Bytes sent on each of the relay's two client-facing links, by the kernel's interface counters. */
export async function relayTxBytes(topo: RelayTopology): Promise<[number, number]> {
  const { stdout } = await topo.relay.exec(['ip', '-s', '-j', 'link', 'show']);
  const all = JSON.parse(stdout) as Array<{ ifname: string; stats64?: { tx?: { bytes?: number } } }>;
  const tx = (dev: string): number => Number(all.find((l) => l.ifname === dev)?.stats64?.tx?.bytes ?? NaN);
  return [tx(topo.links[0].b.dev), tx(topo.links[1].b.dev)];
}

/** The relay's /metrics, scraped with curl inside the relay namespace (it listens on loopback there). */
export async function scrapeMetrics(topo: RelayTopology, url: string): Promise<string> {
  const { stdout } = await topo.relay.exec(['curl', '-sS', '--max-time', '5', url], { timeoutMs: 10_000 });
  return stdout;
}

export function metricValue(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(name + ' ') || l.startsWith(name + '{'));
  return line ? Number(line.split(' ').pop()) : NaN;
}
