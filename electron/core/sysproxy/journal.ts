/**
 * The system-proxy journal: written before Braid changes anything, so that whatever happens to the
 * process (kill -9, power cut, a crash mid-change) the next start knows what the user had and can
 * put it back. Written atomically (tmp + fsync + rename + fsync of the directory) so a reader sees
 * either the old record or the new one, never half of one.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { BraidError } from '../errors';
import type { ProxySettings, ProxySnapshot } from './backend';

export const JOURNAL_FILE = 'system-proxy-journal.json';

/**
 * applying: the user's settings are saved, Braid's may be partly written;
 * applied: Braid's settings are in place and `applied` shows how they read back;
 * restoring: the user's settings are being written back.
 * Only in `applied` can a difference from Braid's settings mean the user changed them.
 */
export type JournalPhase = 'applying' | 'applied' | 'restoring';

export interface JournalRecord {
  version: 1;
  backend: string;
  phase: JournalPhase;
  pid: number;
  /** Kernel start time of `pid` (Linux), to tell a reused pid from the owner; null elsewhere. */
  pidStartTime: string | null;
  writtenAt: string;
  previous: ProxySnapshot;
  settings: ProxySettings;
  applied: ProxySnapshot | null;
}

export function readJournal(file: string): JournalRecord | null {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new BraidError('ESYSPROXY_JOURNAL', `cannot read the system proxy journal ${file}: ${(err as Error).message}`, { cause: err });
  }
  let rec: unknown;
  try {
    rec = JSON.parse(text);
  } catch (err) {
    throw new BraidError('ESYSPROXY_BAD_JOURNAL', `the system proxy journal ${file} is not valid JSON`, { cause: err });
  }
  const r = rec as Partial<JournalRecord>;
  if (
    !r ||
    typeof r !== 'object' ||
    r.version !== 1 ||
    typeof r.backend !== 'string' ||
    !['applying', 'applied', 'restoring'].includes(r.phase as string) ||
    !Number.isInteger(r.pid) ||
    typeof r.writtenAt !== 'string' ||
    !r.previous ||
    typeof r.previous !== 'object' ||
    !r.settings ||
    typeof r.settings !== 'object'
  ) {
    throw new BraidError('ESYSPROXY_BAD_JOURNAL', `the system proxy journal ${file} is missing fields or has the wrong version`);
  }
  return r as JournalRecord;
}

export function writeJournal(file: string, rec: JournalRecord): void {
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
    throw new BraidError('ESYSPROXY_JOURNAL', `cannot write the system proxy journal ${file}: ${(err as Error).message}; the system proxy was left unchanged`, { cause: err });
  }
}

export function removeJournal(file: string): void {
  try {
    fs.rmSync(file, { force: true });
    fsyncDir(path.dirname(file));
  } catch (err) {
    throw new BraidError('ESYSPROXY_JOURNAL', `cannot remove the system proxy journal ${file}: ${(err as Error).message}`, { cause: err });
  }
}

/** Makes the rename itself durable; directories cannot be opened for sync on Windows. */
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

export function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Whether something accepts connections at Braid's address (bounded). */
export function probeListening(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      s.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/**
 * Whether the process that wrote `rec` may still be running Braid. Anything written before this
 * boot is dead; a pid that is gone or was reused (start time differs) is dead. Where the start
 * time cannot be checked (macOS, Windows) a pid that merely exists is trusted only while Braid's
 * proxy still answers, so a reused pid cannot keep the system pointing at a dead proxy.
 */
export async function journalOwnerAlive(rec: JournalRecord, opts: { exitedPid?: number } = {}): Promise<boolean> {
  if (rec.pid === opts.exitedPid) return false;
  const bootedAt = Date.now() - os.uptime() * 1000;
  if (Date.parse(rec.writtenAt) < bootedAt - 5000) return false;
  if (rec.pid === process.pid) return false; // our pid but not our journal: a previous incarnation
  if (!pidExists(rec.pid)) return false;
  const now = processStartTime(rec.pid);
  if (rec.pidStartTime !== null && now !== null) return now === rec.pidStartTime;
  return probeListening(rec.settings.host, rec.settings.port);
}
