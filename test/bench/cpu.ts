/** CPU time of other processes, for the bench's CPU-seconds-per-GB figures. */
import { describeStallRanges, describeStalls, type StallSample } from './stalls';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

export function clockTicks(): number {
  try {
    const v = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8', timeout: 5000 }).trim());
    if (Number.isInteger(v) && v > 0) return v;
  } catch { /* fall through */ }
  return 100;
}

/** utime and stime of a process, in clock ticks (/proc/<pid>/stat fields 14 and 15). */
export function cpuTicksSplit(pid: number): { user: number; system: number } {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may contain spaces; fields are counted after its closing parenthesis.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: Number(rest[11]), system: Number(rest[12]) };
}

/** utime + stime of a process, in clock ticks. */
export function cpuTicks(pid: number): number {
  const { user, system } = cpuTicksSplit(pid);
  return user + system;
}

/**
 * Busy time of the whole host, in clock ticks: user, nice, system, irq and softirq of every CPU
 * (/proc/stat's first line; idle, iowait and steal left out). The namespaces of a bench share
 * one kernel, and packet processing is charged to whichever process a CPU happens to be running
 * (a sender's write runs the receiving namespace's softirq work too), so a per-process figure
 * moves work between the two ends of a chain; the whole host's figure does not. It includes curl
 * and the bench's servers, which do the same work for every chain compared.
 */
export function hostBusyTicks(): number {
  const first = fs.readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/);
  if (first[0] !== 'cpu') throw new Error('/proc/stat does not start with the cpu line');
  const [user, nice, system, , , irq, softirq] = first.slice(1).map(Number) as number[];
  return user! + nice! + system! + irq! + softirq!;
}

/**
 * One repetition of Braid's relay chain beside the shadowsocks chain, unshaped: Gbit/s and CPU
 * s/GB. Each process's figure comes with its user-space part (utime): the rest is kernel time,
 * which includes the packet work charged to it (see hostBusyTicks), so the user-space part is
 * what the program itself spends.
 */
export interface ChainSample {
  braidGbit: number; ssGbit: number; directGbit: number;
  braidClientCpu: number; braidRelayCpu: number; ssLocalCpu: number; ssServerCpu: number;
  braidClientUserCpu: number; braidRelayUserCpu: number; ssLocalUserCpu: number; ssServerUserCpu: number;
  braidHostCpu: number; ssHostCpu: number;
  /** gaps at the receiving end of the client⇄relay connection, and the sender's MPTCP-level retransmissions (stalls.ts) */
  braidStalls?: StallSample; ssStalls?: StallSample;
}

export interface ChainCpuMedians {
  braidClient: number; braidRelay: number; ssLocal: number; ssServer: number;
  braidClientUser: number; braidRelayUser: number; ssLocalUser: number; ssServerUser: number;
  braidHost: number; ssHost: number;
}

export const NO_CHAIN_CPU: ChainCpuMedians = {
  braidClient: NaN, braidRelay: NaN, ssLocal: NaN, ssServer: NaN,
  braidClientUser: NaN, braidRelayUser: NaN, ssLocalUser: NaN, ssServerUser: NaN,
  braidHost: NaN, ssHost: NaN,
};

/** CPU ticks now: the chain's client and server (total and user space) and the whole host. One reading before a transfer, one after. */
type Ticks = { client: number; server: number; clientUser: number; serverUser: number; host: number };

export function chainTicks(clientPid: number, serverPid: number): Ticks {
  const c = cpuTicksSplit(clientPid);
  const s = cpuTicksSplit(serverPid);
  return { client: c.user + c.system, server: s.user + s.system, clientUser: c.user, serverUser: s.user, host: hostBusyTicks() };
}

/** The sample from both chains' readings around their transfers of `gb` gigabytes each. */
export function chainSample(gbit: { braid: number; ss: number; direct: number }, braid: [Ticks, Ticks], ss: [Ticks, Ticks], ticks: number, gb: number): ChainSample {
  const per = ([before, after]: [Ticks, Ticks], k: keyof Ticks): number => (after[k] - before[k]) / ticks / gb;
  return {
    braidGbit: gbit.braid, ssGbit: gbit.ss, directGbit: gbit.direct,
    braidClientCpu: per(braid, 'client'), braidRelayCpu: per(braid, 'server'), ssLocalCpu: per(ss, 'client'), ssServerCpu: per(ss, 'server'),
    braidClientUserCpu: per(braid, 'clientUser'), braidRelayUserCpu: per(braid, 'serverUser'), ssLocalUserCpu: per(ss, 'clientUser'), ssServerUserCpu: per(ss, 'serverUser'),
    braidHostCpu: per(braid, 'host'), ssHostCpu: per(ss, 'host'),
  };
}

const cell = (total: number, user: number): string => `${total.toFixed(2)} (${user.toFixed(2)})`;

/** Ranges over the samples of the stalls on the client⇄relay connection: 'braid 0–2 (0.00–0.38 s, 0–6 retrans), ss …', or '' when not watched. */
export function describeChainStalls(samples: ChainSample[]): string {
  const one = (xs: Array<StallSample | undefined>): string | null => {
    const got = xs.filter((x): x is StallSample => x !== undefined);
    if (got.length === 0) return null;
    return describeStallRanges(got);
  };
  const b = one(samples.map((x) => x.braidStalls));
  const s = one(samples.map((x) => x.ssStalls));
  return b === null || s === null ? '' : `braid ${b}, ss ${s}`;
}

/** The per-repetition log line's figures, after its "rep N:". */
export function describeChainSample(s: ChainSample): string {
  const st = (x: StallSample | undefined): string => (x ? `; stalls ${describeStalls(x)}` : '');
  return `braid ${s.braidGbit.toFixed(2)} Gbit/s (client ${cell(s.braidClientCpu, s.braidClientUserCpu)}, relay ${cell(s.braidRelayCpu, s.braidRelayUserCpu)}, whole host ${s.braidHostCpu.toFixed(2)} CPU s/GB, user space in brackets${st(s.braidStalls)}), ` +
    `ss ${s.ssGbit.toFixed(2)} Gbit/s (local ${cell(s.ssLocalCpu, s.ssLocalUserCpu)}, server ${cell(s.ssServerCpu, s.ssServerUserCpu)}, whole host ${s.ssHostCpu.toFixed(2)} CPU s/GB${st(s.ssStalls)}), direct ${s.directGbit.toFixed(2)} Gbit/s`;
}

/** The summary table's header over chainCpuColumns, and its columns for one chain, each ending where its header does. */
const HEADER_COLUMNS = ['CPU s/GB (user space): client', 'relay/server', 'whole host'];
export const CHAIN_CPU_HEADER = HEADER_COLUMNS.join('  ');
const widths = HEADER_COLUMNS.map((h) => h.length);
export function chainCpuColumns(c: ChainCpuMedians, chain: 'braid' | 'ss'): string {
  const [client, server] = chain === 'braid'
    ? [cell(c.braidClient, c.braidClientUser), cell(c.braidRelay, c.braidRelayUser)]
    : [cell(c.ssLocal, c.ssLocalUser), cell(c.ssServer, c.ssServerUser)];
  const host = (chain === 'braid' ? c.braidHost : c.ssHost).toFixed(2);
  return `${client.padStart(widths[0]!)}  ${server.padStart(widths[1]!)}  ${host.padStart(widths[2]!)}`;
}

export function chainCpuMedians(samples: ChainSample[], median: (xs: number[]) => number): ChainCpuMedians {
  const m = (f: (x: ChainSample) => number): number => median(samples.map(f));
  return {
    braidClient: m((x) => x.braidClientCpu), braidRelay: m((x) => x.braidRelayCpu), ssLocal: m((x) => x.ssLocalCpu), ssServer: m((x) => x.ssServerCpu),
    braidClientUser: m((x) => x.braidClientUserCpu), braidRelayUser: m((x) => x.braidRelayUserCpu), ssLocalUser: m((x) => x.ssLocalUserCpu), ssServerUser: m((x) => x.ssServerUserCpu),
    braidHost: m((x) => x.braidHostCpu), ssHost: m((x) => x.ssHostCpu),
  };
}
