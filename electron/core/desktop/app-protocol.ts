/**
 * What the app:// protocol serves: files from the built renderer (renderer/dist) and nothing else,
 * each with the strict CSP. Pure path logic here (tested); the Electron glue reads and answers.
 */
import path from 'node:path';
import { APP_HOST, APP_SCHEME, CONTENT_SECURITY_POLICY } from './security';

const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.woff': 'font/woff',
  '.map': 'application/json',
  '.txt': 'text/plain; charset=utf-8',
};

export type AppRequest = { ok: true; file: string; contentType: string } | { ok: false; status: 400 | 404; reason: string };

/** Maps an app:// URL to a file inside `root`, refusing everything outside it. */
export function resolveAppRequest(url: string, root: string): AppRequest {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return { ok: false, status: 400, reason: 'not a URL' };
  }
  if (u.protocol !== `${APP_SCHEME}:` || u.host !== APP_HOST) return { ok: false, status: 404, reason: `not the app's origin: ${u.protocol}//${u.host}` };
  let rel: string;
  try {
    rel = decodeURIComponent(u.pathname);
  } catch {
    return { ok: false, status: 400, reason: 'bad percent-encoding' };
  }
  if (rel.includes('\0')) return { ok: false, status: 400, reason: 'NUL in path' };
  if (rel === '/' || rel === '') rel = '/index.html';
  const base = path.resolve(root);
  const file = path.resolve(base, '.' + path.posix.normalize(rel.replace(/\\/g, '/')));
  if (!file.startsWith(base + path.sep)) return { ok: false, status: 404, reason: 'outside the renderer' };
  return { ok: true, file, contentType: MIME[path.extname(file).toLowerCase()] ?? 'application/octet-stream' };
}

export function responseHeaders(contentType: string): Record<string, string> {
  return {
    'Content-Type': contentType,
    'Content-Security-Policy': CONTENT_SECURITY_POLICY,
    'X-Content-Type-Options': 'nosniff',
    'Cache-Control': 'no-cache',
  };
}

/** Shown when renderer/dist has not been built: static, CSP-clean, says what to do. */
export const NOT_BUILT_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Braid</title>
<style>body{font:15px system-ui,sans-serif;margin:3em;max-width:40em;color:#222}code{background:#eee;padding:.1em .3em}</style></head>
<body><h1>Braid</h1><p>The proxy is running (see the tray icon), but the dashboard has not been built.</p>
<p>Run <code>npm run build</code> and reopen this window.</p></body></html>
`;
