/**
 * The bench's relay rig for both directions (updown-bench.ts): one relay topology (client ⇄ two
 * links ⇄ relay ⇄ unshaped ⇄ destination) with every data path it compares running on it, and one
 * transfer through any of them.
 *
 * - raw: `mptcpize run curl` to a server in the relay namespace (no proxy);
 * - raw again: the same, a second time in the repetition (the reference against itself);
 * - proxy: curl → `braid up --dial mptcp` → the same server (the local proxy alone);
 * - relay: curl → `braid up --relay` → `braid relay` → a plain-TCP destination;
 * - relay, no pool: the same through a second `braid up --relay` whose config keeps no warm
 *   connections (relay.poolSize 0), so each request dials: TCP, TLS, then the request;
 * - relay, MPTCP destination: the relay to a destination that speaks MPTCP;
 * - ss: curl → ss-local --mptcp → ss-server --mptcp → the plain-TCP destination.
 *
 * The braid up instances run with `--paths off`: the topology's endpoints make the second subflow,
 * so they do not all try to be the namespace's path manager.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { tbf, type Namespace, type NsProcess } from '../helpers/netns';
import { BRAID_CLI, DIST, startByteServer } from '../helpers/multipath-harness';
import { createRelayTopology, startRelay, startRelayClient, startShadowsocksChain, tempRelayDir, type RelayTopology } from '../helpers/relay-topology';

const SINK = path.join(DIST, 'test', 'bench', 'upload-sink.js');
const LOCAL_GET = 8081;   // byte server in the relay namespace: raw and proxy downloads
const LOCAL_PUT = 8091;   // upload sink in the relay namespace: raw and proxy uploads
const DEST_GET_TCP = 8082;
const DEST_GET_MPTCP = 8080;
const DEST_PUT_TCP = 8092;
const DEST_PUT_MPTCP = 8090;
const RELAY_PORT = 8443;
const BRAID_RELAY_PORT = 1080;
const SS_LOCAL_PORT = 1081;
const BRAID_DIRECT_PORT = 1083;
const SS_SERVER_PORT = 8388;
const BRAID_RELAY_NOPOOL_PORT = 1084;
// shadowsocks-libev at its fastest here: its aes-128-gcm ran at under half the speed
// (1.40-1.61 against 3.15-4.29 Gbit/s unshaped, README "Performance").
export const SS_CIPHER = 'chacha20-ietf-poly1305';

export const PATHS = ['raw', 'rawAgain', 'proxy', 'relay', 'relayNoPool', 'relayMptcpDest', 'ss'] as const;
export type PathName = typeof PATHS[number];
export type Direction = 'down' | 'up';
export const PATH_LABEL: Record<PathName, string> = {
  raw: 'raw kernel MPTCP (mptcpize curl), no proxy',
  rawAgain: 'raw again (the reference against itself)',
  proxy: 'braid up (local proxy, MPTCP dial)',
  relay: 'braid up → braid relay → TCP destination',
  relayNoPool: 'the same, no warm pool (a dial per request)',
  relayMptcpDest: 'braid up → braid relay → MPTCP destination',
  ss: `ss-local → ss-server, --mptcp, ${SS_CIPHER}`,
};

/** The two client⇄relay links get their own rates (tbf on both ends, as Topology.link sets it up). */
export async function reshape(topo: RelayTopology, rates: [number, number]): Promise<void> {
  for (const [i, link] of topo.links.entries()) {
    for (const end of [link.a, link.b]) {
      await end.ns.exec(['tc', 'qdisc', 'replace', 'dev', end.dev, 'root', ...tbf(rates[i]!)]);
    }
  }
}

export async function txBytes(ns: Namespace, devs: [string, string]): Promise<[number, number]> {
  const { stdout } = await ns.exec(['ip', '-s', '-j', 'link', 'show']);
  const all = JSON.parse(stdout) as Array<{ ifname: string; stats64?: { tx?: { bytes?: number } } }>;
  const tx = (dev: string): number => Number(all.find((l) => l.ifname === dev)?.stats64?.tx?.bytes ?? NaN);
  return [tx(devs[0]), tx(devs[1])];
}

async function startSink(ns: Namespace, port: number, tcp: boolean): Promise<NsProcess> {
  const proc = ns.spawn([process.execPath, SINK, '--port', String(port), ...(tcp ? ['--tcp'] : [])], { label: `upload-sink${tcp ? ' --tcp' : ''} :${port}` });
  await proc.waitForLine(/^listening \d+/, 15_000);
  return proc;
}

/** A file of `bytes` pseudo-random bytes (a random 1 MiB block repeated) and its SHA-256. */
export function uploadFile(bytes: number): { file: string; sha256: string; dir: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-upload-'));
  const file = path.join(dir, 'body');
  const block = crypto.randomBytes(1024 * 1024);
  const hash = crypto.createHash('sha256');
  const fd = fs.openSync(file, 'w');
  try {
    for (let left = bytes; left > 0;) {
      const n = Math.min(left, block.length);
      fs.writeSync(fd, block, 0, n);
      hash.update(block.subarray(0, n));
      left -= n;
    }
  } finally { fs.closeSync(fd); }
  return { file, sha256: hash.digest('hex'), dir };
}

interface Endpoints { url: (dir: Direction, p: PathName, bytes: number) => string; socks: (p: PathName) => number | null }

export interface Rig {
  topo: RelayTopology;
  relay: NsProcess;
  /** the relay's share link, for more clients */
  relayLink: string;
  braidRelay: NsProcess;
  braidRelayNoPool: NsProcess;
  braidDirect: NsProcess;
  ssLocal: NsProcess;
  ssServer: NsProcess;
  dirs: string[];
  ep: Endpoints;
}

/** `oneWayMs`: each client⇄relay link passes a delay line (see createRelayTopology). */
export async function startRig(rateMbit: number | null, opts: { relayExtra?: string[]; oneWayMs?: number } = {}): Promise<Rig> {
  const topo = await createRelayTopology({ rateMbit, oneWayMs: opts.oneWayMs });
  const dirs: string[] = [];
  try {
    await startByteServer(topo.relay, { port: LOCAL_GET });
    await startSink(topo.relay, LOCAL_PUT, false);
    await startByteServer(topo.dest, { port: DEST_GET_MPTCP });
    await startByteServer(topo.dest, { port: DEST_GET_TCP, tcp: true });
    await startSink(topo.dest, DEST_PUT_MPTCP, false);
    await startSink(topo.dest, DEST_PUT_TCP, true);
    const relayDir = tempRelayDir();
    dirs.push(relayDir);
    const relay = await startRelay(topo, { port: RELAY_PORT, dir: relayDir, extra: opts.relayExtra });
    const braidRelay = await startRelayClient(topo.client, { port: BRAID_RELAY_PORT, link: relay.link });
    const noPoolConfig = path.join(relayDir, 'client-no-pool.json');
    fs.writeFileSync(noPoolConfig, JSON.stringify({ relay: { poolSize: 0 } }));
    const braidRelayNoPool = await startRelayClient(topo.client, { port: BRAID_RELAY_NOPOOL_PORT, link: relay.link, extra: ['--config', noPoolConfig, '--control', 'off'] });
    const braidDirect = topo.client.spawn([process.execPath, BRAID_CLI, 'up', '--host', '127.0.0.1', '--port', String(BRAID_DIRECT_PORT), '--dial', 'mptcp', '--paths', 'off', '--control', 'off'], { label: 'braid up (direct)' });
    await braidDirect.waitForLine(/listening/i, 15_000);
    const { ssServer, ssLocal } = await startShadowsocksChain(topo, { serverPort: SS_SERVER_PORT, localPort: SS_LOCAL_PORT, cipher: SS_CIPHER });
    const local = topo.relayAddress(1);
    const dest = topo.destAddress(4);
    const ep: Endpoints = {
      url: (dir, p, bytes) => {
        const near = p === 'raw' || p === 'rawAgain' || p === 'proxy';
        const host = near ? local : dest;
        const port = dir === 'down'
          ? (near ? LOCAL_GET : p === 'relayMptcpDest' ? DEST_GET_MPTCP : DEST_GET_TCP)
          : (near ? LOCAL_PUT : p === 'relayMptcpDest' ? DEST_PUT_MPTCP : DEST_PUT_TCP);
        return dir === 'down' ? `http://${host}:${port}/bytes/${bytes}` : `http://${host}:${port}/sink`;
      },
      socks: (p) => (p === 'raw' || p === 'rawAgain' ? null : p === 'proxy' ? BRAID_DIRECT_PORT : p === 'ss' ? SS_LOCAL_PORT : p === 'relayNoPool' ? BRAID_RELAY_NOPOOL_PORT : BRAID_RELAY_PORT),
    };
    return { topo, relay: relay.proc, relayLink: relay.link, braidRelay, braidRelayNoPool, braidDirect, ssLocal, ssServer, dirs, ep };
  } catch (err) {
    await topo.destroy();
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
    throw err;
  }
}

export async function stopRig(r: Rig | undefined): Promise<void> {
  if (!r) return;
  await r.topo.destroy();
  for (const d of r.dirs) fs.rmSync(d, { recursive: true, force: true });
}

/**
 * One curl transfer in either direction; checks the byte count (and, for uploads, the sink's
 * SHA-256 of what arrived). Mbit/s over curl's transfer time (after the SOCKS handshake and dial).
 */
export async function transfer(ns: Namespace, dir: Direction, url: string, opts: { socks: number | null; mptcpize: boolean; bytes: number; file?: { file: string; sha256: string }; maxSeconds: number }): Promise<number> {
  const argv = [
    ...(opts.mptcpize ? ['mptcpize', 'run'] : []),
    'curl', '--silent', '--show-error', '--fail', '--max-time', String(opts.maxSeconds),
    ...(opts.socks ? ['--socks5-hostname', `127.0.0.1:${opts.socks}`] : []),
    ...(dir === 'up' ? ['-T', opts.file!.file, '-H', 'Expect:', '--output', '-'] : ['--output', '/dev/null']),
    '--write-out', '\n%{http_code} %{size_download} %{size_upload} %{time_pretransfer} %{time_total}',
    url,
  ];
  const { stdout } = await ns.exec(argv, { timeoutMs: (opts.maxSeconds + 10) * 1000 });
  const lines = stdout.trim().split('\n');
  const [code, down, up, pre, total] = lines.pop()!.trim().split(/\s+/).map(Number) as [number, number, number, number, number];
  if (code !== 200) throw new Error(`${url}: HTTP ${code}`);
  const moved = dir === 'down' ? down : up;
  if (moved !== opts.bytes) throw new Error(`${url}: ${dir === 'down' ? 'downloaded' : 'uploaded'} ${moved} bytes, expected ${opts.bytes}`);
  if (dir === 'up') {
    const got = JSON.parse(lines.join('\n')) as { bytes: number; sha256: string | null };
    if (got.bytes !== opts.bytes || (got.sha256 !== null && got.sha256 !== opts.file!.sha256)) throw new Error(`${url}: the sink received ${got.bytes} bytes (sha256 ${got.sha256?.slice(0, 12) ?? 'not taken'}…), not the ${opts.bytes} sent`);
  }
  return (moved * 8) / (total - pre) / 1e6;
}

