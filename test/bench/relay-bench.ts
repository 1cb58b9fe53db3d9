/**
 * The relay part of `npm run bench`, in the three-namespace topology (client ⇄ two links ⇄ relay ⇄
 * destination), against references from this same run:
 *
 * - shaped (2 x 20 Mbit/s): curl → braid up → braid relay → destination, against raw kernel MPTCP
 *   over the same two links (fetch-bytes to a byte server in the relay namespace), single-link TCP,
 *   and the shadowsocks-libev chain (ss-local --mptcp → ss-server --mptcp, AEAD cipher). Both chains
 *   fetch from a plain-TCP destination (ss-server dials TCP whatever the destination speaks); braid
 *   to a destination that speaks MPTCP is a separate line, because the relay then dials MPTCP;
 * - unshaped: Gbit/s and CPU seconds per GB of the client and the relay process, braid vs the
 *   shadowsocks chain side by side (interleaved, same bytes, same curl);
 * - time to first byte (curl's time_starttransfer for a 1-byte body): direct to a server in the
 *   relay namespace (the same network distance) vs through braid with its warm pool, through braid
 *   with no pool (every dial pays TCP + TLS), and through the shadowsocks chain.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Namespace, NsProcess } from '../helpers/netns';
import { curlDownload, rawDownload, startByteServer } from '../helpers/multipath-harness';
import { CHAIN_CPU_HEADER, chainCpuColumns, chainCpuMedians, chainSample, chainTicks, clockTicks, describeChainSample, describeChainStalls, NO_CHAIN_CPU, type ChainCpuMedians, type ChainSample } from './cpu';
import { expectBytes, median, range, Table } from './figures';
import { describeStallRanges, describeStalls, watchStalls, type StallSample } from './stalls';
import { SS_CIPHER } from './updown-rig';
import { createDelayedRelayTopology, createRelayTopology, relayTxBytes, startRelay, startRelayClient, startShadowsocksChain, tempRelayDir, type RelayTopology } from '../helpers/relay-topology';

const RATE_MBIT = 20;
const SHAPED_BYTES = 16 * 1000 * 1000;
const SHAPED_REPS = 5;
const UNSHAPED_BYTES = 1000 * 1000 * 1000;
const UNSHAPED_REPS = 3;
const TTFB_ROUNDS = 15;
const DELAYED_RTT_MS = 20;
const DEST_PORT = 8080;
// The unshaped comparison uses a plain TCP destination, like almost every server on the internet.
// A destination that speaks MPTCP is measured beside it in pairs of bounded downloads (with
// `--dial mptcp` the relay's download from it stalls; see RELAY_DEFAULT_DIAL). 1 GB each, as the
// other unshaped figures: 200 MB took about half a second, and pairs of those moved by 0.75-1.04x
// between runs although the relay reaches both destinations over the same plain TCP.
const DEST_TCP_PORT = 8082;
const MPTCP_DEST_BYTES = 1000 * 1000 * 1000;
const LOCAL_PORT = 8081;     // byte server in the relay namespace: the "direct" references
const RELAY_PORT = 8443;
const BRAID_PORT = 1080;
const BRAID_COLD_PORT = 1082;
const SS_SERVER_PORT = 8388;
const SS_LOCAL_PORT = 1081;
const SHAPED_MAX_SECONDS = 30;
const UNSHAPED_MAX_SECONDS = 40;

interface Chain {
  topo: RelayTopology;
  relay: NsProcess;
  braid: NsProcess;
  braidCold: NsProcess;
  ssServer: NsProcess;
  ssLocal: NsProcess;
  dirs: string[];
}

async function startChains(makeTopology: () => Promise<RelayTopology>): Promise<Chain> {
  const topo = await makeTopology();
  const dirs: string[] = [];
  try {
    await startByteServer(topo.dest, { port: DEST_PORT });
    await startByteServer(topo.dest, { port: DEST_TCP_PORT, tcp: true });
    await startByteServer(topo.relay, { port: LOCAL_PORT });
    const relayDir = tempRelayDir();
    dirs.push(relayDir);
    // --verbose: a tunnel that ends early is logged (debug), and a failed download shows why.
    const relay = await startRelay(topo, { port: RELAY_PORT, dir: relayDir, extra: ['--verbose'] });
    const braid = await startRelayClient(topo.client, { port: BRAID_PORT, link: relay.link, extra: ['--verbose'] });
    const coldDir = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-bench-cold-'));
    dirs.push(coldDir);
    const coldConfig = path.join(coldDir, 'config.json');
    fs.writeFileSync(coldConfig, JSON.stringify({ relay: { poolSize: 0 } }));
    const braidCold = await startRelayClient(topo.client, { port: BRAID_COLD_PORT, link: relay.link, extra: ['--config', coldConfig] });
    const { ssServer, ssLocal } = await startShadowsocksChain(topo, { serverPort: SS_SERVER_PORT, localPort: SS_LOCAL_PORT, cipher: SS_CIPHER });
    return { topo, relay: relay.proc, braid, braidCold, ssServer, ssLocal, dirs };
  } catch (err) {
    await topo.destroy();
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
    throw err;
  }
}

/** A braid download that failed carries the tail of the relay's and the client's logs. */
async function braidDownload<T>(c: Chain, download: Promise<T>): Promise<T> {
  try {
    return await download;
  } catch (err) {
    const tail = (s: string): string => s.split('\n').slice(-15).join('\n');
    throw new Error(`${(err as Error).message}\n--- braid relay log ---\n${tail(c.relay.stderr)}\n--- braid up log ---\n${tail(c.braid.stderr)}`);
  }
}

async function stopChains(c: Chain | undefined): Promise<void> {
  if (!c) return;
  await c.topo.destroy();
  for (const d of c.dirs) fs.rmSync(d, { recursive: true, force: true });
}

export interface TtfbResult {
  samplesMs: Record<'direct' | 'braidWarm' | 'braidCold' | 'ssChain', number[]>;
  connectMsDirect: number[];
  medianMs: Record<string, number>;
}

function emptyTtfb(): TtfbResult {
  return { samplesMs: { direct: [], braidWarm: [], braidCold: [], ssChain: [] }, connectMsDirect: [], medianMs: {} };
}

export interface RelayBenchResult {
  shaped: {
    samplesMbit: Record<'braidRelay' | 'braidRelayMptcpDest' | 'ssChain' | 'rawMptcp' | 'singleTcp', number[]>;
    braidLinkShare: number[][];
    medianMbit: Record<string, number>;
    ratios: { braidOverRaw: number; braidMptcpDestOverRaw: number; braidOverSingle: number; ssOverRaw: number };
  };
  unshaped: {
    samples: ChainSample[];
    medianGbit: { braid: number; ss: number; direct: number };
    medianCpuSecondsPerGB: ChainCpuMedians;
    /**
     * braid to an MPTCP-speaking destination beside a TCP one, per repetition: Gbit/s, null when it
     * timed out, and each download's stalls on the client⇄relay links (null when it timed out). The
     * relay reaches both destinations over plain TCP, so a pair apart is the client⇄relay leg or the CPUs.
     */
    mptcpDestination: Array<{ mptcpGbit: number | null; tcpGbit: number | null; mptcpStalls: StallSample | null; tcpStalls: StallSample | null }>;
  };
  ttfb: TtfbResult;
  /** the same probes with a real round-trip time between client and relay (delay line) */
  /** rttMs: the round trip measured through the delay line (the direct fetch's TCP connect), which the
   *  extra round trips divide by; nominalRttMs: what the delay line was set to. */
  ttfbDelayed: TtfbResult & { rttMs: number; nominalRttMs: number; extraRoundTrips: Record<string, number> };
  ssCipher: string;
}

async function shaped(log: (s: string) => void, out: RelayBenchResult): Promise<void> {
  let c: Chain | undefined;
  try {
    c = await startChains(() => createRelayTopology({ rateMbit: RATE_MBIT }));
    const { topo } = c;
    const destUrl = `http://${topo.destAddress(4)}:${DEST_TCP_PORT}/bytes/${SHAPED_BYTES}`;
    const mptcpDestUrl = `http://${topo.destAddress(4)}:${DEST_PORT}/bytes/${SHAPED_BYTES}`;
    const localUrl = `http://${topo.relayAddress(1)}:${LOCAL_PORT}/bytes/${SHAPED_BYTES}`;
    const s = out.shaped.samplesMbit;
    for (let rep = 1; rep <= SHAPED_REPS; rep++) {
      const tx0 = await relayTxBytes(topo);
      const b = await braidDownload(c, curlDownload(topo.client, destUrl, { socksPort: BRAID_PORT, maxSeconds: SHAPED_MAX_SECONDS }));
      const tx1 = await relayTxBytes(topo);
      expectBytes(b.bytes, SHAPED_BYTES, 'braid relay');
      s.braidRelay.push(b.mbit);
      const sent = [tx1[0] - tx0[0], tx1[1] - tx0[1]];
      out.shaped.braidLinkShare.push(sent.map((x) => x / (sent[0]! + sent[1]!)));

      const bm = await braidDownload(c, curlDownload(topo.client, mptcpDestUrl, { socksPort: BRAID_PORT, maxSeconds: SHAPED_MAX_SECONDS }));
      expectBytes(bm.bytes, SHAPED_BYTES, 'braid relay, MPTCP destination');
      s.braidRelayMptcpDest.push(bm.mbit);

      const ss = await curlDownload(topo.client, destUrl, { socksPort: SS_LOCAL_PORT, maxSeconds: SHAPED_MAX_SECONDS });
      expectBytes(ss.bytes, SHAPED_BYTES, 'shadowsocks chain');
      s.ssChain.push(ss.mbit);

      const raw = await rawDownload(topo.client, { address: topo.relayAddress(1), port: LOCAL_PORT, bytes: SHAPED_BYTES, hash: false, maxSeconds: SHAPED_MAX_SECONDS });
      expectBytes(raw.bytes, SHAPED_BYTES, 'raw MPTCP');
      s.rawMptcp.push(raw.mbit);

      const one = await curlDownload(topo.client, localUrl, { maxSeconds: SHAPED_MAX_SECONDS });
      expectBytes(one.bytes, SHAPED_BYTES, 'single-link TCP');
      s.singleTcp.push(one.mbit);
      log(`  relay shaped rep ${rep}: braid ${b.mbit.toFixed(1)} (MPTCP destination ${bm.mbit.toFixed(1)}), ss ${ss.mbit.toFixed(1)}, raw MPTCP ${raw.mbit.toFixed(1)}, one link ${one.mbit.toFixed(1)} Mbit/s`);
    }
    out.ttfb = await ttfb(c, log, 150);
  } finally {
    await stopChains(c);
  }
  const m = (k: keyof typeof out.shaped.samplesMbit): number => median(out.shaped.samplesMbit[k]);
  out.shaped.medianMbit = { braidRelay: m('braidRelay'), braidRelayMptcpDest: m('braidRelayMptcpDest'), ssChain: m('ssChain'), rawMptcp: m('rawMptcp'), singleTcp: m('singleTcp') };
  // Ratios are paired per repetition (each rep runs every path back to back), then the median:
  // the links' own speed drifts by a few per cent between reps, and that drift is not the proxy's.
  const s = out.shaped.samplesMbit;
  const paired = (a: keyof typeof s, b: keyof typeof s): number => median(s[a].map((x, i) => x / s[b][i]!));
  out.shaped.ratios = {
    braidOverRaw: paired('braidRelay', 'rawMptcp'), braidMptcpDestOverRaw: paired('braidRelayMptcpDest', 'rawMptcp'),
    braidOverSingle: paired('braidRelay', 'singleTcp'), ssOverRaw: paired('ssChain', 'rawMptcp'),
  };
}

async function ttfb(c: Chain, log: (s: string) => void, spacingMs: number): Promise<TtfbResult> {
  const out = emptyTtfb();
  const { topo } = c;
  const probe = async (extra: string[], url: string): Promise<{ connect: number; first: number }> => {
    const { stdout } = await topo.client.exec(['curl', '-sS', '--fail', '--max-time', '5', '-o', '/dev/null', '-w', '%{time_connect} %{time_starttransfer}', ...extra, url], { timeoutMs: 10_000 });
    const [connect, first] = stdout.trim().split(' ').map(Number) as [number, number];
    return { connect: connect * 1000, first: first * 1000 };
  };
  const dest = `http://${topo.destAddress(4)}:${DEST_PORT}/bytes/1`;
  const local = `http://${topo.relayAddress(1)}:${LOCAL_PORT}/bytes/1`;
  const s = out.samplesMs;
  const via = (port: number): string[] => ['--socks5-hostname', `127.0.0.1:${port}`];
  // All four paths back to back, so that whatever drifts hits them alike.
  const round = async (): Promise<{ direct: { connect: number; first: number }; braidWarm: number; braidCold: number; ssChain: number }> => ({
    direct: await probe([], local),
    braidWarm: (await probe(via(BRAID_PORT), dest)).first,
    braidCold: (await probe(via(BRAID_COLD_PORT), dest)).first,
    ssChain: (await probe(via(SS_LOCAL_PORT), dest)).first,
  });
  // One round outside the samples, so that no path pays for first use (code paging in, ARP).
  await round();
  for (let i = 0; i < TTFB_ROUNDS; i++) {
    // Spaced so that the warm pool has refilled, as between a user's clicks.
    await new Promise((resolve) => setTimeout(resolve, spacingMs));
    const r = await round();
    s.direct.push(r.direct.first);
    out.connectMsDirect.push(r.direct.connect);
    s.braidWarm.push(r.braidWarm);
    s.braidCold.push(r.braidCold);
    s.ssChain.push(r.ssChain);
  }
  out.medianMs = {
    direct: median(s.direct), braidWarm: median(s.braidWarm), braidCold: median(s.braidCold), ssChain: median(s.ssChain),
    directConnect: median(out.connectMsDirect),
  };
  const m = out.medianMs;
  log(`  ttfb medians: direct ${m.direct!.toFixed(2)} ms, braid warm ${m.braidWarm!.toFixed(2)} ms, braid cold ${m.braidCold!.toFixed(2)} ms, ss ${m.ssChain!.toFixed(2)} ms`);
  return out;
}

/**
 * Time to first byte where round trips cost what they cost on the internet: client and relay
 * joined through a delay line (DELAYED_RTT_MS), the destination next to the relay. "Direct" fetches from
 * the relay host, i.e. from as far away as the destination is. The extra time over direct is
 * also given in round trips, which is what the relay's set-up is designed to save.
 */
export async function ttfbDelayed(log: (s: string) => void, out: RelayBenchResult): Promise<void> {
  let c: Chain | undefined;
  try {
    c = await startChains(() => createDelayedRelayTopology(DELAYED_RTT_MS / 2));
    const r = await ttfb(c, log, 300);
    // The round trip this run really had, not the delay line's setting: the direct fetch's TCP
    // connect is one round trip from the client to the relay host through the line.
    const rtt = r.medianMs.directConnect!;
    out.ttfbDelayed = {
      ...r, rttMs: rtt, nominalRttMs: DELAYED_RTT_MS,
      extraRoundTrips: {
        braidWarm: (r.medianMs.braidWarm! - r.medianMs.direct!) / rtt,
        braidCold: (r.medianMs.braidCold! - r.medianMs.direct!) / rtt,
        ssChain: (r.medianMs.ssChain! - r.medianMs.direct!) / rtt,
      },
    };
  } finally {
    await stopChains(c);
  }
}

async function unshaped(log: (s: string) => void, out: RelayBenchResult): Promise<void> {
  const ticks = clockTicks();
  let c: Chain | undefined;
  try {
    c = await startChains(() => createRelayTopology({ rateMbit: null }));
    const { topo } = c;
    const pids = [c.braid.pid, c.relay.pid, c.ssLocal.pid, c.ssServer.pid];
    if (pids.some((p) => p === undefined)) throw new Error('a chain process has no pid');
    const [braidPid, relayPid, ssLocalPid, ssServerPid] = pids as number[];
    const destUrl = `http://${topo.destAddress(4)}:${DEST_TCP_PORT}/bytes/${UNSHAPED_BYTES}`;
    const localUrl = `http://${topo.relayAddress(1)}:${LOCAL_PORT}/bytes/${UNSHAPED_BYTES}`;
    const gb = UNSHAPED_BYTES / 1e9;
    // The receiving end of the client⇄relay connection: the client's namespace, on downloads.
    const clientDevs = topo.links.map((l) => l.endIn(topo.client).dev);
    // A download by the proxy process `pid` (the chain's client end), its client⇄relay links watched.
    const watched = <T>(pid: number, download: () => Promise<T>) => watchStalls({ pid, ns: topo.client }, clientDevs, topo.relay, download);
    const viaProxy = (url: string, socksPort: number) => curlDownload(topo.client, url, { socksPort, maxSeconds: UNSHAPED_MAX_SECONDS });
    for (let rep = 1; rep <= UNSHAPED_REPS; rep++) {
      const b0 = chainTicks(braidPid, relayPid);
      const { result: b, stalls: braidStalls } = await watched(braidPid, () => braidDownload(c!, viaProxy(destUrl, BRAID_PORT)));
      const b1 = chainTicks(braidPid, relayPid);
      expectBytes(b.bytes, UNSHAPED_BYTES, 'braid relay (unshaped)');
      const s0 = chainTicks(ssLocalPid, ssServerPid);
      const { result: ss, stalls: ssStalls } = await watched(ssLocalPid, () => viaProxy(destUrl, SS_LOCAL_PORT));
      const s1 = chainTicks(ssLocalPid, ssServerPid);
      expectBytes(ss.bytes, UNSHAPED_BYTES, 'shadowsocks chain (unshaped)');
      const d = await curlDownload(topo.client, localUrl, { mptcpize: true, maxSeconds: UNSHAPED_MAX_SECONDS });
      expectBytes(d.bytes, UNSHAPED_BYTES, 'direct MPTCP (unshaped)');
      const sample = { ...chainSample({ braid: b.mbit / 1000, ss: ss.mbit / 1000, direct: d.mbit / 1000 }, [b0, b1], [s0, s1], ticks, gb), braidStalls, ssStalls };
      out.unshaped.samples.push(sample);
      log(`  relay unshaped rep ${rep}: ${describeChainSample(sample)}`);
    }
    // The MPTCP-speaking destination beside the TCP one, same size, back to back, once per repetition
    // (order alternating), so that each ratio pairs two downloads made under the same load.
    const pairUrl = (port: number): string => `http://${topo.destAddress(4)}:${port}/bytes/${MPTCP_DEST_BYTES}`;
    // Watched as the chain downloads above are, so that a pair apart can be told a stall from the CPUs.
    const once = async (port: number, what: string): Promise<{ gbit: number | null; stalls: StallSample | null }> => {
      try {
        const { result: r, stalls } = await watched(braidPid, () => viaProxy(pairUrl(port), BRAID_PORT));
        expectBytes(r.bytes, MPTCP_DEST_BYTES, what);
        return { gbit: r.mbit / 1000, stalls };
      } catch (err) {
        log(`  ${what}: did not finish ${MPTCP_DEST_BYTES / 1e6} MB within ${UNSHAPED_MAX_SECONDS} s (${(err as Error).message.split('\n').pop()})`);
        return { gbit: null, stalls: null };
      }
    };
    for (let rep = 1; rep <= UNSHAPED_REPS; rep++) {
      const mptcpFirst = rep % 2 === 1;
      const a = await once(mptcpFirst ? DEST_PORT : DEST_TCP_PORT, mptcpFirst ? 'MPTCP destination' : 'TCP destination');
      const b = await once(mptcpFirst ? DEST_TCP_PORT : DEST_PORT, mptcpFirst ? 'TCP destination' : 'MPTCP destination');
      const [m, t] = mptcpFirst ? [a, b] : [b, a];
      const pair = { mptcpGbit: m.gbit, tcpGbit: t.gbit, mptcpStalls: m.stalls, tcpStalls: t.stalls };
      out.unshaped.mptcpDestination.push(pair);
      const f = (x: { gbit: number | null; stalls: StallSample | null }): string => (x.gbit === null ? 'did not finish' : `${x.gbit.toFixed(2)} Gbit/s (stalls ${describeStalls(x.stalls!)})`);
      log(`  relay unshaped pair ${rep}: MPTCP-speaking destination ${f(m)}, TCP destination ${f(t)} (${MPTCP_DEST_BYTES / 1e6} MB each)`);
    }
  } finally {
    await stopChains(c);
  }
  const m = (f: (x: RelayBenchResult['unshaped']['samples'][number]) => number): number => median(out.unshaped.samples.map(f));
  out.unshaped.medianGbit = { braid: m((x) => x.braidGbit), ss: m((x) => x.ssGbit), direct: m((x) => x.directGbit) };
  out.unshaped.medianCpuSecondsPerGB = chainCpuMedians(out.unshaped.samples, median);
}

export async function relayBench(log: (s: string) => void): Promise<RelayBenchResult> {
  const out: RelayBenchResult = {
    shaped: { samplesMbit: { braidRelay: [], braidRelayMptcpDest: [], ssChain: [], rawMptcp: [], singleTcp: [] }, braidLinkShare: [], medianMbit: {}, ratios: { braidOverRaw: NaN, braidMptcpDestOverRaw: NaN, braidOverSingle: NaN, ssOverRaw: NaN } },
    unshaped: { samples: [], medianGbit: { braid: NaN, ss: NaN, direct: NaN }, medianCpuSecondsPerGB: { ...NO_CHAIN_CPU }, mptcpDestination: [] },
    ttfb: emptyTtfb(),
    ttfbDelayed: { ...emptyTtfb(), rttMs: NaN, nominalRttMs: DELAYED_RTT_MS, extraRoundTrips: {} },
    ssCipher: SS_CIPHER,
  };
  log(`bench: relay topology (client ⇄ 2 x ${RATE_MBIT} Mbit/s ⇄ relay ⇄ destination), ${SHAPED_BYTES / 1e6} MB x ${SHAPED_REPS}, TTFB x ${TTFB_ROUNDS}`);
  await shaped(log, out);
  log(`bench: relay topology unshaped, ${UNSHAPED_BYTES / 1e9} GB x ${UNSHAPED_REPS}, braid vs shadowsocks-libev (${SS_CIPHER})`);
  await unshaped(log, out);
  log(`bench: relay topology with a ${DELAYED_RTT_MS} ms round trip between client and relay (userspace delay line), TTFB x ${TTFB_ROUNDS}`);
  await ttfbDelayed(log, out);
  return out;
}

export function printRelay(rb: RelayBenchResult, log: (s: string) => void): void {
  const sm = rb.shaped.medianMbit;
  const share = (i: number): string => `${(median(rb.shaped.braidLinkShare.map((x) => x[i] ?? 0)) * 100).toFixed(0)}%`;
  const t = new Table();
  const tt = rb.ttfb.medianMs;
  const u = rb.unshaped;
  const cpu = u.medianCpuSecondsPerGB;
  t.heading(`relay, shaped 2 x ${RATE_MBIT} Mbit/s, median`, 'throughput');
  t.row('curl → braid up → braid relay → TCP destination', `${sm.braidRelay!.toFixed(1)} Mbit/s`, `  (relay sent link1 ${share(0)} / link2 ${share(1)})`);
  t.row('curl → braid up → braid relay → MPTCP destination', `${sm.braidRelayMptcpDest!.toFixed(1)} Mbit/s`);
  t.row('curl → ss-local → ss-server, both --mptcp → TCP destination', `${sm.ssChain!.toFixed(1)} Mbit/s`);
  t.row('raw kernel MPTCP to the relay host, no proxy', `${sm.rawMptcp!.toFixed(1)} Mbit/s`);
  t.row('single-link TCP to the relay host, no proxy', `${sm.singleTcp!.toFixed(1)} Mbit/s`);
  t.row('ratio braid relay / raw MPTCP, median of pairs (target >= 0.99)', rb.shaped.ratios.braidOverRaw.toFixed(3));
  t.row('ratio braid relay, MPTCP destination / raw MPTCP, pairs', rb.shaped.ratios.braidMptcpDestOverRaw.toFixed(3));
  t.row('ratio shadowsocks chain / raw MPTCP, pairs', rb.shaped.ratios.ssOverRaw.toFixed(3));
  t.row('ratio braid relay / one link, pairs', rb.shaped.ratios.braidOverSingle.toFixed(2));
  t.heading('relay, unshaped, median', 'throughput', `  ${CHAIN_CPU_HEADER}`);
  t.row('braid up + braid relay', `${u.medianGbit.braid.toFixed(2)} Gbit/s`, `  ${chainCpuColumns(cpu, 'braid')}`);
  t.row(`ss-local + ss-server (${rb.ssCipher})`, `${u.medianGbit.ss.toFixed(2)} Gbit/s`, `  ${chainCpuColumns(cpu, 'ss')}`);
  t.row('direct MPTCP to the relay host (mptcpize curl)', `${u.medianGbit.direct.toFixed(2)} Gbit/s`);
  const stalls = describeChainStalls(u.samples);
  // In the free-text column: a value this long would widen every row's value column.
  if (stalls) t.row('stalls per download, gaps >= 50 ms at the client', '', `${stalls} (their seconds, the relay's MPTCP-level retransmissions)`);
  const pairs = u.mptcpDestination.filter((p) => p.mptcpGbit !== null && p.tcpGbit !== null).map((p) => p.mptcpGbit! / p.tcpGbit!);
  const unfinished = u.mptcpDestination.length - pairs.length;
  t.row('braid relay, MPTCP-speaking / TCP destination, pairs', pairs.length ? `${range(pairs, 2)}x` : 'none',
    `  (${pairs.length} pairs${unfinished ? `, ${unfinished} did not finish` : ''}; target >= 0.8 in every pair)`);
  const pairStalls = u.mptcpDestination.flatMap((p) => [p.mptcpStalls, p.tcpStalls]).filter((x): x is StallSample => x !== null);
  if (pairStalls.length) t.row('stalls in those downloads, gaps >= 50 ms at the client', '', `${describeStallRanges(pairStalls)} (gaps per download, their seconds, the relay's MPTCP-level retransmissions)`);
  t.heading('time to first byte (1-byte body), median', 'ms');
  t.row('direct to the relay host (TCP connect + GET)', tt.direct!.toFixed(2), `  (TCP connect alone ${tt.directConnect!.toFixed(2)} ms)`);
  t.row('through braid relay, warm pool', tt.braidWarm!.toFixed(2), `  (+${(tt.braidWarm! - tt.direct!).toFixed(2)} ms over direct)`);
  t.row('through braid relay, no pool (TCP + TLS per dial)', tt.braidCold!.toFixed(2), `  (+${(tt.braidCold! - tt.direct!).toFixed(2)} ms)`);
  t.row('through the shadowsocks chain', tt.ssChain!.toFixed(2), `  (+${(tt.ssChain! - tt.direct!).toFixed(2)} ms)`);
  const d = rb.ttfbDelayed;
  const dm = d.medianMs;
  const rt = (k: string): string => `${(d.extraRoundTrips[k]! >= 0 ? '+' : '')}${d.extraRoundTrips[k]!.toFixed(2)} RTT`;
  t.heading(`time to first byte, ${d.rttMs.toFixed(1)} ms RTT client ⇄ relay (measured; delay line set to ${d.nominalRttMs}), median`, 'ms');
  t.row('direct to the relay host (TCP connect + GET)', dm.direct!.toFixed(1), `  (TCP connect alone ${dm.directConnect!.toFixed(1)} ms)`);
  t.row('through braid relay, warm pool (target <= +1 RTT)', dm.braidWarm!.toFixed(1), `  (${rt('braidWarm')} over direct)`);
  t.row('through braid relay, no pool (TCP + TLS per dial)', dm.braidCold!.toFixed(1), `  (${rt('braidCold')})`);
  t.row('through the shadowsocks chain', dm.ssChain!.toFixed(1), `  (${rt('ssChain')})`);
  t.print(log);
}
