/**
 * The desktop app's own settings (window, tray, login, what to resume), kept in `desktop.json` next
 * to the config file. They are not part of BraidConfig: the headless CLI has no use for them, and a
 * bad value here must never stop the proxy from starting, so unknown or invalid fields fall back
 * to their defaults with a warning instead of failing.
 */
import fs from 'node:fs';
import path from 'node:path';
import { defaultConfigFile } from '../config/locations';
import { errorMessage } from '../errors';

export interface DesktopSettings {
  /** Start in the tray without opening the window (also `--hidden`). */
  startHidden: boolean;
  /** Start Braid when the user logs in (hidden). */
  launchAtLogin: boolean;
  /** Start the proxy when the app starts; follows the last choice made with the toggle. */
  proxyOnLaunch: boolean;
  /** Set the system proxy when the app starts; follows the last choice made with the toggle. */
  systemProxyOnLaunch: boolean;
  /** A notification when a path goes down or comes back. */
  notifications: boolean;
}

export function defaultDesktopSettings(): DesktopSettings {
  return { startHidden: false, launchAtLogin: false, proxyOnLaunch: true, systemProxyOnLaunch: false, notifications: true };
}

export function desktopSettingsFile(env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform): string {
  return path.join(path.dirname(defaultConfigFile(env, platform)), 'desktop.json');
}

/** Parsed settings plus what was wrong with the input (for a warning). */
export function parseDesktopSettings(input: unknown): { settings: DesktopSettings; problems: string[] } {
  const settings = defaultDesktopSettings();
  const problems: string[] = [];
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    return { settings, problems: ['desktop settings must be a JSON object; using the defaults'] };
  }
  for (const [k, v] of Object.entries(input as Record<string, unknown>)) {
    if (!Object.prototype.hasOwnProperty.call(settings, k)) {
      problems.push(`desktop setting '${k}' is not a known setting (known: ${Object.keys(settings).join(', ')})`);
    } else if (typeof v !== 'boolean') {
      problems.push(`desktop setting '${k}' must be true or false, got ${JSON.stringify(v)}; using ${String(settings[k as keyof DesktopSettings])}`);
    } else {
      settings[k as keyof DesktopSettings] = v;
    }
  }
  return { settings, problems };
}

export function loadDesktopSettings(file: string): { settings: DesktopSettings; problems: string[] } {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { settings: defaultDesktopSettings(), problems: [] };
    return { settings: defaultDesktopSettings(), problems: [`cannot read ${file}: ${errorMessage(err)}; using the defaults`] };
  }
  try {
    const parsed = parseDesktopSettings(JSON.parse(text));
    return { settings: parsed.settings, problems: parsed.problems.map((p) => `${file}: ${p}`) };
  } catch (err) {
    return { settings: defaultDesktopSettings(), problems: [`${file} is not valid JSON (${errorMessage(err)}); using the defaults`] };
  }
}

/** Atomic write (tmp + rename), so a crash never leaves half a file. */
export function saveDesktopSettings(file: string, settings: DesktopSettings): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(settings, null, 2) + '\n', { mode: 0o600 });
  fs.renameSync(tmp, file);
}
