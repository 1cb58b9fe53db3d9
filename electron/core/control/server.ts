/**
 * The control API on loopback: HTTP for commands, a WebSocket for commands and the event streams,
 * and the built dashboard. Modelled on Clash's external controller: a secret token, sent as
 * `Authorization: Bearer <token>` (or `?token=` where a browser cannot set headers, e.g. WebSocket).
 *
 *   POST /api/<command>      body: JSON params          -> {ok: true, result} | {ok: false, error}
 *   GET  /api/<command>      for commands without params
 *   GET  /api/ws?token=…     frames: {id, command, params} -> {id, ok, result|error}; events {event, data}
 *   GET  /                   the dashboard (no secrets in it; it takes the token from the URL fragment)
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { WebSocketServer, type WebSocket } from 'ws';
import { COMMANDS, EVENT_NAMES, isCommand, type CommandName, type EventName, type Handlers } from '../contract';
import { BraidError, errorMessage } from '../errors';
import type { Logger } from '../proxy/session';
import { errorBody, statusForError, type EventBus } from './handlers';

export interface ControlServerOptions {
  host: string;
  port: number;
  token: string;
  staticDir: string | null;   // the built renderer; null = no dashboard
  log: Logger;
}

const MAX_BODY = 64 * 1024;
const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml',
  '.png': 'image/png', '.json': 'application/json', '.ico': 'image/x-icon', '.woff2': 'font/woff2',
};

/** A loopback address or the name localhost (not any name that merely starts with "127."). */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  if (net.isIPv4(h)) return h.startsWith('127.');
  return /^::ffff:127\./.test(h) && net.isIPv6(h);
}

/** The request's URL, or null when the request line holds something URL cannot parse. */
function parseUrl(raw: string | undefined): URL | null {
  try {
    return new URL(raw ?? '/', 'http://x');
  } catch {
    return null;
  }
}

function decodePath(s: string): string | null {
  try {
    return decodeURIComponent(s);
  } catch {
    return null;
  }
}

/** Runs one command as every transport does: validate, dispatch, shape errors. */
export async function dispatch(handlers: Handlers, command: unknown, params: unknown): Promise<unknown> {
  if (!isCommand(command)) throw new BraidError('ECOMMAND', `unknown command '${String(command)}' (known: ${Object.keys(COMMANDS).join(', ')})`);
  const checked = COMMANDS[command].params(params ?? {}, '');
  return (handlers[command] as (p: unknown) => unknown)(checked);
}

export class ControlServer {
  private server: http.Server | null = null;
  private wss: WebSocketServer | null = null;
  private readonly tokenBuf: Buffer;
  private readonly forward: { event: EventName; fn: (data: unknown) => void }[] = [];

  constructor(private readonly handlers: Handlers, private readonly bus: EventBus, private readonly opts: ControlServerOptions) {
    this.tokenBuf = Buffer.from(opts.token);
  }

  async start(): Promise<net.AddressInfo> {
    if (!isLoopback(this.opts.host)) {
      this.opts.log.warn(`control API listens on ${this.opts.host}, beyond loopback: anyone who can reach it and has the token controls Braid`);
    }
    // A request must never take the process down: whatever escapes the handler becomes a 500.
    const server = http.createServer((req, res) => {
      this.onRequest(req, res).catch((err) => {
        this.opts.log.warn(`control ${req.method ?? ''} ${String(req.url).slice(0, 200)}: ${errorMessage(err)}`);
        if (!res.headersSent) this.send(res, 500, { ok: false, error: { code: 'EINTERNAL', message: 'internal error' } });
        else res.destroy();
      });
    });
    const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_BODY });
    server.on('upgrade', (req, socket, head) => {
      socket.on('error', () => {});
      const url = parseUrl(req.url);
      if (!url) return void socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n');
      if (!this.allowedHost(req)) return void socket.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n');
      if (url.pathname !== '/api/ws') return void socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
      if (!this.authorized(req, url)) return void socket.end('HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n');
      wss.handleUpgrade(req, socket, head, (ws) => this.onSocket(ws));
    });
    for (const event of EVENT_NAMES) {
      const fn = (data: unknown): void => {
        const frame = JSON.stringify({ event, data });
        for (const ws of wss.clients) if (ws.readyState === ws.OPEN && ws.bufferedAmount < 4 * 1024 * 1024) ws.send(frame);
      };
      this.bus.on(event, fn as never);
      this.forward.push({ event, fn });
    }
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.port, this.opts.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    this.wss = wss;
    return server.address() as net.AddressInfo;
  }

  async stop(): Promise<void> {
    for (const { event, fn } of this.forward.splice(0)) this.bus.off(event, fn as never);
    for (const ws of this.wss?.clients ?? []) ws.terminate();
    this.wss?.close();
    const s = this.server;
    this.server = null;
    if (s) await new Promise<void>((r) => { s.close(() => r()); s.closeAllConnections(); });
  }

  /**
   * Refuses Host names other than localhost, so that a web page on a DNS-rebinding domain cannot
   * reach the API. Numeric addresses cannot be rebound, so any is fine (a listener deliberately put
   * beyond loopback is reached by its address).
   */
  private allowedHost(req: http.IncomingMessage): boolean {
    const host = (req.headers.host ?? '').replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1').toLowerCase();
    return host === 'localhost' || net.isIP(host) !== 0;
  }

  private authorized(req: http.IncomingMessage, url: URL): boolean {
    const header = req.headers.authorization ?? '';
    const given = header.startsWith('Bearer ') ? header.slice(7) : url.searchParams.get('token') ?? '';
    const buf = Buffer.from(given);
    return buf.length === this.tokenBuf.length && crypto.timingSafeEqual(buf, this.tokenBuf);
  }

  private send(res: http.ServerResponse, status: number, body: unknown): void {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store', 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  }

  private async onRequest(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = parseUrl(req.url);
    if (!url) return this.send(res, 400, { ok: false, error: { code: 'EBADREQUEST', message: 'malformed request target' } });
    if (!this.allowedHost(req)) return this.send(res, 403, { ok: false, error: { code: 'EHOST', message: 'unexpected Host header (use 127.0.0.1, [::1] or localhost)' } });
    if (!url.pathname.startsWith('/api/')) return this.serveStatic(url.pathname, res);
    if (!this.authorized(req, url)) {
      return this.send(res, 401, { ok: false, error: { code: 'EAUTH', message: 'missing or wrong token (Authorization: Bearer <token>)' } });
    }
    const command = decodePath(url.pathname.slice('/api/'.length));
    if (command === null) return this.send(res, 400, { ok: false, error: { code: 'ECOMMAND', message: 'malformed percent-encoding in the command name' } });
    let params: unknown = {};
    if (req.method === 'POST') {
      try {
        params = await readJson(req);
      } catch (err) {
        // Too big: answer, then close, rather than read the rest of a body we will not use.
        if ((err as BraidError).code === 'ETOOBIG') res.setHeader('Connection', 'close');
        return this.send(res, (err as BraidError).code === 'ETOOBIG' ? 413 : 400, { ok: false, error: errorBody(err) });
      }
    } else if (req.method !== 'GET') {
      return this.send(res, 405, { ok: false, error: { code: 'EMETHOD', message: 'use GET or POST' } });
    }
    try {
      const result = await dispatch(this.handlers, command, params);
      this.send(res, 200, { ok: true, result });
    } catch (err) {
      const status = (err as BraidError).code === 'ECOMMAND' ? 404 : statusForError(err);
      if (status >= 500) this.opts.log.warn(`control ${command}: ${errorMessage(err)}`);
      this.send(res, status, { ok: false, error: errorBody(err) });
    }
  }

  private onSocket(ws: WebSocket): void {
    ws.on('error', () => {});
    ws.on('message', (data) => {
      let frame: { id?: unknown; command?: unknown; params?: unknown };
      try {
        frame = JSON.parse(data.toString()) as typeof frame;
        if (typeof frame !== 'object' || frame === null) throw new Error('not an object');
      } catch {
        return void ws.send(JSON.stringify({ id: null, ok: false, error: { code: 'EBADFRAME', message: 'frames are JSON objects {id, command, params}' } }));
      }
      const id = typeof frame.id === 'string' || typeof frame.id === 'number' ? frame.id : null;
      dispatch(this.handlers, frame.command, frame.params).then(
        (result) => ws.send(JSON.stringify({ id, ok: true, result })),
        (err) => ws.send(JSON.stringify({ id, ok: false, error: errorBody(err) })),
      );
    });
  }

  private serveStatic(pathname: string, res: http.ServerResponse): void {
    const root = this.opts.staticDir;
    if (!root || !fs.existsSync(path.join(root, 'index.html'))) {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      return void res.end('the dashboard is not built (npm run build builds renderer/dist)\n');
    }
    const decoded = decodePath(pathname);
    const rel = pathname === '/' ? 'index.html' : (decoded ?? '').replace(/^\/+/, '');
    const file = path.resolve(root, rel);
    if (decoded === null || decoded.includes('\0') || !file.startsWith(path.resolve(root) + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      return void res.end('not found\n');
    }
    res.writeHead(200, {
      'Content-Type': MIME[path.extname(file)] ?? 'application/octet-stream',
      'Content-Security-Policy': "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; style-src 'self' 'unsafe-inline'",
      'X-Content-Type-Options': 'nosniff',
    });
    fs.createReadStream(file).pipe(res);
  }
}

function readJson(req: http.IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooBig = false;
    req.on('data', (c: Buffer) => {
      if (tooBig) return;
      size += c.length;
      if (size > MAX_BODY) {
        // Not req.destroy(): that closes the socket before the 413 is written. The rest of the body
        // is discarded while the answer goes out, and the connection closes after it.
        tooBig = true;
        chunks.length = 0;
        reject(new BraidError('ETOOBIG', `request body over ${MAX_BODY} bytes`));
      } else chunks.push(c);
    });
    req.on('end', () => {
      if (tooBig) return;
      const text = Buffer.concat(chunks).toString('utf8').trim();
      if (!text) return resolve({});
      try {
        resolve(JSON.parse(text));
      } catch {
        reject(new BraidError('EBADJSON', 'request body is not valid JSON'));
      }
    });
    req.on('error', reject);
  });
}

export function newToken(): string {
  return crypto.randomBytes(18).toString('base64url');
}
