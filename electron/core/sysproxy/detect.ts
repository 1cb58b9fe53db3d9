/**
 * Which backend drives this machine's system proxy. On Linux the desktop decides: KDE keeps its
 * own kioslaverc, but Firefox, Chromium and GTK apps on KDE read GNOME's keys, so KDE gets both
 * (kde+gnome; KDE's alone where gsettings is missing); GNOME and its relatives (and most others,
 * whose apps still read GNOME's keys through GIO) use gsettings.
 */
import { BraidError } from '../errors';
import type { SystemProxyBackend } from './backend';
import { CompositeBackend } from './composite';
import { GnomeBackend } from './gnome';
import { KdeBackend } from './kde';
import { MacosBackend } from './macos';
import { WindowsBackend } from './windows';

export type BackendName = 'gnome' | 'kde' | 'kde+gnome' | 'macos' | 'windows';

export interface DetectInput {
  platform: NodeJS.Platform;
  env: NodeJS.ProcessEnv;
}

/** The Linux desktop's preference before probing any tool: 'kde', 'gnome' or null (unknown). */
export function linuxDesktop(env: NodeJS.ProcessEnv): 'kde' | 'gnome' | null {
  const desktops = (env.XDG_CURRENT_DESKTOP ?? env.XDG_SESSION_DESKTOP ?? env.DESKTOP_SESSION ?? '')
    .split(':')
    .map((d) => d.trim().toLowerCase())
    .filter(Boolean);
  if (env.KDE_FULL_SESSION === 'true' || desktops.some((d) => d === 'kde' || d.startsWith('plasma'))) return 'kde';
  const gnomeLike = ['gnome', 'ubuntu', 'unity', 'cinnamon', 'x-cinnamon', 'budgie', 'budgie-desktop', 'pantheon', 'gnome-flashback', 'gnome-classic', 'mate', 'xfce', 'lxde'];
  if (desktops.some((d) => gnomeLike.includes(d))) return 'gnome';
  return null;
}

/** Candidates in order of preference; the first available one wins. */
export function backendCandidates(input: DetectInput): BackendName[] {
  if (input.platform === 'darwin') return ['macos'];
  if (input.platform === 'win32') return ['windows'];
  return linuxDesktop(input.env) === 'kde' ? ['kde+gnome', 'kde', 'gnome'] : ['gnome', 'kde'];
}

export function createBackend(name: string, env?: NodeJS.ProcessEnv): SystemProxyBackend {
  switch (name) {
    case 'gnome':
      return new GnomeBackend({ env });
    case 'kde':
      return new KdeBackend({ env });
    case 'kde+gnome':
      return new CompositeBackend([new KdeBackend({ env }), new GnomeBackend({ env })]);
    case 'macos':
      return new MacosBackend();
    case 'windows':
      return new WindowsBackend();
    default:
      throw new BraidError('ESYSPROXY_UNKNOWN_BACKEND', `unknown system proxy backend '${name}'`);
  }
}

export async function detectBackend(input: DetectInput = { platform: process.platform, env: process.env }): Promise<SystemProxyBackend> {
  const tried: string[] = [];
  for (const name of backendCandidates(input)) {
    const b = createBackend(name, input.env);
    if (await b.available()) return b;
    // A composite's parts are tried on their own next: naming it too would say nothing new.
    if (!(b instanceof CompositeBackend)) tried.push(name);
  }
  throw new BraidError(
    'ESYSPROXY_UNSUPPORTED',
    `no way to set the system proxy on this desktop (tried ${tried.join(', ')}: ` +
      (input.platform === 'linux' ? 'needs gsettings with the org.gnome.system.proxy schema, or kwriteconfig5/6' : 'its tool is not available') +
      '); point applications at the proxy by hand',
  );
}
