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
