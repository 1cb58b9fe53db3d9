/**
 * Electron's main process: Braid's core in-process (electron/core/desktop/runtime.ts, the same
 * pieces `braid up` runs), the window, the tray, IPC and notifications. Everything with logic in it
 * lives in electron/core/desktop and is tested there; this file wires Electron to it.
 */
import path from 'node:path';
import { app, BrowserWindow, dialog, ipcMain, Notification, powerMonitor, type IpcMainInvokeEvent } from 'electron';
import { defaultConfigFile, defaultStateDir } from '../core/config/locations';
import { EVENT_NAMES, IPC, type EventName } from '../core/contract';
import { errorBody } from '../core/control/handlers';
import { dispatch } from '../core/control/server';
import { errorCode, errorMessage } from '../core/errors';
import type { Logger } from '../core/proxy/session';
import { HIDDEN_FLAG, launchCommand, linuxAutostartEnabled, setLinuxAutostart } from '../core/desktop/autostart';
import { PathNotifier } from '../core/desktop/path-notifier';
import { startDesktopRuntime, type DesktopRuntime } from '../core/desktop/runtime';
import { isAppUrl } from '../core/desktop/security';
import { enableGuardian } from '../core/guardian/guardian';
import { defaultDesktopSettings, desktopSettingsFile, loadDesktopSettings, saveDesktopSettings, type DesktopSettings } from '../core/desktop/settings';
import type { MenuAction } from '../core/desktop/tray-model';
import { BraidTray } from './tray';
import { createMainWindow, denyPermissions, handleAppProtocol, hardenWebContents, registerAppScheme } from './window';

const verbose = process.argv.includes('--verbose') || process.env.BRAID_VERBOSE === '1';
const log: Logger = {
  info: (m) => void (verbose && process.stderr.write(`braid: ${m}\n`)),
  warn: (m) => void process.stderr.write(`braid: warning: ${m}\n`),
  debug: (m) => void (verbose && process.stderr.write(`braid: debug: ${m}\n`)),
};

let runtime: DesktopRuntime | null = null;
let tray: BraidTray | null = null;
let win: BrowserWindow | null = null;
let settings: DesktopSettings = defaultDesktopSettings();
const settingsFile = desktopSettingsFile();
let quitting: Promise<void> | null = null;

const appRoot = (): string => app.getAppPath();
const iconDir = (): string => (app.isPackaged ? path.join(process.resourcesPath, 'icons') : path.join(appRoot(), 'build', 'icons'));

function showWindow(): void {
  if (quitting) return;
  if (!win || win.isDestroyed()) {
    win = createMainWindow({ preload: path.join(__dirname, 'preload.js'), icon: path.join(iconDir(), '512x512.png') });
    win.on('closed', () => (win = null));
  } else {
    if (win.isMinimized()) win.restore();
    win.show();
    win.focus();
  }
}

function notify(title: string, body: string): void {
  if (!settings.notifications || !Notification.isSupported()) return;
  new Notification({ title, body, silent: true, icon: path.join(iconDir(), '256x256.png') }).show();
}

function launchAtLogin(): boolean | null {
  if (process.platform === 'linux') return linuxAutostartEnabled();
  if (process.platform === 'darwin' || process.platform === 'win32') return app.getLoginItemSettings().openAtLogin;
  return null;
}

function setLaunchAtLogin(on: boolean): void {
  if (process.platform === 'linux') {
    setLinuxAutostart(on, launchCommand({ execPath: process.execPath, appPath: appRoot(), packaged: app.isPackaged }));
  } else {
    app.setLoginItemSettings({ openAtLogin: on, args: [HIDDEN_FLAG] });
  }
  saveSettings({ launchAtLogin: on });
}

function saveSettings(change: Partial<DesktopSettings>): void {
  settings = { ...settings, ...change };
  try {
    saveDesktopSettings(settingsFile, settings);
  } catch (err) {
    log.warn(`cannot save ${settingsFile}: ${errorMessage(err)}`);
  }
}

/** The IPC peer must be our own page (app://braid), the main frame of our window. */
function trustedSender(event: IpcMainInvokeEvent): boolean {
  const frame = event.senderFrame;
  return !!frame && !!win && !win.isDestroyed() && event.sender === win.webContents && frame === win.webContents.mainFrame && isAppUrl(frame.url);
}

function runTrayAction(action: MenuAction): void {
  const rt = runtime;
  if (!rt) return;
  if (action === 'quit') return void quit(0);
  if (action === 'open-window') return showWindow();
  if ('setting' in action) {
    try {
      setLaunchAtLogin(action.value);
    } catch (err) {
      notify('Braid: launch at login', errorMessage(err));
    }
    return tray?.update(true);
  }
  tray?.update(true);
  dispatch(rt.core.handlers, action.command, action.params).then(
    () => tray?.update(true),
    (err) => {
      tray?.update(true);
      notify('Braid', errorMessage(err));
    },
  );
}

/** Restore the system proxy first, then stop the service, then exit; bounded. */
function quit(code: number): Promise<void> {
  quitting ??= (async () => {
    const force = setTimeout(() => app.exit(code || 1), 20_000);
    try {
      const r = await runtime?.shutdown();
      if (r && !r.systemProxyRestored) code = code || 1;
    } catch (err) {
      log.warn(`shutting down: ${errorMessage(err)}`);
    }
    clearTimeout(force);
    tray?.destroy();
    app.exit(code);
  })();
  return quitting;
}

async function start(): Promise<void> {
  const loaded = loadDesktopSettings(settingsFile);
  settings = loaded.settings;
  for (const p of loaded.problems) log.warn(p);

  handleAppProtocol(path.join(appRoot(), 'renderer', 'dist'));
  denyPermissions();

  const configFile = defaultConfigFile();
  try {
    // The app is a Braid process: a guardian puts back what it changes if it dies.
    enableGuardian();
    runtime = await startDesktopRuntime({ configFile, stateDir: defaultStateDir(), log, settings, restoreHooks: true });
  } catch (err) {
    const where = errorCode(err) === 'ECONFIG' ? `\n\nConfig file: ${configFile}` : '';
    dialog.showErrorBox('Braid cannot start', `${errorMessage(err)}${where}`);
    app.exit(2);
    return;
  }
  const rt = runtime;

  ipcMain.handle(IPC.call, async (event, command: unknown, params: unknown) => {
    if (!trustedSender(event)) {
      log.warn(`IPC call from an untrusted frame refused (${event.senderFrame?.url ?? 'no frame'})`);
      return { ok: false, error: { code: 'EFORBIDDEN', message: 'not allowed from this page' } };
    }
    try {
      return { ok: true, result: await dispatch(rt.core.handlers, command, params) };
    } catch (err) {
      return { ok: false, error: errorBody(err) };
    }
  });
  for (const event of EVENT_NAMES) {
    rt.core.bus.on(event, ((data: unknown) => {
      if (win && !win.isDestroyed() && !win.webContents.isDestroyed()) win.webContents.send(IPC.event, { event: event as EventName, data });
    }) as never);
  }

  const notifier = new PathNotifier(rt.core.status().paths);
  rt.core.bus.on('paths.changed', (view) => {
    for (const n of notifier.update(view)) notify(n.title, n.body);
  });
  rt.controller.on('chosen', (s) => saveSettings({ proxyOnLaunch: s.proxy, systemProxyOnLaunch: s.systemProxy }));
  rt.controller.on('busy', () => tray?.update(true));

  tray = new BraidTray({
    iconDir: iconDir(),
    bus: rt.core.bus,
    status: () => rt.core.status(),
    options: () => ({ launchAtLogin: launchAtLogin(), busy: rt.controller.busy }),
    run: runTrayAction,
    onClick: showWindow,
  });

  for (const p of rt.problems) {
    log.warn(p);
    notify('Braid', p);
  }
  const atLogin = process.platform === 'darwin' && app.getLoginItemSettings().wasOpenedAtLogin;
  if (!(process.argv.includes(HIDDEN_FLAG) || settings.startHidden || atLogin)) showWindow();
}

// Before ready: the scheme must be privileged before any page loads.
registerAppScheme();

if (!app.requestSingleInstanceLock()) {
  // Another Braid runs: it shows its window (second-instance) and this one leaves.
  app.exit(0);
} else {
  app.on('second-instance', () => showWindow());
  app.on('activate', () => showWindow());
  // Closing the window keeps Braid in the tray.
  app.on('window-all-closed', () => {});
  app.on('web-contents-created', (_event, contents) => hardenWebContents(contents));
  app.on('before-quit', (event) => {
    event.preventDefault();
    void quit(0);
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => void quit(0));
  app.whenReady().then(() => {
    powerMonitor.on('shutdown', () => void quit(0));
    return start();
  }).catch((err) => {
    log.warn(`start failed: ${errorMessage(err)}`);
    void quit(1);
  });
}
