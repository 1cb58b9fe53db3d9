/**
 * `net.mptcp.path_manager`, the per-network-namespace choice between the kernel's in-kernel path
 * manager and a userspace one. Braid sets it to `userspace` to decide subflows per connection and
 * puts it back when it stops; it is system state like the endpoints, so it goes through the
 * guardian: the record is written before the change, and a guardian (or the next start) writes the
 * old value back if Braid dies. The choice applies to connections created after it: connections
 * already open keep the path manager they were born with.
 */
import fs from 'node:fs';
import path from 'node:path';
import { BraidError, errorCode, errorMessage } from '../errors';
import { ensureGuardian } from '../guardian/guardian';
import { guardianDir, ownedByThisProcess, ownerAlive, removeRecord, writeRecord, type OwnerFields } from '../guardian/record';
import type { GuardedRecord, Restorer } from '../guardian/restorers';
import { currentNetns } from './reconcile';

export const PM_SYSCTL_KIND = 'mptcp-path-manager';
export type PmName = 'kernel' | 'userspace';

const SYSCTL_DIR = '/proc/sys/net/mptcp';

export interface PmSysctlRecord extends OwnerFields {
  netns: string | null;
  /** what it was before Braid changed it */
  original: PmName;
  /** what Braid set */
  set: PmName;
}

/** The path manager selected for new connections here, or null when this kernel has no such choice. */
export function currentPathManager(dir = SYSCTL_DIR): PmName | null {
  try {
    const v = fs.readFileSync(path.join(dir, 'path_manager'), 'utf8').trim();
    return v === 'userspace' ? 'userspace' : v === 'kernel' ? 'kernel' : null;
  } catch {
    /* kernels before 6.15 only have pm_type */
  }
  try {
    const t = fs.readFileSync(path.join(dir, 'pm_type'), 'utf8').trim();
    return t === '1' ? 'userspace' : t === '0' ? 'kernel' : null;
  } catch {
    return null;
  }
}

/** Why the userspace path manager cannot be used here, or null when it can. */
export function userspaceUnavailable(dir = SYSCTL_DIR): string | null {
  if (currentPathManager(dir) === null) return 'this kernel has no userspace MPTCP path manager (net.mptcp.path_manager / pm_type appeared in Linux 5.19)';
  try {
    const avail = fs.readFileSync(path.join(dir, 'available_path_managers'), 'utf8').trim().split(/\s+/);
    if (!avail.includes('userspace')) return `this kernel offers only the path managers '${avail.join(' ')}'`;
  } catch {
    /* older kernels: pm_type alone, which always offers both */
  }
  return null;
}

export function writePathManager(value: PmName, dir = SYSCTL_DIR): void {
  try {
    fs.writeFileSync(path.join(dir, 'path_manager'), value);
    return;
  } catch (err) {
    if (errorCode(err) !== 'ENOENT') throw new BraidError(errorCode(err), `cannot set net.mptcp.path_manager = ${value}: ${errorMessage(err)}`, { cause: err });
  }
  try {
    fs.writeFileSync(path.join(dir, 'pm_type'), value === 'userspace' ? '1' : '0');
  } catch (err) {
    throw new BraidError(errorCode(err), `cannot set net.mptcp.pm_type = ${value === 'userspace' ? 1 : 0}: ${errorMessage(err)}`, { cause: err });
  }
}

export function pmSysctlRecordFile(stateDir: string): string {
  const ns = /\[(\d+)\]/.exec(currentNetns() ?? '')?.[1] ?? 'unknown';
  return path.join(guardianDir(stateDir), `${PM_SYSCTL_KIND}-net${ns}.json`);
}

function readRecord(file: string): PmSysctlRecord | null {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as PmSysctlRecord;
  } catch {
    return null;
  }
}

/**
 * Holds the userspace path manager for this process. `take()` records, then switches; `release()`
 * switches back (only if it is still what Braid set: an administrator's later change stands) and
 * removes the record. `guard` starts a guardian before the change (off for stand-in kernels).
 */
export class PathManagerSysctl {
  private held = false;

  constructor(private readonly file: string | null, private readonly opts: { guard?: boolean; dir?: string } = {}) {}

  get holding(): boolean {
    return this.held;
  }

  /**
   * Makes `userspace` the path manager for new connections. Throws EBUSY when another live Braid
   * holds it, EEXIST when something else already selected it (mptcpd, an administrator: that
   * manager then owns the connections, and Braid must not act beside it).
   */
  take(): void {
    if (this.held) return;
    const dir = this.opts.dir ?? SYSCTL_DIR;
    const why = userspaceUnavailable(dir);
    if (why) throw new BraidError('ENOTSUP', why);
    const rec = this.file ? readRecord(this.file) : null;
    const current = currentPathManager(dir);
    if (current === 'userspace') {
      if (rec && rec.pid !== process.pid && rec.netns === currentNetns() && ownerAlive(rec)) {
        throw new BraidError('EBUSY', `another Braid (pid ${rec.pid}) is this network namespace's MPTCP path manager`);
      }
      if (!rec || rec.netns !== currentNetns()) {
        throw new BraidError('EEXIST', 'net.mptcp.path_manager is already userspace, set by another program (mptcpd?) or an administrator; Braid leaves subflows to it');
      }
      // Our own record (a previous Braid here that died, not yet restored): adopt it.
      this.held = true;
      this.save(rec.original);
      return;
    }
    if (current === null) throw new BraidError('ENOTSUP', 'cannot read net.mptcp.path_manager');
    // Recorded before the change: a crash right after it is put back by the guardian.
    if (this.file && this.opts.guard) ensureGuardian(path.dirname(this.file));
    this.save(current);
    try {
      writePathManager('userspace', dir);
    } catch (err) {
      if (this.file) removeRecord(this.file);
      throw err;
    }
    this.held = true;
  }

  /** false when someone else changed the setting since we took it; null when we do not hold it. */
  stillOurs(): boolean | null {
    if (!this.held) return null;
    return currentPathManager(this.opts.dir ?? SYSCTL_DIR) === 'userspace';
  }

  /** Lets go without writing anything back (someone else already changed it). */
  forget(): void {
    this.held = false;
    if (this.file) removeRecord(this.file);
  }

  release(): void {
    if (!this.held) return;
    this.held = false;
    const rec = this.file ? readRecord(this.file) : null;
    const dir = this.opts.dir ?? SYSCTL_DIR;
    try {
      if (currentPathManager(dir) === 'userspace') writePathManager(rec?.original ?? 'kernel', dir);
    } finally {
      if (this.file) removeRecord(this.file);
    }
  }

  private save(original: PmName): void {
    if (!this.file) return;
    const rec: PmSysctlRecord = { ...ownedByThisProcess(PM_SYSCTL_KIND), netns: currentNetns(), original, set: 'userspace' };
    writeRecord(this.file, rec);
  }
}

export function describePmSysctl(rec: Pick<PmSysctlRecord, 'original' | 'set'>): string {
  return `MPTCP path manager ${rec.original} → ${rec.set} (Braid opens each connection's subflows; net.mptcp.path_manager)`;
}

export const pmSysctlRestorer: Restorer = {
  describe: (rec: GuardedRecord) => [describePmSysctl(rec as unknown as PmSysctlRecord)],
  applicable: (rec: GuardedRecord) => (rec as unknown as PmSysctlRecord).netns === currentNetns(),
  async restore(file: string, rec: GuardedRecord): Promise<string> {
    const r = rec as unknown as PmSysctlRecord;
    const now = currentPathManager();
    if (now === r.set) writePathManager(r.original);
    removeRecord(file);
    return now === r.set ? `net.mptcp.path_manager is ${r.original} again` : `net.mptcp.path_manager was already changed to ${now ?? 'unknown'} meanwhile; left as it is`;
  },
};

/**
 * Whether a running Braid has made itself this namespace's path manager (userspace), by its guardian
 * record: then subflows come from Braid per connection, not from endpoints and limits.
 */
export function braidIsPathManager(stateDir: string | null): boolean {
  if (!stateDir) return false;
  /* eslint-disable-next-line @typescript-eslint/no-require-imports */
  const { guardianDir, listRecords, ownerAlive } = require('../guardian/record') as typeof import('../guardian/record');
  /* eslint-disable-next-line @typescript-eslint/no-require-imports */
  const { currentNetns } = require('./reconcile') as typeof import('./reconcile');
  return listRecords(guardianDir(stateDir)).some(({ record }) => {
    const r = record as (PmSysctlRecord & Record<string, unknown>) | null;
    return !!r && r.kind === PM_SYSCTL_KIND && r.set === 'userspace' && (r.netns === null || r.netns === currentNetns()) && ownerAlive(r);
  });
}
