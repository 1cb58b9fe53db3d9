/**
 * Stalls in an unshaped download, measured beside its throughput: how long no byte arrived on the
 * receiving namespace's links, and how many MPTCP-level retransmissions the sender's kernel made.
 *
 * Why: on 6.18 an MPTCP sender can sit out its MPTCP retransmission timer (at least 200 ms). The
 * watch reads both ends during each gap and tells two kinds apart:
 * - "held": the receiver already holds every byte the sender has written (its rcv_nxt is the
 *   sender's write_seq) while the sender's send buffer or window is full of them. The subflows
 *   acknowledged that data at the TCP level while it waited to reach the MPTCP socket (the reader
 *   held the socket), so their ACKs carried an older DATA_ACK, and once the socket took the data in
 *   the kernel sent no ACK by itself (`mptcp_cleanup_rbuf()` sends one only for a window that has
 *   doubled, or an ACK TCP already owes). Any segment from the receiver ends it: on the relay
 *   connection Braid sends a TLS record with no data (electron/core/proxy/ack-nudge.ts).
 * - "missing": the receiver has acknowledged exactly what the sender counts as acknowledged
 *   (rcv_nxt = snd_una) and lacks the next byte, while what arrived after it waits out of order,
 *   often the sender's whole send buffer. Only the sender's MPTCP-level retransmission fills it.
 *   The byte was dropped by the receiver as beyond the window it had announced, after its subflow
 *   had acknowledged it: the sender overshot a window its reader had nearly closed (traced with
 *   the mptcp:ack_update_msk tracepoint; README, "What does not work yet"). So each download also
 *   reports the receiving namespace's MPTcpExt NoDSSInWindow, which counts those drops.
 * A download through `braid up` to an MPTCP-speaking server has one more process sharing the CPUs
 * than the same download made by curl directly, so its reader falls behind more often.
 *
 * The watch reads the links' receive counters (/proc/<pid>/net/dev of a process in the receiving
 * namespace) every 10 ms; a gap is a run of samples with no received byte lasting at least 50 ms. A
 * late timer only widens an interval, in which bytes still count, so it cannot make a gap of its own.
 * Once a gap has lasted 60 ms both ends' MPTCP sockets are read (`ss -niM`), against the sender's
 * most-behind socket; a gap that ends before the reading is done counts as neither.
 */
import fs from 'node:fs';
import type { Namespace } from '../helpers/netns';
import { range } from './figures';

const SAMPLE_MS = 10;
const MIN_GAP_MS = 50;
/** How long a gap lasts before both ends' MPTCP sockets are read. */
const SNAPSHOT_AFTER_MS = 60;

export interface StallSample {
  /** gaps of at least 50 ms with no byte received on the watched links */
  gaps: number;
  /** their total length */
  gapSeconds: number;
  /** the sender's MPTcpExt MPTCPRetrans over the download (0 for a plain-TCP sender) */
  senderRetrans: number;
  /** the receiving namespace's MPTcpExt NoDSSInWindow over the download: data its subflows acknowledged and the MPTCP socket then dropped as beyond its window */
  receiverBeyondWindow: number;
  /** gaps read while the receiver held every byte the sender had written (see above): the bytes the sender still counted as unacknowledged at each */
  unackedBytes: number[];
  /**
   * Gaps read while the receiver had acknowledged exactly what the sender counts as acknowledged
   * (rcv_nxt = snd_una) with more written: it lacks the next byte, and what it holds after it
   * waits out of order for the sender's MPTCP-level retransmission. The receiving socket's Recv-Q
   * at each (its receive memory, out-of-order data included).
   */
  missingQueued: number[];
}

/** The end of a download being watched: a process in the namespace whose links receive it. */
export interface WatchedReceiver {
  pid: number;
  ns: Namespace;
}

interface MptcpSeqs { recvQ: number; writeSeq: bigint; sndUna: bigint; rcvNxt: bigint }

const U64 = 1n << 64n;
// `ss -niM state established` (one socket kind, one state: no Netid or State column): "Recv-Q
// Send-Q local peer", then an indented line with the sequence numbers.
const SOCKET = /^(\d+)\s+\d+\s[^\n]*\n[^\n]*write_seq:([0-9a-f]+) snd_una:([0-9a-f]+) rcv_nxt:([0-9a-f]+)/gm;

/** The established MPTCP sockets in `ns` with their queued bytes and 64-bit sequence numbers. */
async function mptcpSeqs(ns: Namespace): Promise<MptcpSeqs[]> {
  const { stdout } = await ns.exec(['ss', '-niM', 'state', 'established']);
  return [...stdout.matchAll(SOCKET)].map((m) => ({ recvQ: Number(m[1]), writeSeq: BigInt(`0x${m[2]}`), sndUna: BigInt(`0x${m[3]}`), rcvNxt: BigInt(`0x${m[4]}`) }));
}

type GapReading = { kind: 'held'; unacked: number } | { kind: 'missing'; queued: number };

/**
 * Reads both ends during a gap: the sender's most-behind socket, and whether the receiver holds all
 * it wrote ('held') or lacks the byte at its snd_una ('missing'); null for neither.
 */
async function readGap(receiver: Namespace, sender: Namespace): Promise<GapReading | null> {
  const [sent, received] = await Promise.all([mptcpSeqs(sender), mptcpSeqs(receiver)]);
  const behind = (x: MptcpSeqs): bigint => (((x.writeSeq - x.sndUna) % U64) + U64) % U64;
  const stuck = sent.reduce<MptcpSeqs | null>((a, x) => (a === null || behind(x) > behind(a) ? x : a), null);
  if (stuck === null || behind(stuck) === 0n) return null;
  if (received.some((r) => r.rcvNxt === stuck.writeSeq)) return { kind: 'held', unacked: Number(behind(stuck)) };
  const lacking = received.find((r) => r.rcvNxt === stuck.sndUna);
  return lacking ? { kind: 'missing', queued: lacking.recvQ } : null;
}

function rxBytes(pid: number, devs: readonly string[]): number {
  const lines = fs.readFileSync(`/proc/${pid}/net/dev`, 'utf8').split('\n');
  let sum = 0;
  for (const dev of devs) {
    const line = lines.find((l) => l.trim().startsWith(`${dev}:`));
    if (!line) throw new Error(`no device ${dev} in /proc/${pid}/net/dev`);
    sum += Number(line.slice(line.indexOf(':') + 1).trim().split(/\s+/)[0]);
  }
  return sum;
}

/** One MPTcpExt counter in `ns` (its MIB counters, Namespace.mptcpCounters). */
async function mptcpCounter(ns: Namespace, name: 'MPTCPRetrans' | 'NoDSSInWindow'): Promise<number> {
  const value = (await ns.mptcpCounters())[name];
  if (value === undefined) throw new Error(`no MPTcpExt ${name} in namespace ${ns.name}`);
  return value;
}

/**
 * Runs `download` while watching: `receiver` is any process in the namespace whose links `devs`
 * receive the download (and that namespace), `sender` the sender's namespace.
 */
export async function watchStalls<T>(receiver: WatchedReceiver, devs: readonly string[], sender: Namespace, download: () => Promise<T>): Promise<{ result: T; stalls: StallSample }> {
  const retransBefore = await mptcpCounter(sender, 'MPTCPRetrans');
  const beyondBefore = await mptcpCounter(receiver.ns, 'NoDSSInWindow');
  let last = rxBytes(receiver.pid, devs);
  let lastAt = performance.now();
  let idleSince: number | null = null;
  let gaps = 0;
  let gapMs = 0;
  // One reading per gap: those still open when both ends had been read, and what they found.
  let readFor: number | null = null;
  const readings: Array<Promise<void>> = [];
  const found = new Map<number, GapReading>();
  const counted = new Set<number>();
  const closeGap = (until: number): void => {
    if (idleSince !== null && until - idleSince >= MIN_GAP_MS) { gaps++; gapMs += until - idleSince; counted.add(idleSince); }
    idleSince = null;
  };
  const sample = (): void => {
    const now = performance.now();
    const bytes = rxBytes(receiver.pid, devs);
    if (bytes === last) idleSince ??= lastAt;
    else closeGap(lastAt);
    if (idleSince !== null && readFor !== idleSince && now - idleSince >= SNAPSHOT_AFTER_MS) {
      readFor = idleSince;
      const gapStart = idleSince;
      readings.push(readGap(receiver.ns, sender).catch(() => null).then((r) => {
        if (r && idleSince === gapStart) found.set(gapStart, r);
      }));
    }
    last = bytes;
    lastAt = now;
  };
  const timer = setInterval(sample, SAMPLE_MS);
  let result: T;
  try {
    result = await download();
  } finally {
    clearInterval(timer);
    await Promise.all(readings);
  }
  // A gap is counted only when bytes arrive after it: idle time after the last bytes is not a stall.
  const read = [...found].filter(([start]) => counted.has(start)).map(([, r]) => r);
  const unackedBytes = read.flatMap((r) => (r.kind === 'held' ? [r.unacked] : []));
  const missingQueued = read.flatMap((r) => (r.kind === 'missing' ? [r.queued] : []));
  const senderRetrans = (await mptcpCounter(sender, 'MPTCPRetrans')) - retransBefore;
  const receiverBeyondWindow = (await mptcpCounter(receiver.ns, 'NoDSSInWindow')) - beyondBefore;
  return { result, stalls: { gaps, gapSeconds: gapMs / 1000, senderRetrans, receiverBeyondWindow, unackedBytes, missingQueued } };
}

/** One watched transfer: '2 / 0.38 s / 3 retrans / 2 held / 0 missing / 0 beyond window'. */
export function describeStalls(x: StallSample): string {
  return `${x.gaps} / ${x.gapSeconds.toFixed(2)} s / ${x.senderRetrans} retrans / ${x.unackedBytes.length} held / ${x.missingQueued.length} missing / ${x.receiverBeyondWindow} beyond window`;
}

/**
 * Over some watched transfers, what the gaps were read as: 'of 4: 3 with the receiver holding every
 * byte sent (the sender's unacknowledged 7.1–7.3 MB), 1 with it missing the next (8.1 MB queued)'.
 */
export function describeHeldGaps(samples: readonly StallSample[]): string {
  const gaps = samples.reduce((n, x) => n + x.gaps, 0);
  if (gaps === 0) return 'no gaps';
  const held = samples.flatMap((x) => x.unackedBytes);
  const missing = samples.flatMap((x) => x.missingQueued);
  const mb = (xs: number[]): string => range(xs.map((b) => b / 1e6), 1);
  return `of ${gaps}: ${held.length} with the receiver holding every byte sent${held.length ? ` (the sender's unacknowledged ${mb(held)} MB)` : ''}, ` +
    `${missing.length} with it missing the next${missing.length ? ` (${mb(missing)} MB queued behind it)` : ''}`;
}

/** Over some watched transfers: '0–2 (0.00–0.38 s, 0–3 retrans, 0–2 beyond window; <describeHeldGaps>)'. */
export function describeStallRanges(samples: readonly StallSample[]): string {
  const r = (f: (x: StallSample) => number): string => range(samples.map(f), 0);
  return `${r((x) => x.gaps)} (${range(samples.map((x) => x.gapSeconds), 2)} s, ${r((x) => x.senderRetrans)} retrans, ${r((x) => x.receiverBeyondWindow)} beyond window; ${describeHeldGaps(samples)})`;
}
