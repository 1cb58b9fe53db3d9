/**
 * Both directions of `npm run bench`: download and upload through each of Braid's data paths,
 * each beside raw kernel MPTCP over the same two links in the same run.
 *
 * One relay topology per shaping (client ⇄ two links ⇄ relay ⇄ unshaped ⇄ destination), with
 * the links shaped 2 × 20 Mbit/s and asymmetric 30 + 10 Mbit/s. In each repetition, back to back,
 * in both directions (curl everywhere, so the client's own cost is alike):
 *
 * - raw: `mptcpize run curl` to a server in the relay namespace (no proxy);
 * - proxy: curl → `braid up --dial mptcp` → the same server (the local proxy alone);
 * - relay: curl → `braid up --relay` → `braid relay` → a plain-TCP destination;
 * - relay, MPTCP destination: the same to a destination that speaks MPTCP;
 * - ss: curl → ss-local --mptcp → ss-server --mptcp → the plain-TCP destination.
 *
 * - raw again: the same as raw, a second time in the repetition: the reference against itself, so
 *   every run shows how far two identical transfers differ (the floor under any per-repetition bar).
 *
 * The order of the paths rotates from one repetition to the next, so no path always runs first
 * after the change of direction. Ratios are paired per repetition (path / raw of the same
 * repetition), then the median; the share of each link is the sender's bytes on that link's
 * interface (the relay host's for a download, the client's for an upload), from the kernel's
 * interface counters.
 *
 * Unshaped upload (1 GB, relay topology without tbf): braid relay vs the shadowsocks chain vs direct
 * MPTCP, with CPU seconds per GB of both ends of each chain (the download side is relay-bench.ts).
 *
 * Both braid up instances run with `--paths off`: the topology's endpoints make the second subflow,
 * so the two instances do not both try to be the namespace's path manager.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Namespace, NsProcess } from '../helpers/netns';
import { DIST, startByteServer } from '../helpers/multipath-harness';
import { createRelayTopology, startRelay, startRelayClient, tempRelayDir, type RelayTopology } from '../helpers/relay-topology';
import { BRAID_CLI } from '../helpers/multipath-harness';
import { CHAIN_CPU_HEADER, chainCpuColumns, chainCpuMedians, chainSample, chainTicks, clockTicks, describeChainSample, NO_CHAIN_CPU, type ChainCpuMedians, type ChainSample } from './cpu';
import { median } from './median';

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
const SS_CIPHER = 'chacha20-ietf-poly1305';

export const PATHS = ['raw', 'rawAgain', 'proxy', 'relay', 'relayMptcpDest', 'ss'] as const;
export type PathName = typeof PATHS[number];
export type Direction = 'down' | 'up';
export const PATH_LABEL: Record<PathName, string> = {
  raw: 'raw kernel MPTCP (mptcpize curl), no proxy',
  rawAgain: 'raw again (the reference against itself)',
  proxy: 'braid up (local proxy, MPTCP dial)',
  relay: 'braid up → braid relay → TCP destination',
  relayMptcpDest: 'braid up → braid relay → MPTCP destination',
  ss: `ss-local → ss-server, --mptcp, ${SS_CIPHER}`,
};

export interface Transfer { mbit: number; share: [number, number] }

export interface ScenarioResult {
  name: string;
  rates: [number, number];
  bytes: number;
  samples: Record<Direction, Record<PathName, Transfer[]>>;
  /** median over repetitions of path / raw in the same repetition */
  pairedRatio: Record<Direction, Record<PathName, number>>;
  medianMbit: Record<Direction, Record<PathName, number>>;
  medianShare: Record<Direction, Record<PathName, [number, number]>>;
}

export interface UnshapedUploadResult {
  bytes: number;
  samples: ChainSample[];
  medianGbit: { braid: number; ss: number; direct: number };
  medianCpuSecondsPerGB: ChainCpuMedians;
}

export interface UpDownResult {
  scenarios: ScenarioResult[];
  unshapedUpload: UnshapedUploadResult | null;
  ssCipher: string;
}

export interface UpDownOptions {
  reps: number;
  shapedBytes: number;
  unshapedBytes: number;
  unshapedReps: number;
  scenarios: Array<{ name: string; rates: [number, number] }>;
  /** paths to measure (raw and raw again are always measured: the reference and its own spread) */
  paths?: PathName[];
  maxSeconds?: number;
}

export const DEFAULT_UPDOWN: UpDownOptions = {
  reps: 5,
  // 40 MB, 8 s at 2 x 20 Mbit/s: with 16 MB (3-4 s) one repetition's ratio moved by 5-9 % on a
  // burst alone; with 40 MB the relay's stayed within 1.00-1.05 (2026-11-30, 5 repetitions).
  shapedBytes: 40 * 1000 * 1000,
  unshapedBytes: 1000 * 1000 * 1000,
  unshapedReps: 3,
  scenarios: [{ name: '2 x 20 Mbit/s', rates: [20, 20] }, { name: '30 + 10 Mbit/s', rates: [30, 10] }],
};

/** The two client⇄relay links get their own rates (tbf on both ends, as Topology.link sets it up). */
export async function reshape(topo: RelayTopology, rates: [number, number]): Promise<void> {
  for (const [i, link] of topo.links.entries()) {
    for (const end of [link.a, link.b]) {
      await end.ns.exec(['tc', 'qdisc', 'replace', 'dev', end.dev, 'root', 'tbf', 'rate', `${rates[i]}mbit`, 'burst', '32kbit', 'latency', '100ms']);
    }
  }
}

async function txBytes(ns: Namespace, devs: [string, string]): Promise<[number, number]> {
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

async function waitForPort(ns: Namespace, port: number, what: string): Promise<void> {
  for (let i = 0; i < 50; i++) {
    const r = await ns.exec(['bash', '-c', `exec 3<>/dev/tcp/127.0.0.1/${port}`], { allowFailure: true, timeoutMs: 2000 });
    if (r.code === 0) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${what} did not listen on port ${port} within 5 s`);
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
  braidRelay: NsProcess;
  braidDirect: NsProcess;
  ssLocal: NsProcess;
  ssServer: NsProcess;
  dirs: string[];
  ep: Endpoints;
}

export async function startRig(rateMbit: number | null, opts: { relayExtra?: string[] } = {}): Promise<Rig> {
  const topo = await createRelayTopology({ rateMbit });
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
    const braidDirect = topo.client.spawn([process.execPath, BRAID_CLI, 'up', '--host', '127.0.0.1', '--port', String(BRAID_DIRECT_PORT), '--dial', 'mptcp', '--paths', 'off', '--control', 'off'], { label: 'braid up (direct)' });
    await braidDirect.waitForLine(/listening/i, 15_000);
    const password = 'bench-' + crypto.randomBytes(6).toString('hex');
    const ssServer = topo.relay.spawn(['ss-server', '-s', topo.relayAddress(1), '-p', String(SS_SERVER_PORT), '-k', password, '-m', SS_CIPHER, '--mptcp'], { label: 'ss-server' });
    const ssLocal = topo.client.spawn(['ss-local', '-s', topo.relayAddress(1), '-p', String(SS_SERVER_PORT), '-b', '127.0.0.1', '-l', String(SS_LOCAL_PORT), '-k', password, '-m', SS_CIPHER, '--mptcp'], { label: 'ss-local' });
    await waitForPort(topo.client, SS_LOCAL_PORT, 'ss-local');
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
      socks: (p) => (p === 'raw' || p === 'rawAgain' ? null : p === 'proxy' ? BRAID_DIRECT_PORT : p === 'ss' ? SS_LOCAL_PORT : BRAID_RELAY_PORT),
    };
    return { topo, relay: relay.proc, braidRelay, braidDirect, ssLocal, ssServer, dirs, ep };
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

/** `xs` rotated left by `k` (the order of one repetition). */
function rotate<T>(xs: readonly T[], k: number): T[] {
  const n = xs.length;
  return n === 0 ? [] : xs.map((_, i) => xs[(i + k) % n]!);
}

async function shapedScenario(sc: { name: string; rates: [number, number] }, o: UpDownOptions, file: { file: string; sha256: string }, log: (s: string) => void): Promise<ScenarioResult> {
  const paths = PATHS.filter((p) => p === 'raw' || p === 'rawAgain' || !o.paths || o.paths.includes(p));
  const empty = (): Record<PathName, Transfer[]> => ({ raw: [], rawAgain: [], proxy: [], relay: [], relayMptcpDest: [], ss: [] });
  const out: ScenarioResult = {
    name: sc.name, rates: sc.rates, bytes: o.shapedBytes, samples: { down: empty(), up: empty() },
    pairedRatio: { down: {} as Record<PathName, number>, up: {} as Record<PathName, number> },
    medianMbit: { down: {} as Record<PathName, number>, up: {} as Record<PathName, number> },
    medianShare: { down: {} as Record<PathName, [number, number]>, up: {} as Record<PathName, [number, number]> },
  };
  let rig: Rig | undefined;
  try {
    rig = await startRig(20);
    await reshape(rig.topo, sc.rates);
    const { topo, ep } = rig;
    const devs: [string, string] = [topo.links[0].a.dev, topo.links[1].a.dev];
    for (let rep = 1; rep <= o.reps; rep++) {
      const parts: string[] = [];
      for (const dir of ['down', 'up'] as const) {
        const sender = dir === 'down' ? topo.relay : topo.client;
        for (const p of rotate(paths, rep - 1)) {
          const before = await txBytes(sender, devs);
          let mbit: number;
          try {
            mbit = await transfer(topo.client, dir, ep.url(dir, p, o.shapedBytes), { socks: ep.socks(p), mptcpize: ep.socks(p) === null, bytes: o.shapedBytes, file, maxSeconds: o.maxSeconds ?? 60 });
          } catch (err) {
            // A path that failed is a figure too (0), not a reason to lose the others.
            log(`  ${sc.name} ${dir} ${p}: FAILED ${(err as Error).message.split('\n')[0]}`);
            mbit = 0;
          }
          const after = await txBytes(sender, devs);
          const d = [after[0] - before[0], after[1] - before[1]];
          out.samples[dir][p].push({ mbit, share: [d[0]! / (d[0]! + d[1]!), d[1]! / (d[0]! + d[1]!)] });
        }
        parts.push(`${dir} ` + paths.map((p) => `${p} ${out.samples[dir][p].at(-1)!.mbit.toFixed(1)}`).join(', '));
      }
      log(`  ${sc.name} rep ${rep}: ${parts.join(' | ')} Mbit/s`);
    }
  } finally {
    await stopRig(rig);
  }
  for (const dir of ['down', 'up'] as const) {
    const raw = out.samples[dir].raw;
    for (const p of paths) {
      const s = out.samples[dir][p];
      out.medianMbit[dir][p] = median(s.map((x) => x.mbit));
      out.pairedRatio[dir][p] = median(s.map((x, i) => x.mbit / raw[i]!.mbit));
      out.medianShare[dir][p] = [median(s.map((x) => x.share[0])), median(s.map((x) => x.share[1]))];
    }
  }
  return out;
}

async function unshapedUpload(o: UpDownOptions, file: { file: string; sha256: string }, log: (s: string) => void): Promise<UnshapedUploadResult> {
  const ticks = clockTicks();
  const out: UnshapedUploadResult = { bytes: o.unshapedBytes, samples: [], medianGbit: { braid: NaN, ss: NaN, direct: NaN }, medianCpuSecondsPerGB: { ...NO_CHAIN_CPU } };
  let rig: Rig | undefined;
  try {
    rig = await startRig(null);
    const { topo, ep } = rig;
    const pids = [rig.braidRelay.pid, rig.relay.pid, rig.ssLocal.pid, rig.ssServer.pid];
    if (pids.some((p) => p === undefined)) throw new Error('a chain process has no pid');
    const [bc, br, sl, ss] = pids as number[];
    const gb = o.unshapedBytes / 1e9;
    const t = { bytes: o.unshapedBytes, file, maxSeconds: 60 };
    // Counted, not hashed, at the sink: hashing 1 GB would compete for the CPU being measured.
    const url = (p: PathName): string => `${ep.url('up', p, 0)}?hash=0`;
    for (let rep = 1; rep <= o.unshapedReps; rep++) {
      const b0 = chainTicks(bc, br);
      const b = await transfer(topo.client, 'up', url('relay'), { ...t, socks: ep.socks('relay'), mptcpize: false });
      const b1 = chainTicks(bc, br);
      const s0 = chainTicks(sl, ss);
      const s = await transfer(topo.client, 'up', url('ss'), { ...t, socks: ep.socks('ss'), mptcpize: false });
      const s1 = chainTicks(sl, ss);
      const d = await transfer(topo.client, 'up', url('raw'), { ...t, socks: null, mptcpize: true });
      const sample = chainSample({ braid: b / 1000, ss: s / 1000, direct: d / 1000 }, [b0, b1], [s0, s1], ticks, gb);
      out.samples.push(sample);
      log(`  unshaped upload rep ${rep}: ${describeChainSample(sample)}`);
    }
  } finally {
    await stopRig(rig);
  }
  const m = (f: (x: UnshapedUploadResult['samples'][number]) => number): number => median(out.samples.map(f));
  out.medianGbit = { braid: m((x) => x.braidGbit), ss: m((x) => x.ssGbit), direct: m((x) => x.directGbit) };
  out.medianCpuSecondsPerGB = chainCpuMedians(out.samples, median);
  return out;
}

export async function upDownBench(log: (s: string) => void, o: UpDownOptions = DEFAULT_UPDOWN): Promise<UpDownResult> {
  const out: UpDownResult = { scenarios: [], unshapedUpload: null, ssCipher: SS_CIPHER };
  const shapedFile = uploadFile(o.shapedBytes);
  try {
    for (const sc of o.scenarios) {
      log(`bench: both directions, relay topology shaped ${sc.name}, ${o.shapedBytes / 1e6} MB x ${o.reps}`);
      out.scenarios.push(await shapedScenario(sc, o, shapedFile, log));
    }
  } finally {
    fs.rmSync(shapedFile.dir, { recursive: true, force: true });
  }
  if (o.unshapedReps > 0) {
    log(`bench: upload, relay topology unshaped, ${o.unshapedBytes / 1e9} GB x ${o.unshapedReps}`);
    const big = uploadFile(o.unshapedBytes);
    try {
      out.unshapedUpload = await unshapedUpload(o, big, log);
    } finally {
      fs.rmSync(big.dir, { recursive: true, force: true });
    }
  }
  return out;
}

export function printUpDown(r: UpDownResult, log: (s: string) => void): void {
  const pct = (x: number | undefined): string => (x === undefined || !Number.isFinite(x) ? '  -' : `${(x * 100).toFixed(0)}%`.padStart(4));
  for (const sc of r.scenarios) {
    log('');
    log(`both directions, shaped ${sc.name}, ${sc.bytes / 1e6} MB, median of ${sc.samples.down.raw.length} (ratio: paired with raw, then median; share: sender's bytes per link)`);
    log(`${''.padEnd(48)}  ${'down Mbit/s'.padStart(11)} ${'×raw'.padStart(6)} ${'link1'.padStart(5)} ${'link2'.padStart(5)}   ${'up Mbit/s'.padStart(9)} ${'×raw'.padStart(6)} ${'link1'.padStart(5)} ${'link2'.padStart(5)}`);
    for (const p of PATHS) {
      if (!(p in sc.medianMbit.down)) continue;
      const col = (dir: Direction): string => {
        const range = sc.samples[dir][p].map((x) => x.mbit);
        void range;
        return `${sc.medianMbit[dir][p]!.toFixed(1).padStart(dir === 'down' ? 11 : 9)} ${(p === 'raw' ? '' : sc.pairedRatio[dir][p]!.toFixed(3)).padStart(6)} ${pct(sc.medianShare[dir][p]![0]).padStart(5)} ${pct(sc.medianShare[dir][p]![1]).padStart(5)}`;
      };
      log(`${PATH_LABEL[p].padEnd(48)}  ${col('down')}   ${col('up')}`);
    }
    for (const dir of ['down', 'up'] as const) {
      const ratios = PATHS.filter((p) => p !== 'raw' && p in sc.medianMbit[dir]).map((p) => {
        const rs = sc.samples[dir][p].map((x, i) => x.mbit / sc.samples[dir].raw[i]!.mbit);
        return `${p} ${Math.min(...rs).toFixed(2)}–${Math.max(...rs).toFixed(2)}`;
      });
      log(`  ${dir} ×raw range over reps: ${ratios.join(', ')}`);
    }
  }
  const u = r.unshapedUpload;
  if (u) {
    const c = u.medianCpuSecondsPerGB;
    log('');
    log(`${`upload, relay topology unshaped, ${u.bytes / 1e9} GB, median of ${u.samples.length}`.padEnd(56)}      throughput  ${CHAIN_CPU_HEADER}`);
    log(`${'braid up + braid relay'.padEnd(56)}  ${u.medianGbit.braid.toFixed(2).padStart(6)} Gbit/s  ${chainCpuColumns(c, 'braid')}`);
    log(`${`ss-local + ss-server (${r.ssCipher})`.padEnd(56)}  ${u.medianGbit.ss.toFixed(2).padStart(6)} Gbit/s  ${chainCpuColumns(c, 'ss')}`);
    log(`${'direct MPTCP to the relay host (mptcpize curl -T)'.padEnd(56)}  ${u.medianGbit.direct.toFixed(2).padStart(6)} Gbit/s`);
  }
}

/** `node dist/test/bench/updown-bench.js [--reps N] [--mb N] [--unshaped-reps N] [--only 20x20|30+10] [--paths a,b]` */
async function cli(): Promise<void> {
  const args = process.argv.slice(2);
  const arg = (name: string): string | undefined => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const o: UpDownOptions = { ...DEFAULT_UPDOWN };
  if (arg('--reps')) o.reps = Number(arg('--reps'));
  if (arg('--mb')) o.shapedBytes = Number(arg('--mb')) * 1e6;
  if (arg('--unshaped-reps')) o.unshapedReps = Number(arg('--unshaped-reps'));
  if (arg('--unshaped-mb')) o.unshapedBytes = Number(arg('--unshaped-mb')) * 1e6;
  if (arg('--only')) o.scenarios = o.scenarios.filter((s) => s.rates.join(s.rates[0] === s.rates[1] ? 'x' : '+') === arg('--only'));
  if (arg('--paths')) o.paths = arg('--paths')!.split(',') as PathName[];
  const log = (s: string): void => { process.stdout.write(s + '\n'); };
  const r = await upDownBench(log, o);
  printUpDown(r, log);
  const dir = path.resolve(DIST, '..', 'test-artifacts');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'bench-updown.json'), JSON.stringify(r, null, 2) + '\n');
}

if (require.main === module) {
  cli().catch((err) => {
    process.stderr.write(`updown bench failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  });
}
