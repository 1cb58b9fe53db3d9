/**
 * Transparent mode in `npm run bench` (`--transparent-only` runs just this part): what the kernel's
 * redirect costs against an explicit SOCKS5 request to the same Braid, in the same run. One
 * `braid up --transparent` in the client namespace serves both: curl with `--socks5-hostname` goes
 * to its proxy port (loopback is bypassed), plain curl is redirected by nftables. Interleaved, so
 * drift affects both alike.
 *
 * - shaped, 2 x 20 Mbit/s: throughput, median of paired ratios (target >= 0.98);
 * - unshaped: throughput and braid's CPU seconds per GB;
 * - time to first byte on bare veths (curl's time_starttransfer, 1-byte body): the difference is
 *   the redirect plus reading the original destination (target <= 1 ms).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createTwoLinkTopology, type NsProcess, type TwoLinkTopology } from '../helpers/netns';
import { BRAID_CLI, curlDownload, startByteServer } from '../helpers/multipath-harness';
import { clockTicks, cpuTicks } from './cpu';
import { median } from './figures';

const RATE_MBIT = 20;
const SHAPED_BYTES = 16 * 1000 * 1000;
const SHAPED_REPS = 5;
const UNSHAPED_BYTES = 1000 * 1000 * 1000;
const UNSHAPED_REPS = 3;
const TTFB_ROUNDS = 30;
const SERVER_PORT = 8080;
const PROXY_PORT = 1080;

export interface TransparentBenchResult {
  shaped: { socksMbit: number[]; transparentMbit: number[]; ratioMedianOfPairs: number };
  unshaped: { socksGbit: number[]; transparentGbit: number[]; socksCpuPerGB: number[]; transparentCpuPerGB: number[]; ratioMedianOfPairs: number };
  ttfb: { socksMs: number[]; transparentMs: number[]; medianExtraMs: number };
}

async function withBraid<T>(rateMbit: number | null, fn: (topo: TwoLinkTopology, braid: NsProcess) => Promise<T>): Promise<T> {
  const topo = await createTwoLinkTopology({ rateMbit });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-tbench-'));
  let braid: NsProcess | undefined;
  try {
    await startByteServer(topo.server, { port: SERVER_PORT });
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({
      proxy: { host: '127.0.0.1', port: PROXY_PORT, dial: 'mptcp' },
      transparent: { enabled: true, bypass: ['127.0.0.0/8', '::1/128'] },
      paths: { enabled: false },
      control: { enabled: false },
    }));
    braid = topo.client.spawn([process.execPath, BRAID_CLI, 'up', '--config', path.join(dir, 'config.json'), '--state-dir', path.join(dir, 'state')], { label: 'braid up --transparent' });
    await braid.waitForLine(/^braid: transparent mode: /, 20_000);
    return await fn(topo, braid);
  } finally {
    await braid?.stop();
    await topo.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export async function transparentBench(log: (s: string) => void): Promise<TransparentBenchResult> {
  const out: TransparentBenchResult = {
    shaped: { socksMbit: [], transparentMbit: [], ratioMedianOfPairs: NaN },
    unshaped: { socksGbit: [], transparentGbit: [], socksCpuPerGB: [], transparentCpuPerGB: [], ratioMedianOfPairs: NaN },
    ttfb: { socksMs: [], transparentMs: [], medianExtraMs: NaN },
  };
  log(`bench: transparent mode vs explicit SOCKS5, two-link topology, ${RATE_MBIT} Mbit/s per link, ${SHAPED_BYTES / 1e6} MB x ${SHAPED_REPS}`);
  await withBraid(RATE_MBIT, async (topo) => {
    const url = `http://${topo.serverAddress(1)}:${SERVER_PORT}/bytes/${SHAPED_BYTES}`;
    for (let rep = 1; rep <= SHAPED_REPS; rep++) {
      const s = await curlDownload(topo.client, url, { socksPort: PROXY_PORT, maxSeconds: 30 });
      const t = await curlDownload(topo.client, url, { maxSeconds: 30 });
      if (s.bytes !== SHAPED_BYTES || t.bytes !== SHAPED_BYTES) throw new Error(`short download: socks ${s.bytes}, transparent ${t.bytes}`);
      out.shaped.socksMbit.push(s.mbit);
      out.shaped.transparentMbit.push(t.mbit);
      log(`  shaped rep ${rep}: socks ${s.mbit.toFixed(1)}, transparent ${t.mbit.toFixed(1)} Mbit/s`);
    }
  });
  out.shaped.ratioMedianOfPairs = median(out.shaped.transparentMbit.map((t, i) => t / out.shaped.socksMbit[i]!));

  log(`bench: transparent mode vs explicit SOCKS5, unshaped, ${UNSHAPED_BYTES / 1e9} GB x ${UNSHAPED_REPS}; time to first byte x ${TTFB_ROUNDS}`);
  await withBraid(null, async (topo, braid) => {
    const ticks = clockTicks();
    const url = `http://${topo.serverAddress(1)}:${SERVER_PORT}/bytes/${UNSHAPED_BYTES}`;
    for (let rep = 1; rep <= UNSHAPED_REPS; rep++) {
      for (const kind of ['socks', 'transparent'] as const) {
        const before = cpuTicks(braid.pid!);
        const d = await curlDownload(topo.client, url, { socksPort: kind === 'socks' ? PROXY_PORT : undefined, maxSeconds: 40 });
        const cpu = (cpuTicks(braid.pid!) - before) / ticks / (d.bytes / 1e9);
        if (d.bytes !== UNSHAPED_BYTES) throw new Error(`${kind}: short download ${d.bytes}`);
        (kind === 'socks' ? out.unshaped.socksGbit : out.unshaped.transparentGbit).push(d.mbit / 1000);
        (kind === 'socks' ? out.unshaped.socksCpuPerGB : out.unshaped.transparentCpuPerGB).push(cpu);
      }
      log(`  unshaped rep ${rep}: socks ${out.unshaped.socksGbit.at(-1)!.toFixed(2)}, transparent ${out.unshaped.transparentGbit.at(-1)!.toFixed(2)} Gbit/s`);
    }
    const one = `http://${topo.serverAddress(1)}:${SERVER_PORT}/bytes/1`;
    const ttfb = async (socks: boolean): Promise<number> => {
      const { stdout } = await topo.client.exec(['curl', '-sS', '--fail', '--max-time', '5', '-o', '/dev/null', '-w', '%{time_starttransfer}',
        ...(socks ? ['--socks5-hostname', `127.0.0.1:${PROXY_PORT}`] : []), one], { timeoutMs: 10_000 });
      return Number(stdout.trim()) * 1000;
    };
    for (let i = 0; i < 3; i++) await ttfb(i % 2 === 0); // warm-up
    for (let i = 0; i < TTFB_ROUNDS; i++) {
      out.ttfb.socksMs.push(await ttfb(true));
      out.ttfb.transparentMs.push(await ttfb(false));
    }
  });
  out.unshaped.ratioMedianOfPairs = median(out.unshaped.transparentGbit.map((t, i) => t / out.unshaped.socksGbit[i]!));
  out.ttfb.medianExtraMs = median(out.ttfb.transparentMs.map((t, i) => t - out.ttfb.socksMs[i]!));
  return out;
}

export function printTransparent(r: TransparentBenchResult, log: (s: string) => void): void {
  const line = (label: string, value: string, rest = ''): void => log(`${label.padEnd(58)}  ${value.padStart(14)}${rest}`);
  log('');
  line(`transparent mode, shaped 2 x ${RATE_MBIT} Mbit/s, median`, 'throughput');
  line('explicit SOCKS5 to braid up', `${median(r.shaped.socksMbit).toFixed(1)} Mbit/s`);
  line('plain curl, redirected by nftables (transparent)', `${median(r.shaped.transparentMbit).toFixed(1)} Mbit/s`);
  line('ratio transparent / SOCKS5, median of pairs (target >= 0.98)', r.shaped.ratioMedianOfPairs.toFixed(3));
  line('transparent mode, unshaped, median', 'throughput', '  braid CPU s/GB');
  line('explicit SOCKS5 to braid up', `${median(r.unshaped.socksGbit).toFixed(2)} Gbit/s`, `  ${median(r.unshaped.socksCpuPerGB).toFixed(2)}`);
  line('plain curl, redirected (transparent)', `${median(r.unshaped.transparentGbit).toFixed(2)} Gbit/s`, `  ${median(r.unshaped.transparentCpuPerGB).toFixed(2)}`);
  line('ratio transparent / SOCKS5, median of pairs', r.unshaped.ratioMedianOfPairs.toFixed(3));
  line('time to first byte on bare veths, median', 'ms');
  line('explicit SOCKS5', median(r.ttfb.socksMs).toFixed(2));
  line('transparent', median(r.ttfb.transparentMs).toFixed(2), `  (${r.ttfb.medianExtraMs >= 0 ? '+' : ''}${r.ttfb.medianExtraMs.toFixed(2)} ms, median of pairs; target <= +1 ms)`);
}
