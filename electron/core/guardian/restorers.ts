/**
 * What each kind of guarded system state is, in words, and how it is put back once its owner is
 * gone. A new kind of system change (firewall table, routes) adds one entry here and one small
 * module next to the code that makes the change; the guardian process, the recovery at start and
 * the "what Braid changed" list in `braid status` then cover it with no further work.
 *
 * Modules are required lazily: the guardian process loads only the kinds it finds, and the kinds'
 * own modules import the record helpers without an import cycle.
 */
import type { Logger } from '../proxy/session';
import type { SystemProxyBackend } from '../sysproxy/backend';
import { listRecords, ownerAlive, type OwnerFields } from './record';

export type GuardedRecord = OwnerFields & Record<string, unknown>;

export interface RestoreContext {
  /** The owner known to be gone (the guardian's own owner), even if its pid was reused meanwhile. */
  exitedPid?: number;
  log: Pick<Logger, 'info' | 'warn'>;
  /** The system-proxy backend to restore with, when the caller has one (the desktop runtime's); else by the record's name. */
  systemProxyBackend?: (name: string) => SystemProxyBackend;
}

export interface Restorer {
  /** One line per change the record stands for, for the user ("MPTCP endpoint 10.0.0.2 on wlan0"). */
  describe(rec: GuardedRecord): string[];
  /**
   * False when this process cannot restore it (e.g. the change was made in another network
   * namespace); the record is then left for a process that can.
   */
  applicable?(rec: GuardedRecord): boolean;
  /**
   * Puts the state back and removes the record; resolves with a one-line summary of what was done.
   * Throws when it could not: the record stays, and the next start tries again.
   */
  restore(file: string, rec: GuardedRecord, ctx: RestoreContext): Promise<string>;
}

/* eslint-disable @typescript-eslint/no-require-imports */
const KINDS: Record<string, () => Restorer> = {
  'system-proxy': () => (require('../sysproxy/restorer') as typeof import('../sysproxy/restorer')).systemProxyRestorer,
  'mptcp-endpoints': () => (require('../paths/restorer') as typeof import('../paths/restorer')).endpointsRestorer,
  'mptcp-path-manager': () => (require('../paths/pm-sysctl') as typeof import('../paths/pm-sysctl')).pmSysctlRestorer,
  'nft-table': () => (require('../transparent/restorer') as typeof import('../transparent/restorer')).nftRestorer,
};
/* eslint-enable @typescript-eslint/no-require-imports */

export function restorerFor(kind: string): Restorer | null {
  const load = Object.prototype.hasOwnProperty.call(KINDS, kind) ? KINDS[kind] : undefined;
  return load ? load() : null;
}

export interface SystemChange {
  kind: string;
  /** In words, e.g. "MPTCP endpoint 10.0.0.2 on wlan0 (id 3, subflow)". */
  description: string;
  /** The Braid process that made it (this one, or e.g. a `braid paths daemon`). */
  pid: number;
}

/**
 * What Braid processes that are still running have changed on this system, from their records:
 * the list `braid up` prints at start and `braid status` shows. Each is put back on exit.
 */
export function describeLiveChanges(dir: string): SystemChange[] {
  const out: SystemChange[] = [];
  for (const { record } of listRecords(dir)) {
    if (!record || !ownerAlive(record)) continue;
    const restorer = restorerFor(record.kind);
    for (const description of restorer ? restorer.describe(record) : [`${record.kind} (unknown kind)`]) out.push({ kind: record.kind, description, pid: record.pid });
  }
  return out;
}
