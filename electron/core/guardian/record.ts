/**
 * Records of system state Braid has changed, one JSON file each in `<stateDir>/guardian/`. Every
 * record is written (atomically, durably) *before* the change it describes, and names its owner:
 * the process that made the change, by pid, the kernel's start time of that pid and the boot it
 * belongs to, so that a reused pid or a reboot is never taken for the owner.
 *
 * A record is flat JSON: the owner fields below plus whatever its kind needs. What a kind is and
 * how it is put back lives with the kind (see restorers.ts); this file only knows owners and files.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BraidError } from '../errors';

export const GUARDIAN_DIR = 'guardian';

export interface OwnerFields {
  /** What this record is about: the name of its restorer ('system-proxy', 'mptcp-endpoints', …). */
  kind: string;
  pid: number;
  /** Kernel start time of `pid` (Linux), to tell a reused pid from the owner; null elsewhere. */
  pidStartTime: string | null;
  /** /proc/sys/kernel/random/boot_id when written (Linux); a record from another boot has no live owner. */
  bootId?: string | null;
  writtenAt: string;
}

export function guardianDir(stateDir: string): string {
  return path.join(stateDir, GUARDIAN_DIR);
}

/** The owner fields for a record this process writes now. */
export function ownedByThisProcess(kind: string): OwnerFields {
  return { kind, pid: process.pid, pidStartTime: processStartTime(process.pid), bootId: bootId(), writtenAt: new Date().toISOString() };
}

/** Field 22 of /proc/PID/stat (clock ticks since boot), which changes when a pid is reused. */
export function processStartTime(pid: number): string | null {
  if (process.platform !== 'linux') return null;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count from its last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19] ?? null;
  } catch {
    return null;
  }
}

let cachedBootId: string | null | undefined;
export function bootId(): string | null {
  if (cachedBootId === undefined) {
    try {
      cachedBootId = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || null;
    } catch {
      cachedBootId = null;
    }
  }
  return cachedBootId;
}

export function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Whether the process that wrote `rec` may still be running. Anything from another boot is dead;
 * a pid that is gone, or was reused (start time differs), is dead. `exitedPid` names an owner known
 * to be gone (the guardian's own owner, whose lifeline just closed). Where the start time cannot
 * be read (macOS, Windows) an existing pid counts as alive: callers that can check more (the system
 * proxy probes its listener) do so on top.
 */
export function ownerAlive(rec: Pick<OwnerFields, 'pid' | 'pidStartTime' | 'bootId' | 'writtenAt'>, opts: { exitedPid?: number } = {}): boolean {
  if (rec.pid === opts.exitedPid) return false;
  const boot = bootId();
  if (rec.bootId && boot && rec.bootId !== boot) return false;
  if (!rec.bootId) {
    // Records without a boot id (older versions, other systems): written before this boot means dead.
    const bootedAt = Date.now() - os.uptime() * 1000;
    if (Date.parse(rec.writtenAt) < bootedAt - 5000) return false;
  }
  if (rec.pid === process.pid) return rec.pidStartTime === processStartTime(process.pid);
  if (!pidExists(rec.pid)) return false;
  const now = processStartTime(rec.pid);
  if (rec.pidStartTime !== null && now !== null) return now === rec.pidStartTime;
  return true;
}

/**
 * Writes a record so that a reader sees either the old one or the new one, never half of one, and
 * the rename is durable before the change it announces is made (tmp + fsync + rename + fsync dir).
 */
export function writeRecord(file: string, rec: OwnerFields & object, code = 'EGUARD_WRITE'): void {
  const dir = path.dirname(file);
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const tmp = `${file}.${process.pid}.tmp`;
    const fd = fs.openSync(tmp, 'w', 0o600);
    try {
      fs.writeSync(fd, JSON.stringify(rec, null, 2) + '\n');
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
    fsyncDir(dir);
  } catch (err) {
    throw new BraidError(code, `cannot write ${file}: ${(err as Error).message}; nothing was changed`, { cause: err });
  }
}

export function removeRecord(file: string, code = 'EGUARD_WRITE'): void {
  try {
    fs.rmSync(file, { force: true });
    fsyncDir(path.dirname(file));
  } catch (err) {
    throw new BraidError(code, `cannot remove ${file}: ${(err as Error).message}`, { cause: err });
  }
}

/** Makes a rename durable; directories cannot be opened for sync on Windows. */
function fsyncDir(dir: string): void {
  if (process.platform === 'win32') return;
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    // Some filesystems refuse fsync on a directory; the rename is still atomic.
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

export interface ListedRecord {
  file: string;
  /** null when the file is not a usable record (not JSON, no kind or owner fields). */
  record: (OwnerFields & Record<string, unknown>) | null;
}

/** The record files in a guardian directory (none when it does not exist). */
export function listRecords(dir: string): ListedRecord[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const out: ListedRecord[] = [];
  for (const name of names.sort()) {
    if (!name.endsWith('.json')) continue;
    const file = path.join(dir, name);
    let record: ListedRecord['record'] = null;
    try {
      const r = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<OwnerFields>;
      if (r && typeof r.kind === 'string' && Number.isInteger(r.pid) && typeof r.writtenAt === 'string') record = r as ListedRecord['record'];
    } catch {
      /* unusable: reported as such */
    }
    out.push({ file, record });
  }
  return out;
}

/**
 * An exclusive claim on one record while it is being put back, so that a guardian and a Braid
 * starting at the same moment never restore the same thing twice. A claim whose holder died is
 * taken over. Returns a release function, or null when someone alive holds it.
 */
export function claim(file: string): (() => void) | null {
  const lock = `${file}.lock`;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = fs.openSync(lock, 'wx', 0o600);
      fs.writeSync(fd, JSON.stringify(ownedByThisProcess('lock')));
      fs.closeSync(fd);
      return () => fs.rmSync(lock, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') return null;
      let holder: OwnerFields | null = null;
      try {
        holder = JSON.parse(fs.readFileSync(lock, 'utf8')) as OwnerFields;
      } catch {
        /* half-written by a holder that died: stale */
      }
      if (holder && ownerAlive(holder)) return null;
      // Taking over a stale claim: the rename succeeds for one taker only, so two takers never
      // remove each other's fresh claim.
      const aside = `${lock}.stale-${process.pid}`;
      try {
        fs.renameSync(lock, aside);
        fs.rmSync(aside, { force: true });
      } catch {
        /* another taker moved it first: try again */
      }
    }
  }
  return null;
}
