/**
 * Several desktops' proxy settings driven as one backend. On KDE Plasma, KDE's own apps read
 * kioslaverc, while Firefox, Chromium and GTK apps read GNOME's gsettings keys even there; setting
 * only the first leaves half the desktop's apps outside the proxy. One composite snapshot holds each
 * part's snapshot, so the journal covers all of them with the manager unchanged.
 *
 * Each part is its own settings store, so each is judged and restored on its own:
 * - restore tries every part even when one fails, then reports the failures; the journal then
 *   stays, and the next start (or the guardian) restores again (a restore is idempotent);
 * - a part that cannot be read does not stop the others: read() marks it unreadable (it throws
 *   only when no part can be read), a restore then still writes every part back, and apply()
 *   refuses to change anything after a read that could not see every part, since what it could
 *   not see could not be put back;
 * - a part the user changed since Braid set it is left alone while the others are restored: when
 *   the manager asks stillApplied(), the parts that moved on are remembered for the restore() it
 *   makes next, the only one that can follow (a read() or apply() in between forgets them).
 * Both rely on the manager's order of calls: read, then apply or stillApplied, then restore.
 */
import { BraidError, errorCode, errorMessage } from '../errors';
import type { Json, ProxySettings, ProxySnapshot, SystemProxyBackend } from './backend';

export interface CompositeSnapshot extends ProxySnapshot {
  /** Part name -> that part's own snapshot. */
  parts: { [name: string]: ProxySnapshot };
}

export class CompositeBackend implements SystemProxyBackend {
  readonly name: string;
  /** Parts found changed by the user in the last stillApplied(); consumed by the next restore(). */
  private changedByUser: Set<string> | null = null;
  /** Parts the last read() could not read, with why. */
  private unreadable: string[] = [];

  /** Where the settings live (for the journal): the parts share one environment. */
  get env(): NodeJS.ProcessEnv | undefined {
    return this.parts[0]?.env;
  }

  constructor(private readonly parts: readonly SystemProxyBackend[]) {
    if (parts.length === 0) throw new BraidError('ESYSPROXY_SETTINGS', 'a composite system proxy backend needs at least one part');
    this.name = parts.map((p) => p.name).join('+');
  }

  /** Every part must be usable: a desktop where only some can be set gets the one that can, by detection. */
  async available(): Promise<boolean> {
    for (const p of this.parts) if (!(await p.available())) return false;
    return true;
  }

  async read(): Promise<CompositeSnapshot> {
    this.changedByUser = null;
    this.unreadable = [];
    const parts: { [name: string]: ProxySnapshot } = {};
    let firstError: unknown = null;
    for (const p of this.parts) {
      try {
        parts[p.name] = await p.read();
      } catch (err) {
        firstError ??= err;
        parts[p.name] = { [UNREADABLE]: `${errorCode(err)}: ${errorMessage(err)}` };
        this.unreadable.push(`${p.name} (${errorMessage(err)})`);
      }
    }
    if (this.unreadable.length === this.parts.length) throw firstError;
    return { parts };
  }

  /** In order; on a failure the manager restores the previous snapshot, which covers every part. */
  async apply(settings: ProxySettings): Promise<void> {
    this.changedByUser = null;
    if (this.unreadable.length > 0) {
      throw new BraidError('ESYSPROXY_UNREADABLE', `cannot read the current proxy settings of ${this.unreadable.join(', ')}, so they could not be put back later; nothing was changed`);
    }
    for (const p of this.parts) {
      try {
        await p.apply(settings);
      } catch (err) {
        throw new BraidError(errorCode(err), `${p.name}: ${errorMessage(err)}`, { cause: err });
      }
    }
  }

  async restore(snapshot: ProxySnapshot): Promise<void> {
    const parts = partsOf(snapshot);
    const skip = this.changedByUser ?? new Set<string>();
    this.changedByUser = null;
    const restored: string[] = [];
    const failed: { name: string; err: unknown }[] = [];
    for (const p of this.parts) {
      const saved = parts[p.name];
      // Unreadable when saved: then apply() refused, and this part was never changed.
      if (saved === undefined || UNREADABLE in saved || skip.has(p.name)) continue;
      try {
        await p.restore(saved);
        restored.push(p.name);
      } catch (err) {
        failed.push({ name: p.name, err });
      }
    }
    if (failed.length > 0) {
      const what = failed.map((f) => `${f.name}: ${errorMessage(f.err)}`).join('; ');
      throw new BraidError(
        failed.length === 1 ? errorCode(failed[0]!.err) : 'ESYSPROXY_RESTORE_FAILED',
        `restoring the system proxy failed for ${what}${restored.length ? ` (${restored.join(', ')} restored)` : ''}`,
        { cause: failed[0]!.err },
      );
    }
  }

  /**
   * True while any part still shows Braid's settings: those must be restored. Parts the user has
   * changed since are kept from the restore that follows.
   */
  stillApplied(current: ProxySnapshot, applied: ProxySnapshot): boolean {
    const now = partsOf(current);
    const then = partsOf(applied);
    const changed = new Set<string>();
    for (const p of this.parts) {
      const [a, b] = [now[p.name], then[p.name]];
      if (b === undefined) continue;
      // What cannot be read cannot be shown to have changed: restore it (the restore may fail and be retried).
      if (a === undefined || UNREADABLE in a || UNREADABLE in b) continue;
      if (!p.stillApplied(a, b)) changed.add(p.name);
    }
    const anyLeft = this.parts.some((p) => then[p.name] !== undefined && !changed.has(p.name));
    this.changedByUser = changed;
    return anyLeft;
  }
}

const UNREADABLE = 'unreadable';

function partsOf(snapshot: ProxySnapshot): { [name: string]: ProxySnapshot } {
  const parts: Json | undefined = snapshot.parts;
  if (!parts || typeof parts !== 'object' || Array.isArray(parts) || Object.values(parts).some((v) => !v || typeof v !== 'object' || Array.isArray(v))) {
    throw new BraidError('ESYSPROXY_BAD_SNAPSHOT', 'the saved system proxy settings are not in the expected form (a set of desktops); nothing was restored');
  }
  return parts as { [name: string]: ProxySnapshot };
}
