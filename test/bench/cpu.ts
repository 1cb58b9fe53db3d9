/** CPU time of other processes, for the bench's CPU-seconds-per-GB figures. */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

export function clockTicks(): number {
  try {
    const v = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8', timeout: 5000 }).trim());
    if (Number.isInteger(v) && v > 0) return v;
  } catch { /* fall through */ }
  return 100;
}

/** utime + stime of a process, in clock ticks (/proc/<pid>/stat fields 14 and 15). */
export function cpuTicks(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may contain spaces; fields are counted after its closing parenthesis.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(rest[11]) + Number(rest[12]);
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

/** One repetition of Braid's relay chain beside the shadowsocks chain, unshaped: Gbit/s and CPU s/GB. */
export interface ChainSample {
  braidGbit: number; ssGbit: number; directGbit: number;
  braidClientCpu: number; braidRelayCpu: number; ssLocalCpu: number; ssServerCpu: number;
  braidHostCpu: number; ssHostCpu: number;
}

export interface ChainCpuMedians { braidClient: number; braidRelay: number; ssLocal: number; ssServer: number; braidHost: number; ssHost: number }

export const NO_CHAIN_CPU: ChainCpuMedians = { braidClient: NaN, braidRelay: NaN, ssLocal: NaN, ssServer: NaN, braidHost: NaN, ssHost: NaN };

/** CPU ticks of a chain's two processes and of the whole host, now: one reading before a transfer, one after. */
export function chainTicks(clientPid: number, serverPid: number): [number, number, number] {
  return [cpuTicks(clientPid), cpuTicks(serverPid), hostBusyTicks()];
}

type Ticks = [number, number, number];

/** The sample from both chains' readings around their transfers of `gb` gigabytes each. */
export function chainSample(gbit: { braid: number; ss: number; direct: number }, braid: [Ticks, Ticks], ss: [Ticks, Ticks], ticks: number, gb: number): ChainSample {
  const per = ([before, after]: [Ticks, Ticks], i: number): number => (after[i]! - before[i]!) / ticks / gb;
  return {
    braidGbit: gbit.braid, ssGbit: gbit.ss, directGbit: gbit.direct,
    braidClientCpu: per(braid, 0), braidRelayCpu: per(braid, 1), ssLocalCpu: per(ss, 0), ssServerCpu: per(ss, 1),
    braidHostCpu: per(braid, 2), ssHostCpu: per(ss, 2),
  };
}

/** The per-repetition log line's figures, after its "rep N:". */
export function describeChainSample(s: ChainSample): string {
  return `braid ${s.braidGbit.toFixed(2)} Gbit/s (client ${s.braidClientCpu.toFixed(2)}, relay ${s.braidRelayCpu.toFixed(2)}, whole host ${s.braidHostCpu.toFixed(2)} CPU s/GB), ` +
    `ss ${s.ssGbit.toFixed(2)} Gbit/s (local ${s.ssLocalCpu.toFixed(2)}, server ${s.ssServerCpu.toFixed(2)}, whole host ${s.ssHostCpu.toFixed(2)} CPU s/GB), direct ${s.directGbit.toFixed(2)} Gbit/s`;
}

export function chainCpuMedians(samples: ChainSample[], median: (xs: number[]) => number): ChainCpuMedians {
  const m = (f: (x: ChainSample) => number): number => median(samples.map(f));
  return {
    braidClient: m((x) => x.braidClientCpu), braidRelay: m((x) => x.braidRelayCpu), ssLocal: m((x) => x.ssLocalCpu), ssServer: m((x) => x.ssServerCpu),
    braidHost: m((x) => x.braidHostCpu), ssHost: m((x) => x.ssHostCpu),
  };
}
