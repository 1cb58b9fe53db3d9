/**
 * `npm run bench`: what the proxy costs and what multipath buys, measured in this run against
 * references from this same run (no stored figures).
 *
 * Shaped (two 20 Mbit/s links): download through `braid up --dial mptcp`, the same with raw kernel
 * MPTCP sockets and no proxy, and plain single-link TCP with no proxy; median of a few repetitions.
 * Unshaped (same two-link topology, no tbf): Gbit/s through the proxy and the proxy's CPU seconds per
 * GB, against a direct MPTCP download with no proxy; and the proxy dialling an MPTCP-speaking
 * destination (the byte server above) against a plain-TCP one on the same host, in pairs.
 *
 * Path policy (test/bench/policy-bench.ts): Braid as the path manager against `--paths off`.
 *
 * Relay (test/bench/relay-bench.ts): through `braid relay` vs raw kernel MPTCP, one link and the
 * shadowsocks-libev chain; unshaped Gbit/s and CPU s/GB of client and relay vs that chain; TTFB.
 * `--relay-only` runs just that part.
 *
 * Transparent mode (test/bench/transparent-bench.ts): redirected vs explicit SOCKS5, same Braid,
 * same run. `--transparent-only` runs just that part.
 * Scale (test/bench/scale-bench.ts): 1,000 and 5,000 idle connections through `braid up`, RSS per
 * connection, idle CPU and the stats sampler's cost, against a bare Node process holding as many
 * socket pairs. `--scale-only` runs just that part.
 *
 * `--proxy-only` runs just the local proxy's two parts above.
 *
 * Results go to stdout as a table and to test-artifacts/bench.json.
 */
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { createTwoLinkTopology, skipUnlessRoot, type TwoLinkTopology, type NsProcess } from '../helpers/netns';
import {
  DIST, missingPrerequisite, startByteServer, startProxy, curlDownload, rawDownload, nextReport, splitByLink,
  type LinkSplit,
} from '../helpers/multipath-harness';
import { CHAIN_CPU_HEADER, chainCpuColumns, clockTicks, cpuTicks } from './cpu';
import { median } from './median';
import { watchStalls, type StallSample } from './stalls';
import { waitForPort } from '../helpers/relay-topology';
import { relayBench, type RelayBenchResult } from './relay-bench';
import { printTransparent, transparentBench } from './transparent-bench';
import { printUpDown, upDownBench } from './updown-bench';

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

function hasCommand(cmd: string): boolean {
  try { execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore', timeout: 5000 }); return true; } catch { return false; }
}

interface Sample { mbit: number; split?: LinkSplit['shareByLink'] }

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

interface UnshapedResult {
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
  const mptcpize = hasCommand('mptcpize');
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
    const watched = <T>(download: () => Promise<T>): Promise<{ result: T; stalls: StallSample }> => watchStalls(pid, clientDevs, topo.server, download);
    // The reference for what a forwarding hop costs on this host: any local proxy adds one.
    if (hasCommand('socat')) {
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

      let directMbit: number;
      if (mptcpize) {
        const { result: d, stalls } = await watched(() => curlDownload(topo.client, url, { mptcpize: true, maxSeconds: UNSHAPED_MAX_SECONDS }));
        expectBytes(d.bytes, UNSHAPED_BYTES, 'direct MPTCP (unshaped)');
        directMbit = d.mbit;
        out.directStalls.push(stalls);
      } else {
        const { result: d, stalls } = await watched(() => rawDownload(topo.client, { address: topo.serverAddress(1), port: SERVER_PORT, bytes: UNSHAPED_BYTES, hash: false, maxSeconds: UNSHAPED_MAX_SECONDS }));
        expectBytes(d.bytes, UNSHAPED_BYTES, 'direct MPTCP (unshaped)');
        directMbit = d.mbit;
        out.directStalls.push(stalls);
      }
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
        `stalls (gaps >= 50 ms, their seconds, sender's MPTCP retransmissions): proxy ${fmtStalls(ps)}, direct ${fmtStalls(out.directStalls.at(-1)!)}`);
    }
  } finally {
    await forwarder?.stop();
    await proxy?.stop();
    await topo.destroy();
  }
  return out;
}

function fmtStalls(x: StallSample): string {
  return `${x.gaps} / ${x.gapSeconds.toFixed(2)} s / ${x.senderRetrans}`;
}

function range(xs: number[], digits: number): string {
  return `${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)}`;
}

function expectBytes(got: number, want: number, what: string): void {
  if (got !== want) throw new Error(`${what}: downloaded ${got} bytes, expected ${want}`);
}

function pct(x: number | undefined): string {
  return x === undefined ? '  -  ' : `${(x * 100).toFixed(0)}%`;
}

async function main(): Promise<void> {
  const skip = skipUnlessRoot() ?? missingPrerequisite();
  if (skip) {
    process.stderr.write(`bench: cannot run: ${skip}\n`);
    process.exit(2);
  }
  const started = Date.now();
  const log = (s: string): void => { process.stdout.write(s + '\n'); };
  if (process.argv.includes('--transparent-only')) {
    const only = await transparentBench(log);
    printTransparent(only, log);
    writeResult({ when: new Date().toISOString(), kernel: fs.readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(), node: process.version, seconds: (Date.now() - started) / 1000, transparent: only }, log);
    return;
  }
  if (process.argv.includes('--caps-only')) {
    await (await import('./caps-bench.js')).capsBench(log);
    return;
  }
  if (process.argv.includes('--updown-only')) {
    const only = await upDownBench(log);
    printUpDown(only, log);
    writeResult({ when: new Date().toISOString(), kernel: fs.readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(), node: process.version, seconds: (Date.now() - started) / 1000, updown: only }, log);
    return;
  }
  if (process.argv.includes('--scale-only')) {
    await (await import('./scale-bench.js')).scaleBench(log);
    return;
  }
  if (process.argv.includes('--relay-only')) {
    const only = await relayBench(log);
    printRelay(only, log);
    writeResult({ when: new Date().toISOString(), kernel: fs.readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(), node: process.version, seconds: (Date.now() - started) / 1000, relay: only }, log);
    return;
  }
  const proxyOnly = process.argv.includes('--proxy-only');
  log(`bench: two-link topology, ${RATE_MBIT} Mbit/s per link, ${SHAPED_BYTES / 1e6} MB x ${SHAPED_REPS} (median)`);
  const s = await shaped(log);
  log(`bench: unshaped two-link topology, ${UNSHAPED_BYTES / 1e9} GB x ${UNSHAPED_REPS} (median)`);
  const u = await unshaped(log);
  const rb = proxyOnly ? null : await relayBench(log);
  const tb = proxyOnly ? null : await transparentBench(log);
  const ud = proxyOnly ? null : await upDownBench(log);

  const med = (k: string): number => median(s[k]!.map((x) => x.mbit));
  const medSplit = (k: string, link: number): number => median(s[k]!.map((x) => x.split?.[link] ?? 0));
  const proxy = med('proxyMptcp');
  const raw = med('rawMptcp');
  const tcp = med('singleTcp');
  const proxyGbit = median(u.proxyGbit);
  const directGbit = median(u.directGbit);
  const cpu = median(u.proxyCpuSecondsPerGB);
  // Paired per repetition: unshaped runs are CPU-bound and drift with whatever else the host runs.
  const pairedRatio = median(u.proxyGbit.map((g, i) => g / u.directGbit[i]!));
  const destPairs = u.proxyGbit.map((g, i) => g / u.proxyTcpDestGbit[i]!).filter((x) => Number.isFinite(x));
  const tcpDestFinished = u.proxyTcpDestGbit.filter((x) => Number.isFinite(x));
  const destFailed = u.proxyTcpDestGbit.length - tcpDestFinished.length;
  const kernelPairs = u.directGbit.map((g, i) => g / u.directTcpGbit[i]!);
  // Throughput over the time bytes were moving: what the proxy costs apart from the kernel's stalls.
  const gaplessPairs = u.proxySeconds.map((t, i) => (u.directSeconds[i]! - u.directStalls[i]!.gapSeconds) / (t - u.proxyStalls[i]!.gapSeconds));
  const gaplessDestPairs = u.proxySeconds.map((t, i) => u.proxyTcpDestSeconds[i]! / (t - u.proxyStalls[i]!.gapSeconds)).filter((x) => Number.isFinite(x));

  const rows: Array<[string, string, string, string]> = [
    ['download through proxy (MPTCP dial)', `${proxy.toFixed(1)} Mbit/s`, pct(medSplit('proxyMptcp', 1)), pct(medSplit('proxyMptcp', 2))],
    ['raw kernel MPTCP, no proxy', `${raw.toFixed(1)} Mbit/s`, pct(medSplit('rawMptcp', 1)), pct(medSplit('rawMptcp', 2))],
    ['single-link TCP, no proxy', `${tcp.toFixed(1)} Mbit/s`, pct(medSplit('singleTcp', 1)), pct(medSplit('singleTcp', 2))],
  ];
  const directLabel = `direct MPTCP, no proxy (${u.directClient})`;
  const w0 = Math.max(directLabel.length, ...rows.map((r) => r[0].length));
  const line = (label: string, value: string, rest = ''): void => log(`${label.padEnd(w0)}  ${value.padStart(13)}${rest}`);
  log('');
  line(`shaped, 2 x ${RATE_MBIT} Mbit/s, median`, 'throughput', '  link1  link2  (sender-side bytes acked)');
  for (const r of rows) line(r[0], r[1], `  ${r[2].padStart(5)}  ${r[3].padStart(5)}`);
  line('ratio proxy / raw MPTCP', (proxy / raw).toFixed(2));
  line('ratio proxy / single-link TCP', (proxy / tcp).toFixed(2));
  log('');
  line('unshaped, median', 'throughput');
  line('through proxy (MPTCP dial)', `${proxyGbit.toFixed(2)} Gbit/s`);
  line(directLabel, `${directGbit.toFixed(2)} Gbit/s`);
  line('ratio proxy / direct (median of pairs)', pairedRatio.toFixed(2));
  line('proxy CPU per GB (utime+stime)', `${cpu.toFixed(2)} s/GB`);
  line('through proxy to a plain-TCP destination', `${median(tcpDestFinished).toFixed(2)} Gbit/s`, destFailed ? `  (${destFailed} of ${u.proxyTcpDestGbit.length} ended early)` : '');
  line('ratio MPTCP-speaking / TCP destination, pairs', destPairs.length ? `${range(destPairs, 2)}x` : 'none', `  (${destPairs.length} pairs; target >= 0.8 in every pair)`);
  line('the same without Braid (mptcpize curl / curl), pairs', `${range(kernelPairs, 2)}x`, '  (the kernel\'s own MPTCP against TCP on this host)');
  line('stalls per download: gaps >= 50 ms', `proxy ${range(u.proxyStalls.map((x) => x.gaps), 0)}`, `, direct ${range(u.directStalls.map((x) => x.gaps), 0)}  (no byte arriving on either link)`);
  line('  their seconds', `proxy ${range(u.proxyStalls.map((x) => x.gapSeconds), 2)}`, `, direct ${range(u.directStalls.map((x) => x.gapSeconds), 2)}`);
  line('  the server\'s MPTCP-level retransmissions', `proxy ${range(u.proxyStalls.map((x) => x.senderRetrans), 0)}`, `, direct ${range(u.directStalls.map((x) => x.senderRetrans), 0)}`);
  line('ratio proxy / direct with the gaps taken out, pairs', `${range(gaplessPairs, 2)}x`, `  (median ${median(gaplessPairs).toFixed(2)}; an explanation, not the bar)`);
  if (u.forwarderTcpGbit.length) {
    const pairs = u.forwarderTcpGbit.map((g, i) => u.proxyTcpDestGbit[i]! / g).filter((x) => Number.isFinite(x));
    line('TCP destination through socat (read/write forwarder)', `${median(u.forwarderTcpGbit).toFixed(2)} Gbit/s`, `  (direct TCP ${median(u.directTcpGbit).toFixed(2)})`);
    if (pairs.length) line('ratio proxy / socat to the TCP destination, pairs', `${range(pairs, 2)}x`, '  (what one forwarding hop costs on this host, done plainly)');
  }
  if (gaplessDestPairs.length) line('ratio MPTCP-speaking / TCP destination, the same', `${range(gaplessDestPairs, 2)}x`, `  (median ${median(gaplessDestPairs).toFixed(2)})`);
  if (rb) printRelay(rb, log);
  if (tb) printTransparent(tb, log);
  if (ud) printUpDown(ud, log);
  const seconds = (Date.now() - started) / 1000;
  log(`\nbench took ${seconds.toFixed(0)} s`);

  const result = {
    when: new Date().toISOString(),
    kernel: fs.readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(),
    node: process.version,
    seconds,
    shaped: {
      rateMbitPerLink: RATE_MBIT, bytes: SHAPED_BYTES, repetitions: SHAPED_REPS,
      medianMbit: { proxyMptcp: proxy, rawMptcp: raw, singleTcp: tcp },
      ratios: { proxyOverRaw: proxy / raw, proxyOverSingleTcp: proxy / tcp },
      samples: s,
    },
    unshaped: {
      bytes: UNSHAPED_BYTES, repetitions: UNSHAPED_REPS,
      medianGbit: { proxyMptcp: proxyGbit, directMptcp: directGbit, proxyTcpDest: median(tcpDestFinished) },
      proxyTcpDestEndedEarly: destFailed,
      ratioProxyOverDirect: pairedRatio,
      mptcpOverTcpDestPairs: destPairs,
      kernelMptcpOverTcpPairs: kernelPairs,
      proxyOverDirectGapsTakenOutPairs: gaplessPairs,
      mptcpOverTcpDestGapsTakenOutPairs: gaplessDestPairs,
      proxyCpuSecondsPerGB: cpu,
      directClient: u.directClient,
      samples: u,
    },
    relay: rb,
    transparent: tb,
    updown: ud,
  };
  writeResult(result, log);
  if (proxyOnly) return;
  log(''); await (await import('./stats-bench.js')).statsBench(log);
  log(''); await (await import('./policy-bench.js')).policyBench(log);
  log(''); await (await import('./scale-bench.js')).scaleBench(log);
  log(''); await (await import('./caps-bench.js')).capsBench(log);
}

function writeResult(result: unknown, log: (s: string) => void): void {
  const dir = path.resolve(DIST, '..', 'test-artifacts');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'bench.json'), JSON.stringify(result, null, 2) + '\n');
  log(`wrote ${path.join(dir, 'bench.json')}`);
}

function printRelay(rb: RelayBenchResult, log: (s: string) => void): void {
  const sm = rb.shaped.medianMbit;
  const share = (i: number): string => `${(median(rb.shaped.braidLinkShare.map((x) => x[i] ?? 0)) * 100).toFixed(0)}%`;
  const line = (label: string, value: string, rest = ''): void => log(`${label.padEnd(56)}  ${value.padStart(14)}${rest}`);
  const t = rb.ttfb.medianMs;
  const u = rb.unshaped;
  const cpu = u.medianCpuSecondsPerGB;
  log('');
  line('relay, shaped 2 x 20 Mbit/s, median', 'throughput');
  line('curl → braid up → braid relay → TCP destination', `${sm.braidRelay!.toFixed(1)} Mbit/s`, `  (relay sent link1 ${share(0)} / link2 ${share(1)})`);
  line('curl → braid up → braid relay → MPTCP destination', `${sm.braidRelayMptcpDest!.toFixed(1)} Mbit/s`);
  line('curl → ss-local → ss-server, both --mptcp → TCP destination', `${sm.ssChain!.toFixed(1)} Mbit/s`);
  line('raw kernel MPTCP to the relay host, no proxy', `${sm.rawMptcp!.toFixed(1)} Mbit/s`);
  line('single-link TCP to the relay host, no proxy', `${sm.singleTcp!.toFixed(1)} Mbit/s`);
  line('ratio braid relay / raw MPTCP, median of pairs (target >= 0.99)', rb.shaped.ratios.braidOverRaw.toFixed(3));
  line('ratio braid relay, MPTCP destination / raw MPTCP, pairs', rb.shaped.ratios.braidMptcpDestOverRaw.toFixed(3));
  line('ratio shadowsocks chain / raw MPTCP, pairs', rb.shaped.ratios.ssOverRaw.toFixed(3));
  line('ratio braid relay / one link, pairs', rb.shaped.ratios.braidOverSingle.toFixed(2));
  log('');
  line('relay, unshaped, median', 'throughput', `  ${CHAIN_CPU_HEADER}`);
  line('braid up + braid relay', `${u.medianGbit.braid.toFixed(2)} Gbit/s`, `  ${chainCpuColumns(cpu, 'braid')}`);
  line(`ss-local + ss-server (${rb.ssCipher})`, `${u.medianGbit.ss.toFixed(2)} Gbit/s`, `  ${chainCpuColumns(cpu, 'ss')}`);
  line('direct MPTCP to the relay host (mptcpize curl)', `${u.medianGbit.direct.toFixed(2)} Gbit/s`);
  const pairs = u.mptcpDestination.filter((p) => p.mptcpGbit !== null && p.tcpGbit !== null).map((p) => p.mptcpGbit! / p.tcpGbit!);
  const unfinished = u.mptcpDestination.length - pairs.length;
  line('braid relay, MPTCP-speaking / TCP destination, pairs', pairs.length ? `${range(pairs, 2)}x` : 'none',
    `  (${pairs.length} pairs${unfinished ? `, ${unfinished} did not finish` : ''}; target >= 0.8 in every pair)`);
  log('');
  line('time to first byte (1-byte body), median', 'ms');
  line('direct to the relay host (TCP connect + GET)', t.direct!.toFixed(2), `  (TCP connect alone ${t.directConnect!.toFixed(2)} ms)`);
  line('through braid relay, warm pool', t.braidWarm!.toFixed(2), `  (+${(t.braidWarm! - t.direct!).toFixed(2)} ms over direct)`);
  line('through braid relay, no pool (TCP + TLS per dial)', t.braidCold!.toFixed(2), `  (+${(t.braidCold! - t.direct!).toFixed(2)} ms)`);
  line('through the shadowsocks chain', t.ssChain!.toFixed(2), `  (+${(t.ssChain! - t.direct!).toFixed(2)} ms)`);
  const d = rb.ttfbDelayed;
  const dm = d.medianMs;
  const rt = (k: string): string => `${(d.extraRoundTrips[k]! >= 0 ? '+' : '')}${d.extraRoundTrips[k]!.toFixed(2)} RTT`;
  log('');
  line(`time to first byte, ${d.rttMs.toFixed(1)} ms RTT client ⇄ relay (measured; delay line set to ${d.nominalRttMs}), median`, 'ms');
  line('direct to the relay host (TCP connect + GET)', dm.direct!.toFixed(1), `  (TCP connect alone ${dm.directConnect!.toFixed(1)} ms)`);
  line('through braid relay, warm pool (target <= +1 RTT)', dm.braidWarm!.toFixed(1), `  (${rt('braidWarm')} over direct)`);
  line('through braid relay, no pool (TCP + TLS per dial)', dm.braidCold!.toFixed(1), `  (${rt('braidCold')})`);
  line('through the shadowsocks chain', dm.ssChain!.toFixed(1), `  (${rt('ssChain')})`);
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
});
