/**
 * cgroup v2, as `braid run` and nftables need it: where the cgroup2 tree is mounted (here the hybrid
 * layout's /sys/fs/cgroup/unified, on a systemd desktop /sys/fs/cgroup), this process's cgroup, and
 * a scope of its own to put a program and its children in. nft names a cgroup by its path under
 * /sys/fs/cgroup/ and its depth in the cgroup2 tree.
 */
import fs from 'node:fs';
import path from 'node:path';
import { BraidError } from '../errors';
import type { CgroupRef } from './ruleset';

const SYS_CGROUP = '/sys/fs/cgroup';

/** The cgroup2 mount point, or null (no cgroup2 here, or /sys remounted without it: `ip netns exec`). */
export function cgroup2Root(): string | null {
  let text: string;
  try {
    text = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return null;
  }
  for (const line of text.split('\n')) {
    // … mount point (field 5) … " - " fstype source options
    const [left, right] = line.split(' - ');
    if (!right || right.split(' ')[0] !== 'cgroup2') continue;
    const mountPoint = left!.split(' ')[4]!;
    if (mountPoint === SYS_CGROUP || mountPoint.startsWith(`${SYS_CGROUP}/`)) return mountPoint;
  }
  return null;
}

/** This process's cgroup2 path ("/user.slice/…"), from /proc/self/cgroup's "0::" line. */
export function ownCgroup(pid: number | 'self' = 'self'): string | null {
  try {
    const line = fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').find((l) => l.startsWith('0::'));
    return line ? line.slice(3) : null;
  } catch {
    return null;
  }
}

/** The directory of a cgroup named as nft names it. */
export function cgroupDir(nftPath: string): string {
  return path.join(SYS_CGROUP, nftPath);
}

/** How nft refers to the cgroup2 path `cg` ("/a/b" under the mount point). */
export function nftRef(root: string, cg: string): CgroupRef {
  const parts = cg.split('/').filter(Boolean);
  return { path: path.relative(SYS_CGROUP, path.join(root, ...parts)), level: parts.length };
}

export interface Scope {
  ref: CgroupRef;
  dir: string;
  /** Moves this process back to where it was and removes the scope (best effort: a program's daemon may still be in it). */
  close(): boolean;
}

/**
 * A new cgroup under this process's own, with this process moved into it, so that everything it
 * starts from now on is in it too. Works as root anywhere, and as a user inside a delegated systemd
 * subtree (a terminal's scope under user@UID.service).
 */
export function enterNewScope(name: string): Scope {
  const root = cgroup2Root();
  if (!root) throw new BraidError('ENOCGROUP', 'no cgroup v2 tree is visible here (mounted under /sys/fs/cgroup); `braid run` needs one (inside `ip netns exec`, use `nsenter --net=/run/netns/NAME` instead, which keeps /sys)');
  const own = ownCgroup();
  if (own === null) throw new BraidError('ENOCGROUP', 'this process has no cgroup v2 (/proc/self/cgroup has no 0:: line)');
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name)) throw new BraidError('EBADCGROUP', `bad scope name '${name}'`);
  const parentDir = path.join(root, own);
  const dir = path.join(parentDir, name);
  try {
    fs.mkdirSync(dir);
  } catch (err) {
    throw new BraidError('ECGROUP', `cannot create the cgroup ${dir}: ${(err as Error).message} (a desktop session's own cgroup must be writable: systemd delegates user@UID.service to the user)`, { cause: err });
  }
  try {
    fs.writeFileSync(path.join(dir, 'cgroup.procs'), String(process.pid));
  } catch (err) {
    fs.rmdirSync(dir);
    throw new BraidError('ECGROUP', `cannot move into the cgroup ${dir}: ${(err as Error).message}`, { cause: err });
  }
  return {
    ref: nftRef(root, path.join(own, name)),
    dir,
    close: () => {
      try {
        fs.writeFileSync(path.join(parentDir, 'cgroup.procs'), String(process.pid));
        fs.rmdirSync(dir);
        return true;
      } catch {
        return false;
      }
    },
  };
}
