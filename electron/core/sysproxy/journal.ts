/**
 * The system-proxy journal: a guardian record (../guardian/record.ts) written before Braid changes
 * anything, so that whatever happens to the process (kill -9, power cut, a crash mid-change) the
 * guardian or the next start knows what the user had and can put it back.
 */
import fs from 'node:fs';
import net from 'node:net';
import { BraidError } from '../errors';
import { ownerAlive, removeRecord, writeRecord, type OwnerFields } from '../guardian/record';
import type { ProxySettings, ProxySnapshot } from './backend';

export { pidExists, processStartTime } from '../guardian/record';

/** Inside the state directory; the guardian's directory holds every record of system changes. */
export const JOURNAL_FILE = 'guardian/system-proxy.json';
export const JOURNAL_KIND = 'system-proxy';

/**
 * applying: the user's settings are saved, Braid's may be partly written;
 * applied: Braid's settings are in place and `applied` shows how they read back;
 * restoring: the user's settings are being written back.
 * Only in `applied` can a difference from Braid's settings mean the user changed them.
 */
export type JournalPhase = 'applying' | 'applied' | 'restoring';

export interface JournalRecord extends OwnerFields {
  version: 1;
  backend: string;
  phase: JournalPhase;
  previous: ProxySnapshot;
  settings: ProxySettings;
  applied: ProxySnapshot | null;
  /** Where the settings live (settingsLocation()); absent in journals of older versions. */
  backendEnv?: Record<string, string>;
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
    (r.kind !== undefined && r.kind !== JOURNAL_KIND) ||
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
  return { ...r, kind: JOURNAL_KIND, pidStartTime: r.pidStartTime ?? null } as JournalRecord;
}

export function writeJournal(file: string, rec: JournalRecord): void {
  writeRecord(file, rec, 'ESYSPROXY_JOURNAL');
}

export function removeJournal(file: string): void {
  removeRecord(file, 'ESYSPROXY_JOURNAL');
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
 * Whether the process that wrote `rec` may still be running Braid (see ownerAlive). Where the
 * start time cannot be checked (macOS, Windows) a pid that merely exists is trusted only while
 * Braid's proxy still answers, so a reused pid cannot keep the system pointing at a dead proxy.
 */
export async function journalOwnerAlive(rec: JournalRecord, opts: { exitedPid?: number } = {}): Promise<boolean> {
  // Our pid but a journal this process does not hold (the manager asks only then): a previous
  // incarnation with a recycled pid, as in a container whose Braid is pid 1.
  if (rec.pid === process.pid) return false;
  if (!ownerAlive(rec, opts)) return false;
  if (rec.pidStartTime !== null) return true;
  return probeListening(rec.settings.host, rec.settings.port);
}
