/**
 * The paths manager's files: the record another process reads to learn whether endpoints are being
 * managed (and why not), and where the guardian keeps the endpoints this process added.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { errorCode } from '../errors';
import { guardianDir } from '../guardian/record';
import type { PathPolicy, PathsConfig, PathManagerKind } from './policy';
import { currentNetns, ENDPOINTS_KIND } from './reconcile';

/**
 * What a running manager last found, kept in the state directory so that another process (`braid
 * paths` run by the user next to `braid up` or `braid paths daemon`) can say whether endpoints are
 * being managed and, if not, why. Written at every reconcile, removed at stop.
 */
export interface ManagerRecord {
  pid: number;
  managed: boolean;
  reason: string | null;
  at: string;
  /** pathsStamp() of the policy this record's outcomes were computed for. */
  configStamp?: string;
  /** Per interface: the policy applied and what it did, in words. */
  interfaces?: Record<string, { policy: PathPolicy; note: string }>;
  manager?: PathManagerKind;
  managerNote?: string | null;
}

/** Identifies a paths policy, so that `braid paths set` knows when a running manager applied it. */
export function pathsStamp(cfg: PathsConfig): string {
  const interfaces = Object.fromEntries(Object.entries(cfg.interfaces).sort(([a], [b]) => a.localeCompare(b)));
  return crypto.createHash('sha256').update(JSON.stringify({ ...cfg, interfaces })).digest('hex').slice(0, 16);
}

/** The guardian record of the endpoints this process added, one per network namespace. */
export function endpointsRecordFile(stateDir: string): string {
  const ns = /\[(\d+)\]/.exec(currentNetns() ?? '')?.[1] ?? 'unknown';
  return path.join(guardianDir(stateDir), `${ENDPOINTS_KIND}-net${ns}.json`);
}

const managerRecordFile = (stateDir: string): string => path.join(stateDir, 'paths-manager.json');

/** The record of a manager that is still running, or null (none, or it crashed). */
export function readManagerRecord(stateDir: string): ManagerRecord | null {
  let rec: ManagerRecord;
  try {
    rec = JSON.parse(fs.readFileSync(managerRecordFile(stateDir), 'utf8')) as ManagerRecord;
  } catch {
    return null;
  }
  if (!Number.isInteger(rec.pid) || rec.pid <= 0) return null;
  try {
    process.kill(rec.pid, 0);
  } catch (err) {
    // EPERM: alive but someone else's (a root daemon seen by a user); anything else: gone.
    if (errorCode(err) !== 'EPERM') return null;
  }
  return rec;
}

/** Writes the record atomically (temporary file, then rename); best effort. */
export function writeManagerRecord(stateDir: string, rec: ManagerRecord): void {
  try {
    fs.mkdirSync(stateDir, { recursive: true });
    const file = managerRecordFile(stateDir);
    fs.writeFileSync(`${file}.${process.pid}.tmp`, JSON.stringify(rec) + '\n');
    fs.renameSync(`${file}.${process.pid}.tmp`, file);
  } catch {
    /* best effort: only `braid paths` in another process misses the explanation */
  }
}

/** At stop: no record means no manager is running. */
export function removeManagerRecord(stateDir: string): void {
  fs.rmSync(managerRecordFile(stateDir), { force: true });
}
