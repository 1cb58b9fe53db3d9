/**
 * Stalls in an unshaped download, measured beside its throughput: how long no byte arrived on the
 * receiving namespace's links, and how many MPTCP-level retransmissions the sender's kernel made.
 *
 * Why: on 6.18 an MPTCP receiver whose reader falls behind (its MPTCP-level window closes) can leave
 * the sender waiting for its MPTCP retransmission timer, at least 200 ms, before data flows again
 * (README, "What does not work yet"). A download through `braid up` to an MPTCP-speaking server has
 * one more process sharing the CPUs than the same download made by curl directly, so its reader
 * falls behind more often. These figures let a run show how much of the proxy's gap is those
 * stalls, rather than asserting it.
 *
 * The watch reads the links' receive counters (/proc/<pid>/net/dev of a process in the receiving
 * namespace) every 10 ms; a gap is a run of samples with no received byte lasting at least 50 ms. A
 * late timer only widens an interval, in which bytes still count, so it cannot make a gap of its own.
 */
import fs from 'node:fs';
import type { Namespace } from '../helpers/netns';

const SAMPLE_MS = 10;
const MIN_GAP_MS = 50;

export interface StallSample {
  /** gaps of at least 50 ms with no byte received on the watched links */
  gaps: number;
  /** their total length */
  gapSeconds: number;
  /** the sender's MPTcpExt MPTCPRetrans over the download (0 for a plain-TCP sender) */
  senderRetrans: number;
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
 * Runs `download` while watching: `receiverPid` is any process in the namespace whose links `devs`
 * receive the download, `sender` the sender's namespace.
 */
export async function watchStalls<T>(receiverPid: number, devs: readonly string[], sender: Namespace, download: () => Promise<T>): Promise<{ result: T; stalls: StallSample }> {
  const retransBefore = await mptcpRetrans(sender);
  let last = rxBytes(receiverPid, devs);
  let lastAt = performance.now();
  let idleSince: number | null = null;
  let gaps = 0;
  let gapMs = 0;
  const closeGap = (until: number): void => {
    if (idleSince !== null && until - idleSince >= MIN_GAP_MS) { gaps++; gapMs += until - idleSince; }
    idleSince = null;
  };
  const sample = (): void => {
    const now = performance.now();
    const bytes = rxBytes(receiverPid, devs);
    if (bytes === last) idleSince ??= lastAt;
    else closeGap(lastAt);
    last = bytes;
    lastAt = now;
  };
  const timer = setInterval(sample, SAMPLE_MS);
  let result: T;
  try {
    result = await download();
  } finally {
    clearInterval(timer);
  }
  // A gap is counted only when bytes arrive after it: idle time after the last bytes is not a stall.
  return { result, stalls: { gaps, gapSeconds: gapMs / 1000, senderRetrans: (await mptcpRetrans(sender)) - retransBefore } };
}
