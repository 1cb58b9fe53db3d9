/**
 * What the privileged helper checks before it changes anything for a caller, all from the kernel's
 * own records (/proc, /sys/fs/cgroup), never from what the caller says: every process in a cgroup
 * it names belongs to the caller's uid, and the port its traffic is to be redirected to is a
 * loopback listener of the caller's own. So a user can redirect only their own traffic, and only to
 * their own Braid.
 */
import fs from 'node:fs';
import path from 'node:path';
import { BraidError } from '../errors';
import { cgroupDir } from '../transparent/cgroup';
import type { CgroupRef } from '../transparent/ruleset';

/** Real and effective uid of a process, or null when it is gone. */
export function uidsOf(pid: number): { real: number; effective: number } | null {
  try {
    const m = /^Uid:\s+(\d+)\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? { real: Number(m[1]), effective: Number(m[2]) } : null;
  } catch {
    return null;
  }
}

/** Throws EACCES unless the cgroup exists, is not empty, holds `pid` (when given), and every process in it is `uid`'s. */
export function checkCgroupOwnedBy(ref: CgroupRef, uid: number, pid: number | null): void {
  let procs: number[];
  try {
    procs = fs.readFileSync(path.join(cgroupDir(ref.path), 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
  } catch {
    throw new BraidError('EBADCGROUP', `cgroup ${ref.path} does not exist under /sys/fs/cgroup`);
  }
  if (procs.length === 0) throw new BraidError('EBADCGROUP', `cgroup ${ref.path} is empty`);
  if (pid !== null && !procs.includes(pid)) throw new BraidError('EACCES', `process ${pid} is not in cgroup ${ref.path}`);
  for (const p of procs) {
    const u = uidsOf(p);
    if (u && (u.real !== uid || u.effective !== uid)) throw new BraidError('EACCES', `cgroup ${ref.path} holds process ${p} of another user`);
  }
}

/** The uid owning the TCP listener on loopback `port` (IPv4 127.0.0.1, or ::1), or null. */
export function loopbackListenerUid(port: number, family: 4 | 6, procNet = '/proc/net'): number | null {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const local = family === 4 ? `0100007F:${hexPort}` : `00000000000000000000000001000000:${hexPort}`;
  let text: string;
  try {
    text = fs.readFileSync(path.join(procNet, family === 4 ? 'tcp' : 'tcp6'), 'utf8');
  } catch {
    return null;
  }
  for (const line of text.split('\n')) {
    // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
    const f = line.trim().split(/\s+/);
    if (f[1] === local && f[3] === '0A') return Number(f[7]);
  }
  return null;
}

export function checkListenerOwnedBy(port: number, ipv6: boolean, uid: number): void {
  const families: (4 | 6)[] = ipv6 ? [4, 6] : [4];
  for (const fam of families) {
    const owner = loopbackListenerUid(port, fam);
    if (owner !== uid) {
      throw new BraidError('EACCES', `${fam === 4 ? '127.0.0.1' : '[::1]'}:${port} is not a listener of yours${owner === null ? ' (nothing listens there)' : ` (uid ${owner}'s)`}`);
    }
  }
}

/**
 * The uid owning the established TCP socket whose local port is `port` (an MPTCP connection's
 * first subflow is listed there with its owner's uid), or null when there is none.
 */
export function connectionUid(port: number, procNet = '/proc/net'): number | null {
  const hexPort = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  for (const file of ['tcp', 'tcp6']) {
    let text: string;
    try {
      text = fs.readFileSync(path.join(procNet, file), 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n')) {
      const f = line.trim().split(/\s+/);
      if (f[1]?.endsWith(hexPort) && f[3] === '01') return Number(f[7]);
    }
  }
  return null;
}
