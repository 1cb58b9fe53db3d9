/**
 * The dashboard window and what it may load: only the app:// origin (files from renderer/dist with
 * the strict CSP), no navigation away, no new windows, no permissions. The settings themselves are
 * data in electron/core/desktop/security.ts, where the tests check them.
 */
import fs from 'node:fs';
import { BrowserWindow, protocol, session, type WebContents } from 'electron';
import { NOT_BUILT_PAGE, resolveAppRequest, responseHeaders } from '../core/desktop/app-protocol';
import { APP_ENTRY_URL, APP_SCHEME, APP_SCHEME_PRIVILEGES, isAppUrl, secureWebPreferences } from '../core/desktop/security';

/** Must run before the app is ready. */
export function registerAppScheme(): void {
  protocol.registerSchemesAsPrivileged([{ scheme: APP_SCHEME, privileges: { ...APP_SCHEME_PRIVILEGES } }]);
}

/** Serves renderer/dist on app://braid/; anything outside it is a 404. */
export function handleAppProtocol(rendererDir: string): void {
  protocol.handle(APP_SCHEME, async (request) => {
    const r = resolveAppRequest(request.url, rendererDir);
    if (!r.ok) return new Response(r.reason, { status: r.status, headers: responseHeaders('text/plain; charset=utf-8') });
    try {
      const body = await fs.promises.readFile(r.file);
      return new Response(body, { status: 200, headers: responseHeaders(r.contentType) });
    } catch {
      if (r.file.endsWith('index.html')) return new Response(NOT_BUILT_PAGE, { status: 200, headers: responseHeaders('text/html; charset=utf-8') });
      return new Response('not found', { status: 404, headers: responseHeaders('text/plain; charset=utf-8') });
    }
  });
}

/** No permission (camera, notifications, geolocation, ...) is ever granted to web content. */
export function denyPermissions(): void {
  const s = session.defaultSession;
  s.setPermissionRequestHandler((_wc, _permission, callback) => callback(false));
  s.setPermissionCheckHandler(() => false);
}

/** For every web contents the app creates: stay on app://, open nothing, attach no webview. */
export function hardenWebContents(contents: WebContents): void {
  contents.on('will-navigate', (event, url) => {
    if (!isAppUrl(url)) event.preventDefault();
  });
  contents.on('will-redirect', (event, url) => {
    if (!isAppUrl(url)) event.preventDefault();
  });
  contents.on('will-attach-webview', (event) => event.preventDefault());
  contents.setWindowOpenHandler(() => ({ action: 'deny' }));
}

export function createMainWindow(opts: { preload: string; icon?: string }): BrowserWindow {
  const win = new BrowserWindow({
    width: 1120,
    height: 760,
    minWidth: 640,
    minHeight: 480,
    show: false,
    title: 'Braid',
    icon: opts.icon,
    autoHideMenuBar: true,
    webPreferences: secureWebPreferences(opts.preload),
  });
  win.once('ready-to-show', () => win.show());
  void win.loadURL(APP_ENTRY_URL);
  return win;
}
