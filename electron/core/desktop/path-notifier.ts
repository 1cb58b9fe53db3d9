/**
 * Desktop notifications when a path goes down or comes back, as a pure diff of two snapshots of the
 * paths. A path is usable when its interface is up and has an address; interfaces whose policy is
 * `off` are not Braid's paths and never notify (container bridges and VPN tunnels come and go).
 */
import type { InterfaceView, PathsView } from '../contract';

export interface PathNotification {
  title: string;
  body: string;
  /** The interface it is about, and which way it went (for grouping and tests). */
  interface: string;
  change: 'down' | 'up' | 'demoted' | 'restored';
}

function usable(i: InterfaceView | undefined): boolean {
  return !!i && i.up && i.addresses.length > 0;
}

function counts(i: InterfaceView | undefined): boolean {
  return !!i && i.policy !== 'off';
}

function describe(i: InterfaceView): string {
  if (i.kind === 'wifi') return i.ssid ? `Wi-Fi “${i.ssid}”` : 'Wi-Fi';
  if (i.kind === 'cellular') return 'cellular';
  if (i.kind === 'ethernet') return 'Ethernet';
  return 'network';
}

function others(next: PathsView, except: string): string[] {
  return next.interfaces.filter((i) => i.name !== except && counts(i) && usable(i)).map((i) => i.name);
}

/** What changed between `prev` and `next`; nothing for the first snapshot (prev null). */
export function pathNotifications(prev: PathsView | null, next: PathsView): PathNotification[] {
  if (!prev) return [];
  const before = new Map(prev.interfaces.map((i) => [i.name, i]));
  const after = new Map(next.interfaces.map((i) => [i.name, i]));
  const out: PathNotification[] = [];
  const names = [...new Set([...before.keys(), ...after.keys()])].sort();
  for (const name of names) {
    const a = before.get(name);
    const b = after.get(name);
    if (!counts(a) && !counts(b)) continue;
    if (usable(a) && !usable(b)) {
      const rest = others(next, name);
      out.push({
        interface: name,
        change: 'down',
        title: `${name} is down`,
        body: `${a ? describe(a) : 'network'} path lost. ` + (rest.length ? `Traffic continues over ${rest.join(', ')}.` : 'No other path is available.'),
      });
    } else if (!usable(a) && usable(b) && counts(b)) {
      const addr = b!.addresses.find((x) => x.family === 4) ?? b!.addresses[0];
      const role = b!.policy === 'backup' ? ' as a backup path' : b!.policy === 'secondary' ? ' as a secondary path' : '';
      out.push({
        interface: name,
        change: 'up',
        // "back" for a path Braid knew; a newly plugged-in one (USB tethering) is simply "up".
        title: a ? `${name} is back` : `${name} is up`,
        body: `${describe(b!)} (${addr.address}) is available again${role}.`,
      });
    }
    const n = demotionNotice(a, b, next);
    if (n) out.push(n);
  }
  return out;
}

const SOURCE_TEXT: Record<string, string> = { cap: 'data cap', quality: 'poor quality' };

/**
 * A path lowered or given back by Braid itself (paths/effective.ts): its data cap reached or a new
 * period begun, its quality collapsed or recovered. The user's own policy changes say nothing.
 */
function demotionNotice(a: InterfaceView | undefined, b: InterfaceView | undefined, next: PathsView): PathNotification | null {
  if (!a || !b) return null;
  const before = a.demotion?.source ?? null;
  const after = b.demotion?.source ?? null;
  if (before === after) return null;
  if (after && b.demotion) {
    const rest = others(next, b.name).filter((n) => next.interfaces.find((i) => i.name === n)?.effective === 'use');
    return {
      interface: b.name,
      change: 'demoted',
      title: after === 'cap' ? `${b.name} reached its data cap` : `${b.name} ${b.effective === 'off' ? 'is off' : 'is backup only'}: ${SOURCE_TEXT[after] ?? after}`,
      body: `${b.demotion.reason}.${rest.length ? ` Traffic continues over ${rest.join(', ')}.` : ''}`,
    };
  }
  return {
    interface: b.name,
    change: 'restored',
    title: before === 'cap' ? `${b.name}: a new data period began` : `${b.name} is back in use`,
    body: before === 'cap' ? `${b.name} carries traffic again under its ${b.policy} policy.` : `${b.name} carries traffic again; Braid keeps measuring its quality.`,
  };
}

/** Keeps the previous snapshot so the caller only hands in each new one. */
export class PathNotifier {
  private last: PathsView | null = null;

  constructor(initial: PathsView | null = null) {
    this.last = initial;
  }

  update(next: PathsView): PathNotification[] {
    const out = pathNotifications(this.last, next);
    this.last = next;
    return out;
  }
}
