/**
 * The local proxy's part of `npm run bench` (`--proxy-only` runs it alone), in the two-link
 * topology, against references from this same run:
 *
 * - shaped (two 20 Mbit/s links): download through `braid up --dial mptcp`, the same with raw kernel
 *   MPTCP sockets and no proxy, and plain single-link TCP with no proxy; median of a few repetitions;
 * - unshaped (no tbf), in pairs: Gbit/s through the proxy and the proxy's CPU seconds per GB against
 *   a direct MPTCP download with no proxy; the proxy dialling the MPTCP-speaking byte server against
 *   the same server listening on plain TCP, and the same pair without Braid (the kernel's own MPTCP
 *   against TCP); for each MPTCP download the stalls (test/bench/stalls.ts: gaps of 50 ms or more
 *   with no byte arriving, the sender's MPTCP-level retransmissions) and the ratios with the gaps
 *   taken out; and socat, a plain read/write forwarder, to the TCP destination: what one
 *   forwarding hop costs on this host.
 */
import { onPath } from '../../electron/core/sysproxy/exec';
import { createTwoLinkTopology, type TwoLinkTopology, type NsProcess } from '../helpers/netns';
import { startByteServer, startProxy, curlDownload, rawDownload, nextReport, splitByLink, type LinkSplit } from '../helpers/multipath-harness';
import { waitForPort } from '../helpers/relay-topology';
import { clockTicks, cpuTicks } from './cpu';
import { expectBytes, median, range, Table } from './figures';
import { describeHeldGaps, describeStalls, watchStalls, type StallSample } from './stalls';

const RATE_MBIT = 20;
const SHAPED_BYTES = 16 * 1000 * 1000;
const SHAPED_REPS = 3;
const UNSHAPED_BYTES = 2 * 1000 * 1000 * 1000;
const UNSHAPED_REPS = 5;
const SERVER_PORT = 8080;
const SERVER_TCP_PORT = 8082;   // the same byte server, listening on plain TCP
const PROXY_PORT = 1080;
const FORWARDER_PORT = 9000;  // socat, the unshaped part's plain-forwarder reference
// Bounds per download: a stalled transfer costs at most this, keeping the bench under ~5 minutes.
const SHAPED_MAX_SECONDS = 30;
const UNSHAPED_MAX_SECONDS = 40;

export interface Sample { mbit: number; split?: LinkSplit['shareByLink'] }

async function shaped(log: (s: string) => void): Promise<Record<string, Sample[]>> {
  const topo = await createTwoLinkTopology({ rateMbit: RATE_MBIT });
  const samples: Record<string, Sample[]> = { proxyMptcp: [], rawMptcp: [], singleTcp: [] };
  let proxy: NsProcess | undefined;
  try {
    const server = await startByteServer(topo.server, { port: SERVER_PORT });
    proxy = await startProxy(topo.client, { port: PROXY_PORT, dial: 'mptcp' });
    const url = `http://${topo.serverAddress(1)}:${SERVER_PORT}/bytes/${SHAPED_BYTES}`;
    const split = async (from: number): Promise<LinkSplit['shareByLink']> => splitByLink(await nextReport(server, from), topo).shareByLink;
    // Interleaved, so that drift over the run affects all three alike.
    for (let rep = 1; rep <= SHAPED_REPS; rep++) {
      let from = server.lines.length;
      const p = await curlDownload(topo.client, url, { socksPort: PROXY_PORT, maxSeconds: SHAPED_MAX_SECONDS });
      expectBytes(p.bytes, SHAPED_BYTES, 'proxy');
      samples.proxyMptcp!.push({ mbit: p.mbit, split: await split(from) });

      from = server.lines.length;
      const r = await rawDownload(topo.client, { address: topo.serverAddress(1), port: SERVER_PORT, bytes: SHAPED_BYTES, hash: false, maxSeconds: SHAPED_MAX_SECONDS });
      expectBytes(r.bytes, SHAPED_BYTES, 'raw MPTCP');
      samples.rawMptcp!.push({ mbit: r.mbit, split: await split(from) });

      from = server.lines.length;
      const t = await curlDownload(topo.client, url, { maxSeconds: SHAPED_MAX_SECONDS });
      expectBytes(t.bytes, SHAPED_BYTES, 'single-link TCP');
      samples.singleTcp!.push({ mbit: t.mbit, split: await split(from) });
      log(`  shaped rep ${rep}: proxy ${p.mbit.toFixed(1)}, raw ${r.mbit.toFixed(1)}, tcp ${t.mbit.toFixed(1)} Mbit/s`);
    }
  } finally {
    await proxy?.stop();
    await topo.destroy();
  }
  return samples;
}

export interface UnshapedResult {
  /** through the proxy to the byte server, which speaks MPTCP */
  proxyGbit: number[];
  /** through the proxy to the same server listening on plain TCP, in the same repetition */
  proxyTcpDestGbit: number[];
  /** plain curl, no proxy, to that plain-TCP server: with directGbit, what the kernel's MPTCP costs against TCP here */
  directTcpGbit: number[];
  proxyCpuSecondsPerGB: number[];
  directGbit: number[];
  directClient: string;
  /** per repetition, beside proxyGbit and directGbit: gaps with no byte arriving, the sender's MPTCP retransmissions */
  proxyStalls: StallSample[];
  directStalls: StallSample[];
  /** each download's seconds from request to last byte, for the ratio with the gaps taken out */
  proxySeconds: number[];
  directSeconds: number[];
  /** the proxy's download from the plain-TCP destination, NaN when it ended early */
  proxyTcpDestSeconds: number[];
  /** the TCP destination through socat (a plain forwarder copying with read/write), empty without socat */
  forwarderTcpGbit: number[];
}

async function unshaped(log: (s: string) => void): Promise<UnshapedResult> {
  const topo: TwoLinkTopology = await createTwoLinkTopology({ rateMbit: null });
  const ticks = clockTicks();
  // curl on both sides of the comparison when possible, so the client's own cost is the same.
  const mptcpize = onPath('mptcpize');
  const out: UnshapedResult = { proxyGbit: [], proxyTcpDestGbit: [], directTcpGbit: [], proxyCpuSecondsPerGB: [], directGbit: [], directClient: mptcpize ? 'mptcpize run curl' : 'fetch-bytes (connectFd)',
    proxyStalls: [], directStalls: [], proxySeconds: [], directSeconds: [], proxyTcpDestSeconds: [], forwarderTcpGbit: [] };
  let proxy: NsProcess | undefined;
  let forwarder: NsProcess | undefined;
  try {
    await startByteServer(topo.server, { port: SERVER_PORT });
    await startByteServer(topo.server, { port: SERVER_TCP_PORT, tcp: true });
    proxy = await startProxy(topo.client, { port: PROXY_PORT, dial: 'mptcp' });
    const pid = proxy.pid;
    if (pid === undefined) throw new Error('proxy has no pid');
    const clientDevs = topo.links.map((l) => l.endIn(topo.client).dev);
    const watched = <T>(download: () => Promise<T>): Promise<{ result: T; stalls: StallSample }> => watchStalls({ pid, ns: topo.client }, clientDevs, topo.server, download);
    // The reference for what a forwarding hop costs on this host: any local proxy adds one.
    if (onPath('socat')) {
      forwarder = topo.client.spawn(['socat', `TCP-LISTEN:${FORWARDER_PORT},bind=127.0.0.1,reuseaddr,fork`, `TCP:${topo.serverAddress(1)}:${SERVER_TCP_PORT}`], { label: 'socat' });
      await waitForPort(topo.client, FORWARDER_PORT, 'socat');
    }
    const url = `http://${topo.serverAddress(1)}:${SERVER_PORT}/bytes/${UNSHAPED_BYTES}`;
    const tcpDestUrl = `http://${topo.serverAddress(1)}:${SERVER_TCP_PORT}/bytes/${UNSHAPED_BYTES}`;
    for (let rep = 1; rep <= UNSHAPED_REPS; rep++) {
      const before = cpuTicks(pid);
      const { result: p, stalls: ps } = await watched(() => curlDownload(topo.client, url, { socksPort: PROXY_PORT, maxSeconds: UNSHAPED_MAX_SECONDS }));
      const after = cpuTicks(pid);
      expectBytes(p.bytes, UNSHAPED_BYTES, 'proxy (unshaped)');
      out.proxyGbit.push(p.mbit / 1000);
      out.proxyStalls.push(ps);
      out.proxySeconds.push(p.transferSeconds);
      out.proxyCpuSecondsPerGB.push((after - before) / ticks / (p.bytes / 1e9));

      const { result: d, stalls } = await watched<{ bytes: number; mbit: number }>(() => (mptcpize
        ? curlDownload(topo.client, url, { mptcpize: true, maxSeconds: UNSHAPED_MAX_SECONDS })
        : rawDownload(topo.client, { address: topo.serverAddress(1), port: SERVER_PORT, bytes: UNSHAPED_BYTES, hash: false, maxSeconds: UNSHAPED_MAX_SECONDS })));
      expectBytes(d.bytes, UNSHAPED_BYTES, 'direct MPTCP (unshaped)');
      const directMbit = d.mbit;
      out.directStalls.push(stalls);
      out.directGbit.push(directMbit / 1000);
      out.directSeconds.push((UNSHAPED_BYTES * 8) / (directMbit * 1e6));
      // The proxy dials MPTCP either way; a destination that does not speak it gets plain TCP. A
      // download that ends early is a figure too (README: such a socket can read as ended on 6.18).
      let tcpDestGbit = NaN;
      let tcpDestSeconds = NaN;
      try {
        const t = await curlDownload(topo.client, tcpDestUrl, { socksPort: PROXY_PORT, maxSeconds: UNSHAPED_MAX_SECONDS });
        expectBytes(t.bytes, UNSHAPED_BYTES, 'proxy to a TCP destination (unshaped)');
        tcpDestGbit = t.mbit / 1000;
        tcpDestSeconds = t.transferSeconds;
      } catch (err) {
        log(`  unshaped rep ${rep}: proxy to a TCP destination FAILED: ${(err as Error).message.split('\n')[0]!.slice(-160)}`);
      }
      out.proxyTcpDestGbit.push(tcpDestGbit);
      out.proxyTcpDestSeconds.push(tcpDestSeconds);
      const dt = await curlDownload(topo.client, tcpDestUrl, { maxSeconds: UNSHAPED_MAX_SECONDS });
      expectBytes(dt.bytes, UNSHAPED_BYTES, 'direct TCP (unshaped)');
      out.directTcpGbit.push(dt.mbit / 1000);
      if (forwarder) {
        const f = await curlDownload(topo.client, `http://127.0.0.1:${FORWARDER_PORT}/bytes/${UNSHAPED_BYTES}`, { maxSeconds: UNSHAPED_MAX_SECONDS });
        expectBytes(f.bytes, UNSHAPED_BYTES, 'socat to the TCP destination (unshaped)');
        out.forwarderTcpGbit.push(f.mbit / 1000);
      }
      log(`  unshaped rep ${rep}: proxy ${(p.mbit / 1000).toFixed(2)} Gbit/s (${out.proxyCpuSecondsPerGB.at(-1)!.toFixed(2)} CPU s/GB), direct ${(directMbit / 1000).toFixed(2)} Gbit/s; ` +
        `TCP destination: through the proxy ${tcpDestGbit.toFixed(2)}, direct ${(dt.mbit / 1000).toFixed(2)}, socat ${out.forwarderTcpGbit.at(-1)?.toFixed(2) ?? '-'} Gbit/s; ` +
        `stalls (gaps >= 50 ms, their seconds, the server's MPTCP retransmissions, gaps read as held / missing): proxy ${describeStalls(ps)}, direct ${describeStalls(out.directStalls.at(-1)!)}`);
    }
  } finally {
    await forwarder?.stop();
    await proxy?.stop();
    await topo.destroy();
  }
  return out;
}

function pct(x: number | undefined): string {
  return x === undefined ? '-' : `${(x * 100).toFixed(0)}%`;
}

export interface ProxyBenchResult {
  shaped: {
    rateMbitPerLink: number; bytes: number; repetitions: number;
    medianMbit: { proxyMptcp: number; rawMptcp: number; singleTcp: number };
    ratios: { proxyOverRaw: number; proxyOverSingleTcp: number };
    samples: Record<string, Sample[]>;
  };
  unshaped: {
    bytes: number; repetitions: number;
    medianGbit: { proxyMptcp: number; directMptcp: number; proxyTcpDest: number };
    proxyTcpDestEndedEarly: number;
    ratioProxyOverDirect: number;
    mptcpOverTcpDestPairs: number[];
    kernelMptcpOverTcpPairs: number[];
    proxyOverDirectGapsTakenOutPairs: number[];
    mptcpOverTcpDestGapsTakenOutPairs: number[];
    proxyOverForwarderTcpDestPairs: number[];
    proxyCpuSecondsPerGB: number;
    directClient: string;
    samples: UnshapedResult;
  };
}

export async function proxyBench(log: (s: string) => void): Promise<ProxyBenchResult> {
  log(`bench: two-link topology, ${RATE_MBIT} Mbit/s per link, ${SHAPED_BYTES / 1e6} MB x ${SHAPED_REPS} (median)`);
  const s = await shaped(log);
  log(`bench: unshaped two-link topology, ${UNSHAPED_BYTES / 1e9} GB x ${UNSHAPED_REPS} (median)`);
  const u = await unshaped(log);
  const med = (k: string): number => median(s[k]!.map((x) => x.mbit));
  const proxy = med('proxyMptcp');
  const raw = med('rawMptcp');
  const tcp = med('singleTcp');
  return {
    shaped: {
      rateMbitPerLink: RATE_MBIT, bytes: SHAPED_BYTES, repetitions: SHAPED_REPS,
      medianMbit: { proxyMptcp: proxy, rawMptcp: raw, singleTcp: tcp },
      ratios: { proxyOverRaw: proxy / raw, proxyOverSingleTcp: proxy / tcp },
      samples: s,
    },
    unshaped: {
      bytes: UNSHAPED_BYTES, repetitions: UNSHAPED_REPS,
      medianGbit: { proxyMptcp: median(u.proxyGbit), directMptcp: median(u.directGbit), proxyTcpDest: median(u.proxyTcpDestGbit) },
      proxyTcpDestEndedEarly: u.proxyTcpDestGbit.filter((x) => !Number.isFinite(x)).length,
      // Paired per repetition: unshaped runs are CPU-bound and drift with whatever else the host runs.
      ratioProxyOverDirect: median(u.proxyGbit.map((g, i) => g / u.directGbit[i]!)),
      mptcpOverTcpDestPairs: u.proxyGbit.map((g, i) => g / u.proxyTcpDestGbit[i]!).filter((x) => Number.isFinite(x)),
      kernelMptcpOverTcpPairs: u.directGbit.map((g, i) => g / u.directTcpGbit[i]!),
      // Throughput over the time bytes were moving: what the proxy costs apart from the kernel's stalls.
      proxyOverDirectGapsTakenOutPairs: u.proxySeconds.map((t, i) => (u.directSeconds[i]! - u.directStalls[i]!.gapSeconds) / (t - u.proxyStalls[i]!.gapSeconds)),
      mptcpOverTcpDestGapsTakenOutPairs: u.proxySeconds.map((t, i) => u.proxyTcpDestSeconds[i]! / (t - u.proxyStalls[i]!.gapSeconds)).filter((x) => Number.isFinite(x)),
      proxyOverForwarderTcpDestPairs: u.forwarderTcpGbit.map((g, i) => u.proxyTcpDestGbit[i]! / g).filter((x) => Number.isFinite(x)),
      proxyCpuSecondsPerGB: median(u.proxyCpuSecondsPerGB),
      directClient: u.directClient,
      samples: u,
    },
  };
}

export function printProxy(r: ProxyBenchResult, log: (s: string) => void): void {
  const s = r.shaped;
  const u = r.unshaped;
  const x = u.samples;
  const medSplit = (k: string, link: number): number => median(s.samples[k]!.map((v) => v.split?.[link] ?? 0));
  const shares = (k: string): string => `  ${pct(medSplit(k, 1)).padStart(5)}  ${pct(medSplit(k, 2)).padStart(5)}`;
  const t = new Table();
  t.heading(`shaped, 2 x ${s.rateMbitPerLink} Mbit/s, median`, 'throughput', '  link1  link2  (sender-side bytes acked)');
  t.row('download through proxy (MPTCP dial)', `${s.medianMbit.proxyMptcp.toFixed(1)} Mbit/s`, shares('proxyMptcp'));
  t.row('raw kernel MPTCP, no proxy', `${s.medianMbit.rawMptcp.toFixed(1)} Mbit/s`, shares('rawMptcp'));
  t.row('single-link TCP, no proxy', `${s.medianMbit.singleTcp.toFixed(1)} Mbit/s`, shares('singleTcp'));
  t.row('ratio proxy / raw MPTCP', s.ratios.proxyOverRaw.toFixed(2));
  t.row('ratio proxy / single-link TCP', s.ratios.proxyOverSingleTcp.toFixed(2));
  t.heading(`unshaped, ${u.bytes / 1e9} GB x ${u.repetitions}, median`, 'throughput');
  t.row('through proxy (MPTCP dial)', `${u.medianGbit.proxyMptcp.toFixed(2)} Gbit/s`);
  t.row(`direct MPTCP, no proxy (${u.directClient})`, `${u.medianGbit.directMptcp.toFixed(2)} Gbit/s`);
  t.row('ratio proxy / direct (median of pairs)', u.ratioProxyOverDirect.toFixed(2), '  (target >= 0.97)');
  t.row('proxy CPU per GB (utime+stime)', `${u.proxyCpuSecondsPerGB.toFixed(2)} s/GB`);
  t.row('through proxy to a plain-TCP destination', `${u.medianGbit.proxyTcpDest.toFixed(2)} Gbit/s`,
    u.proxyTcpDestEndedEarly ? `  (${u.proxyTcpDestEndedEarly} of ${x.proxyTcpDestGbit.length} ended early)` : '');
  t.row('ratio MPTCP-speaking / TCP destination, pairs', u.mptcpOverTcpDestPairs.length ? `${range(u.mptcpOverTcpDestPairs, 2)}x` : 'none',
    `  (${u.mptcpOverTcpDestPairs.length} pairs; target >= 0.8 in every pair)`);
  t.row('the same without Braid (mptcpize curl / curl), pairs', `${range(u.kernelMptcpOverTcpPairs, 2)}x`, '  (the kernel\'s own MPTCP against TCP on this host)');
  t.heading('stalls per download (nothing arriving)', 'proxy', '  direct');
  t.row('gaps >= 50 ms', range(x.proxyStalls.map((v) => v.gaps), 0), `  ${range(x.directStalls.map((v) => v.gaps), 0)}`);
  t.row('their seconds', range(x.proxyStalls.map((v) => v.gapSeconds), 2), `  ${range(x.directStalls.map((v) => v.gapSeconds), 2)}`);
  t.row('the server\'s MPTCP-level retransmissions', range(x.proxyStalls.map((v) => v.senderRetrans), 0), `  ${range(x.directStalls.map((v) => v.senderRetrans), 0)}`);
  t.row('gaps, all downloads', '', `proxy ${describeHeldGaps(x.proxyStalls)}; direct ${describeHeldGaps(x.directStalls)}`);
  t.heading('gaps taken out (an explanation, not the bar)', 'pairs');
  t.row('ratio proxy / direct', `${range(u.proxyOverDirectGapsTakenOutPairs, 2)}x`, `  (median ${median(u.proxyOverDirectGapsTakenOutPairs).toFixed(2)})`);
  if (u.mptcpOverTcpDestGapsTakenOutPairs.length) {
    t.row('ratio MPTCP-speaking / TCP destination', `${range(u.mptcpOverTcpDestGapsTakenOutPairs, 2)}x`, `  (median ${median(u.mptcpOverTcpDestGapsTakenOutPairs).toFixed(2)})`);
  }
  if (x.forwarderTcpGbit.length) {
    t.heading('one forwarding hop, TCP destination, median', 'throughput');
    t.row('through socat (read/write forwarder)', `${median(x.forwarderTcpGbit).toFixed(2)} Gbit/s`, `  (direct TCP ${median(x.directTcpGbit).toFixed(2)})`);
    if (u.proxyOverForwarderTcpDestPairs.length) {
      t.row('ratio proxy / socat, pairs', `${range(u.proxyOverForwarderTcpDestPairs, 2)}x`, '  (what one forwarding hop costs on this host, done plainly)');
    }
  }
  t.print(log);
}
