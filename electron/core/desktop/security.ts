/**
 * The desktop window's security settings, as data: the Electron glue applies them and the tests
 * check them, so they cannot be weakened by accident in one place. Follows Electron's security
 * checklist: isolated and sandboxed renderer without Node, content only from our own `app://`
 * origin under a strict CSP, no navigation away, no new windows, no permissions.
 */

export const APP_SCHEME = 'app';
export const APP_HOST = 'braid';
export const APP_ORIGIN = `${APP_SCHEME}://${APP_HOST}`;
export const APP_ENTRY_URL = `${APP_ORIGIN}/index.html`;

/** Sent with every file of the app:// protocol. No inline or remote script, no remote anything. */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** For protocol.registerSchemesAsPrivileged: a standard, secure origin (so 'self' and storage work). */
export const APP_SCHEME_PRIVILEGES = {
  standard: true,
  secure: true,
  supportFetchAPI: true,
  corsEnabled: false,
  stream: false,
  bypassCSP: false,
  allowServiceWorkers: false,
} as const;

/** BrowserWindow webPreferences; `preload` is the compiled electron/app/preload.js. */
export function secureWebPreferences(preload: string) {
  return {
    preload,
    contextIsolation: true,
    sandbox: true,
    nodeIntegration: false,
    nodeIntegrationInWorker: false,
    nodeIntegrationInSubFrames: false,
    webSecurity: true,
    allowRunningInsecureContent: false,
    webviewTag: false,
    experimentalFeatures: false,
    navigateOnDragDrop: false,
    safeDialogs: true,
    spellcheck: false,
    devTools: true,
  } as const;
}

/** Whether a URL belongs to the app's own origin (app://braid/...). */
export function isAppUrl(url: string | null | undefined): boolean {
  if (!url) return false;
  try {
    const u = new URL(url);
    // Node's URL gives opaque origins ('null') to custom schemes, so compare the parts.
    return u.protocol === `${APP_SCHEME}:` && u.host === APP_HOST && u.username === '' && u.password === '';
  } catch {
    return false;
  }
}
