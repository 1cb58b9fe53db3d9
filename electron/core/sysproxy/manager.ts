/**
 * Turns the system proxy on and off without ever losing the user's own settings: the journal is
 * written before anything changes, restore puts back exactly what was there, and a restore never
 * clobbers a proxy the user chose themselves after Braid set its own.
 */
import fs from 'node:fs';
import path from 'node:path';
import { BraidError, errorMessage } from '../errors';
import { jsonEqual, settingsLocation, type ProxySettings, type ProxySnapshot, type SystemProxyBackend } from './backend';
import { createBackend } from './detect';
import { ensureGuardian } from '../guardian/guardian';
import { ownedByThisProcess } from '../guardian/record';
import { JOURNAL_FILE, JOURNAL_KIND, JournalRecord, journalOwnerAlive, readJournal, removeJournal, writeJournal } from './journal';

export interface SysproxyLog {
  info(msg: string): void;
  warn(msg: string): void;
}

export type RestoreOutcome =
  /** No journal: nothing of Braid's was in place. */
  | 'none'
  /** The user's previous settings are back. */
  | 'restored'
  /** The user changed the proxy after Braid set it; their choice was left alone. */
  | 'kept-user-settings'
  /** Another Braid that is still running owns the journal; left alone. */
  | 'owned-by-live-process'
  /** This process's own journal; only disable() undoes it. */
  | 'owned-by-this-process';

export interface ManagerOptions {
  backend: SystemProxyBackend;
  /** Directory of the journal; `journalPath` overrides the whole path. */
  stateDir?: string;
  journalPath?: string;
  log?: SysproxyLog;
  /** The backend that wrote a journal found at start (the desktop may have changed since). */
  backendFor?: (name: string) => SystemProxyBackend;
}

/** Journals this process wrote and has not finished: a pid match alone could be a previous incarnation. */
const OWNED = new Set<string>();

const SILENT: SysproxyLog = { info: () => {}, warn: () => {} };

export function validateSettings(s: ProxySettings): ProxySettings {
  const bad = (m: string): BraidError => new BraidError('ESYSPROXY_SETTINGS', m);
  if (typeof s.host !== 'string' || s.host === '' || /[\s,;'"\\]|[\x00-\x1f]/.test(s.host)) throw bad(`system proxy host must be a plain host name or address, got ${JSON.stringify(s.host)}`);
  if (s.host === '0.0.0.0' || s.host === '::' || s.host === '[::]') throw bad(`system proxy host must be an address clients can reach, not the wildcard '${s.host}'`);
  if (!Number.isInteger(s.port) || s.port < 1 || s.port > 65535) throw bad(`system proxy port must be from 1 to 65535, got ${String(s.port)}`);
  if (!Array.isArray(s.bypass)) throw bad('system proxy bypass must be a list of host names or networks');
  for (const b of s.bypass) {
    // Separators of one desktop's list syntax or another (',' KDE, ';' Windows) would split an entry.
    if (typeof b !== 'string' || b === '' || /[\s,;'"\\]|[\x00-\x1f]/.test(b)) throw bad(`system proxy bypass entry ${JSON.stringify(b)} is not a plain host name or network`);
  }
  return { host: s.host, port: s.port, bypass: [...s.bypass] };
}

export class SystemProxyManager {
  readonly backend: SystemProxyBackend;
  readonly journalPath: string;
  private readonly log: SysproxyLog;
  private readonly backendOverride: ((name: string) => SystemProxyBackend) | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(opts: ManagerOptions) {
    if (!opts.journalPath && !opts.stateDir) throw new BraidError('ESYSPROXY_SETTINGS', 'the system proxy manager needs a state directory for its journal');
    this.backend = opts.backend;
    this.journalPath = path.resolve(opts.journalPath ?? path.join(opts.stateDir!, JOURNAL_FILE));
    this.log = opts.log ?? SILENT;
    this.backendOverride = opts.backendFor;
  }

  /** The backend that writes where `rec`'s settings were applied (the journal says where they live). */
  private backendFor(rec: JournalRecord): SystemProxyBackend {
    if (this.backendOverride) return this.backendOverride(rec.backend);
    const here = settingsLocation(this.backend.env ?? process.env);
    if (rec.backend === this.backend.name && (!rec.backendEnv || jsonEqual(rec.backendEnv, here))) return this.backend;
    return createBackend(rec.backend, rec.backendEnv ? { ...process.env, ...rec.backendEnv } : this.backend.env);
  }

  /** True while this process has Braid's settings (or a half-done change) in place. */
  get active(): boolean {
    return OWNED.has(this.journalPath);
  }

  /** One change at a time: a toggle, a signal and quit can all arrive together. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => {});
    return next;
  }

  private record(phase: JournalRecord['phase'], backend: string, previous: ProxySnapshot, settings: ProxySettings, applied: ProxySnapshot | null): JournalRecord {
    const env = (backend === this.backend.name ? this.backend.env : undefined) ?? process.env;
    return { ...ownedByThisProcess(JOURNAL_KIND), version: 1, backend, phase, previous, settings, applied, backendEnv: settingsLocation(env) };
  }

  private readJournalSafe(): JournalRecord | null {
    try {
      return readJournal(this.journalPath);
    } catch (err) {
      if ((err as BraidError).code !== 'ESYSPROXY_BAD_JOURNAL') throw err;
      // Unusable, and it can never become usable: set it aside rather than block every start.
      const aside = `${this.journalPath}.bad-${Date.now()}`;
      try {
        fs.renameSync(this.journalPath, aside);
      } catch {
        // leave it; the warning below still tells the user
      }
      this.log.warn(`${errorMessage(err)}; moved to ${aside}. Check your system proxy settings by hand.`);
      return null;
    }
  }

  enable(settings: ProxySettings): Promise<void> {
    return this.serial(async () => {
      const wanted = validateSettings(settings);
      let rec = this.readJournalSafe();
      if (rec && !this.active) {
        const outcome = await this.recoverLocked(rec, {});
        if (outcome === 'owned-by-live-process') {
          throw new BraidError('ESYSPROXY_BUSY', `another Braid (pid ${rec.pid}) has set the system proxy; stop it first or turn its system proxy off`);
        }
        rec = null;
      }
      if (rec && rec.backend !== this.backend.name) {
        // Ours but from another backend (cannot happen within one session): undo it first.
        await this.finishLocked(rec, this.backendFor(rec));
        rec = null;
      }

      let previous: ProxySnapshot;
      if (rec) {
        // Enabling again must not save Braid's own settings as "the user's".
        const current = await this.backend.read();
        if (rec.phase === 'applied' && rec.applied && !this.backend.stillApplied(current, rec.applied)) {
          this.log.info('system proxy: the settings were changed outside Braid since it set them; those become the ones to restore');
          previous = current;
        } else {
          previous = rec.previous;
        }
      } else {
        previous = await this.backend.read();
      }

      // The guardian watches before anything changes: from here on, any death of this process is undone.
      ensureGuardian(path.dirname(this.journalPath), this.log);
      writeJournal(this.journalPath, this.record('applying', this.backend.name, previous, wanted, null));
      OWNED.add(this.journalPath);
      try {
        await this.backend.apply(wanted);
      } catch (err) {
        await this.undoFailedApply(previous, err);
      }
      const applied = await this.backend.read();
      writeJournal(this.journalPath, this.record('applied', this.backend.name, previous, wanted, applied));
      this.log.info(`system proxy (${this.backend.name}) now points at ${wanted.host}:${wanted.port}`);
    });
  }

  private async undoFailedApply(previous: ProxySnapshot, err: unknown): Promise<never> {
    try {
      await this.backend.restore(previous);
      removeJournal(this.journalPath);
      OWNED.delete(this.journalPath);
    } catch (restoreErr) {
      throw new BraidError(
        'ESYSPROXY_APPLY',
        `setting the system proxy failed (${errorMessage(err)}) and putting the previous settings back failed too (${errorMessage(restoreErr)}); Braid will retry at its next start`,
        { cause: err },
      );
    }
    throw new BraidError('ESYSPROXY_APPLY', `setting the system proxy failed, previous settings kept: ${errorMessage(err)}`, { cause: err });
  }

  /** Toggle-off and quit: puts back what the user had, unless they have changed it since. */
  disable(): Promise<RestoreOutcome> {
    return this.serial(async () => {
      const rec = this.readJournalSafe();
      if (!rec) {
        OWNED.delete(this.journalPath);
        return 'none';
      }
      if (!this.active) return this.recoverLocked(rec, {});
      return this.finishLocked(rec, this.backendFor(rec));
    });
  }

  /**
   * At every start: a journal left by a Braid that is no longer running means its settings may
   * still point at a dead proxy. `exitedPid` names an owner known to be exiting (the exit hook).
   */
  recoverAfterCrash(opts: { exitedPid?: number } = {}): Promise<RestoreOutcome> {
    return this.serial(async () => {
      const rec = this.readJournalSafe();
      if (!rec) return 'none';
      if (this.active && rec.pid === process.pid) return 'owned-by-this-process';
      return this.recoverLocked(rec, opts);
    });
  }

  private async recoverLocked(rec: JournalRecord, opts: { exitedPid?: number }): Promise<RestoreOutcome> {
    if (await journalOwnerAlive(rec, opts)) {
      this.log.info(`system proxy: Braid pid ${rec.pid} is still running and owns ${this.journalPath}; leaving it alone`);
      return 'owned-by-live-process';
    }
    this.log.info(`system proxy: found a journal from Braid pid ${rec.pid} (${rec.phase} at ${rec.writtenAt}) that did not finish; recovering`);
    return this.finishLocked(rec, this.backendFor(rec));
  }

  /** Writes the user's settings back (marking the journal first), or drops the journal if they moved on. */
  private async finishLocked(rec: JournalRecord, backend: SystemProxyBackend): Promise<RestoreOutcome> {
    // Mid-apply or mid-restore the settings are half Braid's by construction: restore whatever they read.
    if (rec.phase === 'applied' && rec.applied) {
      const current = await backend.read();
      if (!backend.stillApplied(current, rec.applied)) {
        removeJournal(this.journalPath);
        OWNED.delete(this.journalPath);
        this.log.warn(`system proxy (${backend.name}): the settings were changed outside Braid after it set them; leaving the user's choice in place`);
        return 'kept-user-settings';
      }
    }
    ensureGuardian(path.dirname(this.journalPath), this.log);
    writeJournal(this.journalPath, { ...rec, ...ownedByThisProcess(JOURNAL_KIND), phase: 'restoring' });
    OWNED.add(this.journalPath);
    await backend.restore(rec.previous);
    removeJournal(this.journalPath);
    OWNED.delete(this.journalPath);
    this.log.info(`system proxy (${backend.name}): previous settings restored`);
    return 'restored';
  }
}
