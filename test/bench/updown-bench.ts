/**
 * Both directions of `npm run bench`: download and upload through each of Braid's data paths,
 * each beside raw kernel MPTCP over the same two links in the same run.
 *
 * One relay rig per scenario (updown-rig.ts: the topology and every path on it), with the links
 * shaped 2 × 20 Mbit/s and asymmetric 30 + 10 Mbit/s on bare veths, and 30 + 10 Mbit/s again with
 * a delay line on each link (20 ms round trip), where the no-pool relay path is measured as well.
 * In each repetition, back to back, in both directions, every path of the scenario runs once (curl
 * everywhere, so the client's own cost is alike), raw twice: the second is the reference against
 * itself, so every run shows how far two identical transfers differ (the floor under any
 * per-repetition bar).
 *
 * The order of the paths rotates from one repetition to the next, so no path always runs first
 * after the change of direction. Ratios are paired per repetition (path / raw of the same
 * repetition), then the median; the share of each link is the sender's bytes on that link's
 * interface (the relay host's for a download, the client's for an upload), from the kernel's
 * interface counters.
 *
 * Unshaped upload (1 GB, relay topology without tbf): braid relay vs the shadowsocks chain vs direct
 * MPTCP, with CPU seconds per GB of both ends of each chain (the download side is relay-bench.ts).
 */
import fs from 'node:fs';
import path from 'node:path';
import { DIST } from '../helpers/multipath-harness';
import { CHAIN_CPU_HEADER, chainCpuColumns, chainCpuMedians, chainSample, chainTicks, clockTicks, describeChainSample, describeChainStalls, NO_CHAIN_CPU, type ChainCpuMedians, type ChainSample } from './cpu';
import { median, range } from './figures';
import { watchStalls } from './stalls';
import { PATH_LABEL, PATHS, reshape, SS_CIPHER, startRig, stopRig, transfer, txBytes, uploadFile, type Direction, type PathName, type Rig } from './updown-rig';

/** The paths a scenario measures unless it names its own (raw and raw again always run). */
const DEFAULT_PATHS: PathName[] = ['proxy', 'relay', 'relayMptcpDest', 'ss'];

export interface Scenario {
  name: string;
  rates: [number, number];
  /** one-way delay on each link, ms (a delay line; none when absent) */
  oneWayMs?: number;
  paths?: PathName[];
}

export interface Transfer { mbit: number; share: [number, number] }

export interface ScenarioResult {
  name: string;
  rates: [number, number];
  /** one-way delay on each link, ms (0: bare veths) */
  oneWayMs: number;
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
  scenarios: Scenario[];
  /** only these of each scenario's paths (raw and raw again are always measured: the reference and its own spread) */
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
  scenarios: [
    { name: '2 x 20 Mbit/s', rates: [20, 20] },
    { name: '30 + 10 Mbit/s', rates: [30, 10] },
    // The bare veths' round trip is tens of microseconds; this one has the internet's order of it.
    // The no-pool relay is measured here only: on bare veths its extra set-up costs nothing.
    { name: '30 + 10 Mbit/s, 20 ms RTT', rates: [30, 10], oneWayMs: 10, paths: ['relay', 'relayNoPool', 'ss'] },
  ],
};

/** The name `--only` takes: `20x20`, `30+10`, `30+10@20ms`. */
export function scenarioKey(s: Scenario): string {
  return s.rates.join(s.rates[0] === s.rates[1] ? 'x' : '+') + (s.oneWayMs ? `@${2 * s.oneWayMs}ms` : '');
}

/** `xs` rotated left by `k` (the order of one repetition). */
function rotate<T>(xs: readonly T[], k: number): T[] {
  const n = xs.length;
  return n === 0 ? [] : xs.map((_, i) => xs[(i + k) % n]!);
}

async function shapedScenario(sc: Scenario, o: UpDownOptions, file: { file: string; sha256: string }, log: (s: string) => void): Promise<ScenarioResult> {
  const wanted = sc.paths ?? DEFAULT_PATHS;
  const paths = PATHS.filter((p) => p === 'raw' || p === 'rawAgain' || (wanted.includes(p) && (!o.paths || o.paths.includes(p))));
  const empty = (): Record<PathName, Transfer[]> => Object.fromEntries(PATHS.map((p) => [p, []])) as unknown as Record<PathName, Transfer[]>;
  const out: ScenarioResult = {
    name: sc.name, rates: sc.rates, oneWayMs: sc.oneWayMs ?? 0, bytes: o.shapedBytes, samples: { down: empty(), up: empty() },
    pairedRatio: { down: {} as Record<PathName, number>, up: {} as Record<PathName, number> },
    medianMbit: { down: {} as Record<PathName, number>, up: {} as Record<PathName, number> },
    medianShare: { down: {} as Record<PathName, [number, number]>, up: {} as Record<PathName, [number, number]> },
  };
  let rig: Rig | undefined;
  try {
    rig = await startRig(20, { oneWayMs: sc.oneWayMs });
    await reshape(rig.topo, sc.rates);
    const { topo, ep } = rig;
    for (let rep = 1; rep <= o.reps; rep++) {
      const parts: string[] = [];
      for (const dir of ['down', 'up'] as const) {
        const sender = dir === 'down' ? topo.relay : topo.client;
        // The sender's own end of each link (named alike on a bare veth pair, not through a delay line).
        const end = dir === 'down' ? 'b' : 'a';
        const devs: [string, string] = [topo.links[0][end].dev, topo.links[1][end].dev];
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
    // The receiving end of the client⇄relay connection: the relay's namespace, on uploads.
    const relayDevs = topo.links.map((l) => l.endIn(topo.relay).dev);
    for (let rep = 1; rep <= o.unshapedReps; rep++) {
      const b0 = chainTicks(bc, br);
      const { result: b, stalls: braidStalls } = await watchStalls({ pid: br, ns: topo.relay }, relayDevs, topo.client, () => transfer(topo.client, 'up', url('relay'), { ...t, socks: ep.socks('relay'), mptcpize: false }));
      const b1 = chainTicks(bc, br);
      const s0 = chainTicks(sl, ss);
      const { result: s, stalls: ssStalls } = await watchStalls({ pid: ss, ns: topo.relay }, relayDevs, topo.client, () => transfer(topo.client, 'up', url('ss'), { ...t, socks: ep.socks('ss'), mptcpize: false }));
      const s1 = chainTicks(sl, ss);
      const d = await transfer(topo.client, 'up', url('raw'), { ...t, socks: null, mptcpize: true });
      const sample = { ...chainSample({ braid: b / 1000, ss: s / 1000, direct: d / 1000 }, [b0, b1], [s0, s1], ticks, gb), braidStalls, ssStalls };
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
        return `${sc.medianMbit[dir][p]!.toFixed(1).padStart(dir === 'down' ? 11 : 9)} ${(p === 'raw' ? '' : sc.pairedRatio[dir][p]!.toFixed(3)).padStart(6)} ${pct(sc.medianShare[dir][p]![0]).padStart(5)} ${pct(sc.medianShare[dir][p]![1]).padStart(5)}`;
      };
      log(`${PATH_LABEL[p].padEnd(48)}  ${col('down')}   ${col('up')}`);
    }
    for (const dir of ['down', 'up'] as const) {
      const ratios = PATHS.filter((p) => p !== 'raw' && p in sc.medianMbit[dir]).map((p) => {
        const rs = sc.samples[dir][p].map((x, i) => x.mbit / sc.samples[dir].raw[i]!.mbit);
        return `${p} ${range(rs, 2)}`;
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
    const stalls = describeChainStalls(u.samples);
    if (stalls) log(`${'stalls per upload: gaps >= 50 ms at the relay'.padEnd(56)}  ${stalls}  (their seconds, the client's MPTCP-level retransmissions)`);
  }
}

/** `node dist/test/bench/updown-bench.js [--reps N] [--mb N] [--unshaped-reps N] [--only 20x20|30+10|30+10@20ms] [--paths a,b]` */
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
  if (arg('--only')) o.scenarios = o.scenarios.filter((s) => scenarioKey(s) === arg('--only'));
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
