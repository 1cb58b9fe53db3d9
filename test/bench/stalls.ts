/**
 * Stalls in an unshaped download, measured beside its throughput: how long no byte arrived on the
 * receiving namespace's links, and how many MPTCP-level retransmissions the sender's kernel made.
 *
 * Why: on 6.18 an MPTCP sender can sit out its MPTCP retransmission timer (at least 200 ms) with
 * nothing lost. Its send buffer is full of data the receiver already holds: the subflows' ACKs
 * carried a DATA_ACK from before that data reached the MPTCP socket (it arrived while the reader
 * held the socket, and waited in the subflows or the MPTCP backlog), and once the reader has moved
 * and read it the kernel sends no ACK by itself: `mptcp_cleanup_rbuf()` only sends one for a window
 * that doubled or an ACK TCP already owed. Nothing new can arrive to carry the newer DATA_ACK, so
 * the sender waits for its timer, retransmits, and the ACK to that ends the gap. A download through
 * `braid up` to an MPTCP-speaking server has one more process sharing the CPUs than the same
 * download made by curl directly, so its reader is preempted holding the socket more often.
 *
 * The watch reads the links' receive counters (/proc/<pid>/net/dev of a process in the receiving
 * namespace) every 10 ms; a gap is a run of samples with no received byte lasting at least 50 ms. A
 * late timer only widens an interval, in which bytes still count, so it cannot make a gap of its own.
 * Once a gap has lasted 60 ms both ends' MPTCP sockets are read (`ss -niM`): the gap is "with the
 * receiver holding every byte" when an MPTCP socket at the receiving end has received exactly what
 * the sender's most-behind socket has written (rcv_nxt = write_seq) while that sender still counts
 * bytes as unacknowledged (snd_una behind). A gap that ends before the reading counts as not.
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
  /** gaps read while the receiver held every byte the sender had written (see above) */
  receiverHadAll: number;
  /** for those gaps, the bytes the sender still counted as unacknowledged */
  unackedBytes: number[];
}

/** The end of a download being watched: a process in the namespace whose links receive it. */
export interface WatchedReceiver {
  pid: number;
  ns: Namespace;
}

interface MptcpSeqs { writeSeq: bigint; sndUna: bigint; rcvNxt: bigint }

const U64 = 1n << 64n;
const SEQS = /write_seq:([0-9a-f]+) snd_una:([0-9a-f]+) rcv_nxt:([0-9a-f]+)/g;

/** The established MPTCP sockets in `ns` with their 64-bit sequence numbers, from `ss -niM`. */
async function mptcpSeqs(ns: Namespace): Promise<MptcpSeqs[]> {
  const { stdout } = await ns.exec(['ss', '-niM', 'state', 'established']);
  return [...stdout.matchAll(SEQS)].map((m) => ({ writeSeq: BigInt(`0x${m[1]}`), sndUna: BigInt(`0x${m[2]}`), rcvNxt: BigInt(`0x${m[3]}`) }));
}

/** Reads both ends during a gap: the sender's most-behind socket, and whether the receiver has all it wrote. */
async function readGap(receiver: Namespace, sender: Namespace): Promise<{ hadAll: boolean; unacked: number } | null> {
  const [sent, received] = await Promise.all([mptcpSeqs(sender), mptcpSeqs(receiver)]);
  const behind = (x: MptcpSeqs): bigint => (((x.writeSeq - x.sndUna) % U64) + U64) % U64;
  const stuck = sent.reduce<MptcpSeqs | null>((a, x) => (a === null || behind(x) > behind(a) ? x : a), null);
  if (stuck === null || behind(stuck) === 0n) return null;
  return { hadAll: received.some((r) => r.rcvNxt === stuck.writeSeq), unacked: Number(behind(stuck)) };
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

/** MPTcpExt.MPTCPRetrans in `ns` (its MIB counters, Namespace.mptcpCounters). */
async function mptcpRetrans(ns: Namespace): Promise<number> {
  const value = (await ns.mptcpCounters()).MPTCPRetrans;
  if (value === undefined) throw new Error(`no MPTcpExt MPTCPRetrans in namespace ${ns.name}`);
  return value;
}

/**
 * Runs `download` while watching: `receiver` is any process in the namespace whose links `devs`
 * receive the download (and that namespace), `sender` the sender's namespace.
 */
export async function watchStalls<T>(receiver: WatchedReceiver, devs: readonly string[], sender: Namespace, download: () => Promise<T>): Promise<{ result: T; stalls: StallSample }> {
  const retransBefore = await mptcpRetrans(sender);
  let last = rxBytes(receiver.pid, devs);
  let lastAt = performance.now();
  let idleSince: number | null = null;
  let gaps = 0;
  let gapMs = 0;
  // One reading per gap: those still open when both ends had been read, and what they found.
  let readFor: number | null = null;
  const readings: Array<Promise<void>> = [];
  const found = new Map<number, number>();
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
        if (r?.hadAll && idleSince === gapStart) found.set(gapStart, r.unacked);
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
  const unackedBytes = [...found].filter(([start]) => counted.has(start)).map(([, unacked]) => unacked);
  return { result, stalls: { gaps, gapSeconds: gapMs / 1000, senderRetrans: (await mptcpRetrans(sender)) - retransBefore, receiverHadAll: unackedBytes.length, unackedBytes } };
}

/**
 * Over some watched transfers, how many gaps were read with the receiver holding every byte sent:
 * '3 of 4 with the receiver holding every byte sent (the sender's unacknowledged 7.1–7.3 MB)'.
 */
export function describeHeldGaps(samples: readonly StallSample[]): string {
  const gaps = samples.reduce((n, x) => n + x.gaps, 0);
  const held = samples.flatMap((x) => x.unackedBytes);
  if (gaps === 0) return 'no gaps';
  const mb = held.length ? ` (the sender's unacknowledged ${range(held.map((b) => b / 1e6), 1)} MB)` : '';
  return `${held.length} of ${gaps} with the receiver holding every byte sent${mb}`;
}
