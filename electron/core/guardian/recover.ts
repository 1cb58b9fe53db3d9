/**
 * Putting back what a dead Braid left changed. The guardian process runs this for its own owner
 * the moment that owner dies; every start of Braid runs it for whatever no guardian could finish
 * (the guardian was killed too, the machine lost power), and reports what guardians did since.
 */
import fs from 'node:fs';
import path from 'node:path';
import { errorMessage } from '../errors';
import type { Logger } from '../proxy/session';
import { claim, guardianDir, listRecords, ownerAlive } from './record';
import { restorerFor, type RestoreContext } from './restorers';

export interface Recovery {
  kind: string;
  /** The process that made the change and did not undo it. */
  pid: number;
  /** What was done, in one line. */
  message: string;
  /** 'guardian': done by the guardian when its owner died (reported at the next start); 'start': done just now. */
  by: 'guardian' | 'start';
  at: string;
  ok: boolean;
}

export const NOTES_FILE = 'notes.jsonl';
/** Where versions before the guardian kept the system proxy journal. */
const LEGACY_SYSPROXY_JOURNAL = 'system-proxy-journal.json';

export interface RecoverOptions {
  log: Pick<Logger, 'info' | 'warn'>;
  /** Only records of this owner (the guardian restores its own owner's, nobody else's). */
  onlyPid?: number;
  /** An owner known to be gone. */
  exitedPid?: number;
  systemProxyBackend?: RestoreContext['systemProxyBackend'];
}

/**
 * Restores every record whose owner is dead and returns what happened, including what guardians
 * did since the last start (each reported once). Never throws: a failure is a Recovery with ok false,
 * and its record stays for the next attempt.
 */
export async function recoverLeftovers(stateDir: string, opts: RecoverOptions): Promise<Recovery[]> {
  const dir = guardianDir(stateDir);
  const out: Recovery[] = opts.onlyPid === undefined ? takeNotes(dir) : [];
  if (opts.onlyPid === undefined) adoptLegacyJournal(stateDir, dir);
  for (const { file, record } of listRecords(dir)) {
    if (!record) {
      const aside = `${file}.bad-${Date.now()}`;
      try {
        fs.renameSync(file, aside);
      } catch {
        /* reported below either way */
      }
      opts.log.warn(`guardian: ${file} is not a usable record; moved to ${aside}. Check what it describes by hand.`);
      continue;
    }
    if (opts.onlyPid !== undefined && record.pid !== opts.onlyPid) continue;
    if (ownerAlive(record, { exitedPid: opts.exitedPid })) continue;
    const restorer = restorerFor(record.kind);
    const base = { kind: record.kind, pid: record.pid, by: 'start' as const, at: new Date().toISOString() };
    if (!restorer) {
      out.push({ ...base, ok: false, message: `${file}: unknown kind '${record.kind}' (written by a newer Braid?); left in place` });
      continue;
    }
    if (restorer.applicable && !restorer.applicable(record)) continue;
    const release = claim(file);
    if (!release) continue; // someone alive is restoring it right now
    try {
      // Re-read under the claim: the owner, or another restorer, may have finished meanwhile.
      if (!fs.existsSync(file)) continue;
      const message = await restorer.restore(file, record, { exitedPid: opts.exitedPid ?? record.pid, log: opts.log, systemProxyBackend: opts.systemProxyBackend });
      out.push({ ...base, ok: true, message });
    } catch (err) {
      out.push({ ...base, ok: false, message: `${record.kind}: could not be put back (${errorMessage(err)}); will retry at the next start` });
    } finally {
      release();
    }
  }
  return out;
}

/** Appends what a guardian did, for the next start to report. */
export function leaveNotes(stateDir: string, recoveries: Recovery[]): void {
  if (recoveries.length === 0) return;
  const dir = guardianDir(stateDir);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  fs.appendFileSync(path.join(dir, NOTES_FILE), recoveries.map((r) => JSON.stringify({ ...r, by: 'guardian' }) + '\n').join(''), { mode: 0o600 });
}

function takeNotes(dir: string): Recovery[] {
  const file = path.join(dir, NOTES_FILE);
  const taken = `${file}.${process.pid}`;
  try {
    fs.renameSync(file, taken); // one reader gets them: each is reported once
  } catch {
    return [];
  }
  const out: Recovery[] = [];
  try {
    for (const line of fs.readFileSync(taken, 'utf8').split('\n')) {
      if (!line.trim()) continue;
      try {
        out.push(JSON.parse(line) as Recovery);
      } catch {
        /* a torn last line from a guardian killed mid-write */
      }
    }
  } finally {
    fs.rmSync(taken, { force: true });
  }
  return out;
}

function adoptLegacyJournal(stateDir: string, dir: string): void {
  const legacy = path.join(stateDir, LEGACY_SYSPROXY_JOURNAL);
  const target = path.join(dir, 'system-proxy.json');
  if (!fs.existsSync(legacy) || fs.existsSync(target)) return;
  try {
    const rec = JSON.parse(fs.readFileSync(legacy, 'utf8')) as Record<string, unknown>;
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    fs.writeFileSync(target, JSON.stringify({ kind: 'system-proxy', ...rec }, null, 2) + '\n', { mode: 0o600 });
    fs.rmSync(legacy, { force: true });
  } catch {
    /* left where it was; the record list does not include it */
  }
}

/** A recovery as one line for the user. */
export function describeRecovery(r: Recovery): string {
  const when = r.by === 'guardian' ? ` (its guardian did this at ${r.at})` : '';
  return `a previous Braid (pid ${r.pid}) ended without cleaning up${when}: ${r.message}`;
}
