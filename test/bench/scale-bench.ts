/**
 * Bench part "scale": 1,000 and 5,000 concurrent, idle connections through `braid up` (MPTCP dial,
 * two links in namespaces, the control API on with a dashboard-like WebSocket client subscribed),
 * against a reference measured in the same run: a bare Node process holding the same number of
 * idle socket pairs (accept, dial MPTCP with the same addon call, pipe). For each count:
 *
 *   - RSS per connection: (RSS with N idle − RSS after a warm-up with none) / N, 3 s after they
 *     opened (V8's heap still sized for the burst) and once settled;
 *   - idle CPU, % of one core (utime + stime from /proc, all threads), the median of a few windows
 *     after the connections have settled;
 *   - the stats sampler's CPU time per connection per second over the CPU windows (the sum of the
 *     ticks' system.sampleUs: an idle engine ticks every 5 s and reads idle connections in slices),
 *     against two bare socketInfo() per connection in the reference (what reading every connection
 *     on every 500 ms tick costs).
 *
 * Every process runs fresh per count. They inherit this process's hard open-file limit, which must
 * allow the count (Braid's default connection limit follows it; it is checked before starting).
 * Called from bench.ts (`--scale-only` runs just this); also runnable alone.
 * Results go to stdout and to test-artifacts/scale-bench.json.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createTwoLinkTopology, skipUnlessRoot, type NsProcess, type TwoLinkTopology } from '../helpers/netns';
import { BRAID_CLI, DIST, missingPrerequisite } from '../helpers/multipath-harness';
import { CONTROL_LINE, parseControlLine } from '../helpers/control-client';
import { clockTicks, cpuTicks } from './cpu';
import { connectionsForFds, currentFdLimit } from '../../electron/core/fd-limit';

const COUNTS = [1000, 5000];
const SERVER_PORT = 9000;
const PROXY_PORT = 1080;
const REF_PORT = 1090;
const WARMUP_CONNECTIONS = 50;
/**
 * After a burst of new connections V8 keeps working for a while (optimising code, the memory
 * reducer's major GCs on its worker threads); "idle" starts after that.
 */
const SETTLE_MS = 15_000;
/** CPU is measured over several windows, the median reported: a GC or a neighbour's burst lands in one. */
const WINDOWS = 4;
const WINDOW_MS = 8000;
const PROCS = path.join(DIST, 'test', 'bench', 'scale-procs.js');
const CONTROL_CLIENT = path.join(DIST, 'test', 'helpers', 'control-client.js');
/** Targets from the issue, printed beside the figures. */
export const TARGETS = { rssKbPerConnection: 20, idleCpuPctAt1000: 1 };

export interface ScaleSample {
  connections: number;
  rssKbPerConnection: number;
  rssKbPerConnectionAt3s: number;
  idleCpuPct: number;
  idleCpuPctWindows: number[];
  sampleUsPerConnectionPerSecond: number | null;
  openSeconds: number;
}

export interface ScaleRow {
  connections: number;
  braid: ScaleSample;
  reference: ScaleSample;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]);
}

async function openClients(topo: TwoLinkTopology, port: number, count: number, socks: boolean): Promise<{ proc: NsProcess; seconds: number }> {
  const argv = [process.execPath, PROCS, 'clients', '--port', String(port), '--count', String(count),
    ...(socks ? ['--socks', `${topo.serverAddress(1)}:${SERVER_PORT}`] : [])];
  const proc = topo.client.spawn(argv, { label: `scale clients x${count}` });
  const { line } = await proc.waitForLine(/^ready /, 180_000);
  const r = JSON.parse(line.slice('ready '.length)) as { open: number; failed: number; firstError: string; seconds: number };
  if (r.open !== count) throw new Error(`only ${r.open} of ${count} connections opened (${r.failed} failed: ${r.firstError})`);
  return { proc, seconds: r.seconds };
}

/** One process under test, fresh: warm-up, baseline, N idle connections, a CPU window. */
async function measure(topo: TwoLinkTopology, kind: 'braid' | 'reference', n: number, log: (s: string) => void): Promise<ScaleSample> {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-scale-'));
  let target: NsProcess | undefined;
  let watcher: NsProcess | undefined;
  let clients: NsProcess | undefined;
  try {
    if (kind === 'braid') {
      target = topo.client.spawn([process.execPath, BRAID_CLI, 'up', '--host', '127.0.0.1', '--port', String(PROXY_PORT), '--dial', 'mptcp',
        '--paths', 'off', '--control', '127.0.0.1:0', '--state-dir', stateDir], { label: 'braid up (scale)', env: { ...process.env, BRAID_CONFIG: path.join(stateDir, 'config.json') } });
      const { line } = await target.waitForLine(CONTROL_LINE, 15_000);
      const c = parseControlLine(line)!;
      watcher = topo.client.spawn([process.execPath, CONTROL_CLIENT, 'watch', `ws://127.0.0.1:${c.port}/api/ws?token=${c.token}`, '600'], { label: 'dashboard stand-in' });
      await watcher.waitForLine(/"event":"open"/, 10_000);
    } else {
      target = topo.client.spawn([process.execPath, PROCS, 'ref-proxy', '--port', String(REF_PORT), '--dest', `${topo.serverAddress(1)}:${SERVER_PORT}`], { label: 'reference proxy' });
      await target.waitForLine(/^listening /, 15_000);
    }
    const pid = target.pid!;
    const port = kind === 'braid' ? PROXY_PORT : REF_PORT;
    // Code paths loaded and compiled, pools filled: what is left to grow is per connection.
    const warm = await openClients(topo, port, WARMUP_CONNECTIONS, kind === 'braid');
    await warm.proc.stop();
    await sleep(1500);
    const base = rssKb(pid);

    const opened = await openClients(topo, port, n, kind === 'braid');
    clients = opened.proc;
    await sleep(3000);
    const rss3 = rssKb(pid);
    await sleep(SETTLE_MS - 3000);
    const rss = rssKb(pid);
    const ticks = clockTicks();
    const windows: number[] = [];
    const t0 = Date.now();
    for (let w = 0; w < WINDOWS; w++) {
      const a = Date.now();
      const c0 = cpuTicks(pid);
      await sleep(WINDOW_MS);
      windows.push(((cpuTicks(pid) - c0) / ticks / ((Date.now() - a) / 1000)) * 100);
    }
    const t1 = Date.now();
    const idleCpuPct = median(windows);

    let sampleUs: number | null = null;
    if (kind === 'braid') {
      const costs: number[] = [];
      for (const l of watcher!.lines) {
        if (!l.includes('"event":"stats"')) continue;
        const f = JSON.parse(l) as { at: number; frame: { data: { t: number; connections: number; system: { sampleUs?: number } } } };
        const d = f.frame.data;
        if (d.t >= t0 && d.t <= t1 && d.connections >= n && typeof d.system.sampleUs === 'number') costs.push(d.system.sampleUs);
      }
      sampleUs = costs.reduce((a, b) => a + b, 0) / ((t1 - t0) / 1000) / n;
    } else {
      const from = target.lines.length;
      target.child.kill('SIGUSR2');
      const { line } = await target.waitForLine(/^sample /, 30_000, from);
      sampleUs = (JSON.parse(line.slice('sample '.length)) as { usPerConnection: number }).usPerConnection * (1000 / 500);
    }
    const out: ScaleSample = { connections: n, rssKbPerConnection: (rss - base) / n, rssKbPerConnectionAt3s: (rss3 - base) / n, idleCpuPct, idleCpuPctWindows: windows, sampleUsPerConnectionPerSecond: sampleUs, openSeconds: opened.seconds };
    log(`  ${kind.padEnd(9)} x${n}: RSS ${base} -> ${rss3} (3 s) -> ${rss} kB (${out.rssKbPerConnectionAt3s.toFixed(1)} -> ${out.rssKbPerConnection.toFixed(1)} kB/conn), idle CPU ${idleCpuPct.toFixed(2)} % of a core ` +
      `(windows ${windows.map((w) => w.toFixed(2)).join(' ')})` +
      `${sampleUs === null ? '' : `, sampling ${sampleUs.toFixed(2)} µs/conn/s`}, opened in ${opened.seconds.toFixed(1)} s`);
    return out;
  } finally {
    await clients?.stop();
    await watcher?.stop();
    await target?.stop(5000);
    fs.rmSync(stateDir, { recursive: true, force: true });
  }
}

export async function scaleBench(log: (s: string) => void = (s) => void process.stdout.write(s + '\n'), counts = COUNTS): Promise<ScaleRow[]> {
  log(`bench: scale, ${counts.join(' / ')} idle connections through braid up (MPTCP, two links, control API on, one WebSocket client) vs a bare Node proxy`);
  const hard = currentFdLimit().hard;
  if (connectionsForFds(hard) < Math.max(...counts)) {
    throw new Error(`the hard open-file limit (${hard}) allows ${connectionsForFds(hard)} connections, fewer than ${Math.max(...counts)}: raise it (ulimit -Hn)`);
  }
  const topo = await createTwoLinkTopology({ rateMbit: null });
  const rows: ScaleRow[] = [];
  try {
    await topo.server.exec(['sysctl', '-qw', 'net.core.somaxconn=8192']);
    await topo.client.exec(['sysctl', '-qw', 'net.core.somaxconn=8192']);
    const server = topo.server.spawn([process.execPath, PROCS, 'hold-server', '--port', String(SERVER_PORT)], { label: 'hold server' });
    await server.waitForLine(/^listening /, 15_000);
    for (const n of counts) {
      // Alternated so that drift over the run affects both alike.
      const braid = await measure(topo, 'braid', n, log);
      const reference = await measure(topo, 'reference', n, log);
      rows.push({ connections: n, braid, reference });
    }
  } finally {
    await topo.destroy();
  }
  const cell = (v: number | null, d = 1): string => (v === null ? '-' : v.toFixed(d));
  log('');
  log(`${'connections'.padStart(11)}  ${'RSS kB/conn at 3 s'.padStart(18)} ${'(ref)'.padStart(7)}  ${'settled'.padStart(7)} ${'(ref)'.padStart(7)}  ${'idle CPU %'.padStart(10)} ${'(ref)'.padStart(7)}  ${'sampling µs/conn/s'.padStart(21)} ${'(ref)'.padStart(7)}`);
  for (const r of rows) {
    log(`${String(r.connections).padStart(11)}  ${cell(r.braid.rssKbPerConnectionAt3s).padStart(18)} ${cell(r.reference.rssKbPerConnectionAt3s).padStart(7)}  ` +
      `${cell(r.braid.rssKbPerConnection).padStart(7)} ${cell(r.reference.rssKbPerConnection).padStart(7)}  ` +
      `${cell(r.braid.idleCpuPct, 2).padStart(10)} ${cell(r.reference.idleCpuPct, 2).padStart(7)}  ` +
      `${cell(r.braid.sampleUsPerConnectionPerSecond, 2).padStart(21)} ${cell(r.reference.sampleUsPerConnectionPerSecond, 2).padStart(7)}`);
  }
  log(`  targets: RSS ≤ ${TARGETS.rssKbPerConnection} kB per connection; idle CPU ≤ ${TARGETS.idleCpuPctAt1000} % of a core at 1,000`);
  log('  (ref: a bare Node process piping the same number of idle socket pairs; its sampling figure is one socketInfo() per connection every 500 ms)');
  const dir = path.resolve(DIST, '..', 'test-artifacts');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'scale-bench.json'), JSON.stringify({ when: new Date().toISOString(), settleMs: SETTLE_MS, windows: WINDOWS, windowMs: WINDOW_MS, targets: TARGETS, rows }, null, 2) + '\n');
  log(`wrote ${path.join(dir, 'scale-bench.json')}`);
  return rows;
}

if (require.main === module) {
  const skip = skipUnlessRoot() ?? missingPrerequisite();
  if (skip) {
    process.stderr.write(`scale bench: cannot run: ${skip}\n`);
    process.exit(2);
  }
  const i = process.argv.indexOf('--counts');
  const counts = i >= 0 ? process.argv[i + 1]!.split(',').map(Number) : COUNTS;
  scaleBench(undefined, counts).then(() => {}, (err) => {
    process.stderr.write(`scale bench failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  });
}
