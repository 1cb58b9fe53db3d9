/**
 * Launch at login. macOS and Windows have it built in (Electron's app.setLoginItemSettings); Linux
 * desktops follow the XDG autostart spec: a .desktop file in ~/.config/autostart, written here.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const HIDDEN_FLAG = '--hidden';

export function linuxAutostartFile(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(env.XDG_CONFIG_HOME || path.join(os.homedir(), '.config'), 'autostart', 'braid.desktop');
}

/**
 * One Exec= argument as the Desktop Entry spec wants it: quoted when it holds reserved characters,
 * with `"` `` ` `` `$` `\` backslash-escaped inside the quotes, then every backslash doubled again by
 * the string-value escaping that is applied first when the file is read; `%` doubled (field codes).
 */
export function quoteExecArg(arg: string): string {
  const plain = arg !== '' && !/[\s"'\\><~|&;$*?#()`=%]/.test(arg);
  const quoted = plain ? arg : `"${arg.replace(/(["`$\\])/g, '\\$1')}"`;
  return quoted.replace(/\\/g, '\\\\').replace(/%/g, '%%');
}

export function linuxAutostartEntry(exec: string, args: string[] = [HIDDEN_FLAG]): string {
  return [
    '[Desktop Entry]',
    'Type=Application',
    'Name=Braid',
    'Comment=Multipath proxy: one connection over every network link you have',
    `Exec=${[exec, ...args].map(quoteExecArg).join(' ')}`,
    'Icon=braid',
    'Terminal=false',
    'Categories=Network;',
    'X-GNOME-Autostart-enabled=true',
    '',
  ].join('\n');
}

/**
 * What to start at login: the AppImage itself when running from one (its mount point changes on
 * every run), otherwise the executable, plus the app path when running unpackaged (`electron .`).
 */
export function launchCommand(opts: { execPath: string; appPath: string; packaged: boolean; env?: NodeJS.ProcessEnv }): { exec: string; args: string[] } {
  const env = opts.env ?? process.env;
  if (env.APPIMAGE) return { exec: env.APPIMAGE, args: [HIDDEN_FLAG] };
  return opts.packaged ? { exec: opts.execPath, args: [HIDDEN_FLAG] } : { exec: opts.execPath, args: [opts.appPath, HIDDEN_FLAG] };
}

export function setLinuxAutostart(enabled: boolean, cmd: { exec: string; args: string[] }, file = linuxAutostartFile()): void {
  if (!enabled) {
    fs.rmSync(file, { force: true });
    return;
  }
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, linuxAutostartEntry(cmd.exec, cmd.args));
}

export function linuxAutostartEnabled(file = linuxAutostartFile()): boolean {
  return fs.existsSync(file);
}
