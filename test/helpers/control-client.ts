/**
 * A client of Braid's control API for tests: raw HTTP requests (any method, headers, Host), a
 * WebSocket that queues frames for bounded waits, and the `braid up` line that announces the API.
 *
 * Also runnable, for namespaces (the API is on the namespace's loopback, out of the test's reach):
 *   node dist/test/helpers/control-client.js watch ws://127.0.0.1:P/api/ws?token=T [seconds]
 * prints every frame it receives as one line `{"at": <ms since epoch>, "frame": {...}}` until the
 * time is up (default 120 s) or the socket closes.
 */
import http from 'node:http';
import { WebSocket } from 'ws';

/** `braid: control API on http://H:P/ (dashboard: http://H:P/#token=T)` */
export const CONTROL_LINE = /braid: control API on (http:\/\/(\[[^\]]+\]|[^/:]+):(\d+)\/) \(dashboard: \S+#token=([A-Za-z0-9_-]+)\)/;

export interface ControlAddress {
  url: string;      // http://H:P/
  host: string;
  port: number;
  token: string;
}

export function parseControlLine(stdout: string): ControlAddress | null {
  const m = CONTROL_LINE.exec(stdout);
  if (!m) return null;
  return { url: m[1]!, host: m[2]!.replace(/^\[|\]$/g, ''), port: Number(m[3]), token: m[4]! };
}

/** Polls `stdout()` (bounded) until the control line shows up. */
export async function waitControlLine(stdout: () => string, timeoutMs = 10_000): Promise<ControlAddress> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 10_000 && Date.now() < deadline; i++) {
    const c = parseControlLine(stdout());
    if (c) return c;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`no control API line within ${timeoutMs} ms; stdout: ${stdout()}`);
}

export interface ApiAnswer {
  status: number;
  text: string;
  json: { ok: boolean; result?: unknown; error?: { code: string; message: string } } | null;
  headers: http.IncomingHttpHeaders;
}

export interface ApiRequest {
  host: string;
  port: number;
  method?: string;
  path: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  timeoutMs?: number;
}

export function apiRequest(r: ApiRequest): Promise<ApiAnswer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: r.host, port: r.port, method: r.method ?? (r.body !== undefined ? 'POST' : 'GET'), path: r.path, headers: r.headers, timeout: r.timeoutMs ?? 5000 }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => {
        const text = Buffer.concat(parts).toString('utf8');
        let json: ApiAnswer['json'] = null;
        try { json = JSON.parse(text) as ApiAnswer['json']; } catch { /* not JSON */ }
        resolve({ status: res.statusCode ?? 0, text, json, headers: res.headers });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${r.method ?? 'GET'} ${r.path}: no answer within ${r.timeoutMs ?? 5000} ms`)));
    req.on('error', reject);
    req.end(r.body);
  });
}

/** POST /api/<command> with the token; resolves with the parsed answer whatever the status. */
export function call(c: ControlAddress, command: string, params: unknown = {}): Promise<ApiAnswer> {
  const body = JSON.stringify(params);
  return apiRequest({ host: c.host, port: c.port, path: `/api/${command}`, body, headers: { Authorization: `Bearer ${c.token}`, 'Content-Type': 'application/json' } });
}

/** call(), expecting success: the result. */
export async function callOk<T>(c: ControlAddress, command: string, params: unknown = {}): Promise<T> {
  const a = await call(c, command, params);
  if (a.status !== 200 || !a.json?.ok) throw new Error(`${command}: HTTP ${a.status} ${a.text}`);
  return a.json.result as T;
}

export interface Frame {
  id?: number | string | null;
  ok?: boolean;
  result?: unknown;
  error?: { code: string; message: string };
  event?: string;
  data?: unknown;
}

/** A WebSocket that keeps every frame and lets a test wait (bounded) for one that matches. */
export class WsClient {
  readonly frames: { at: number; frame: Frame }[] = [];
  private readonly waiters = new Set<() => void>();
  closed = false;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      let frame: Frame;
      try { frame = JSON.parse(data.toString()) as Frame; } catch { frame = { event: 'unparsable', data: data.toString() }; }
      this.frames.push({ at: Date.now(), frame });
      if (this.frames.length > 100_000) this.frames.splice(0, 50_000);
      for (const w of [...this.waiters]) w();
    });
    ws.on('close', () => { this.closed = true; for (const w of [...this.waiters]) w(); });
    ws.on('error', () => {});
  }

  /** Opens, or rejects with the HTTP status the server answered the upgrade with. */
  static open(url: string, opts: { headers?: Record<string, string>; timeoutMs?: number } = {}): Promise<WsClient> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { headers: opts.headers, handshakeTimeout: opts.timeoutMs ?? 5000 });
      ws.once('open', () => resolve(new WsClient(ws)));
      ws.once('unexpected-response', (_req, res) => {
        reject(Object.assign(new Error(`upgrade refused: HTTP ${res.statusCode}`), { status: res.statusCode }));
        ws.terminate();
      });
      ws.once('error', (err) => reject(err));
    });
  }

  send(frame: unknown): void {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  waitFor(match: (f: Frame) => boolean, timeoutMs: number, fromIndex = 0): Promise<Frame> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        for (let i = fromIndex; i < this.frames.length; i++) {
          if (match(this.frames[i]!.frame)) { done(); resolve(this.frames[i]!.frame); return true; }
        }
        if (this.closed) { done(); reject(new Error('WebSocket closed before the frame arrived')); return true; }
        return false;
      };
      const done = (): void => { clearTimeout(timer); this.waiters.delete(waiter); };
      const waiter = (): void => { check(); };
      const timer = setTimeout(() => { done(); reject(new Error(`no matching frame within ${timeoutMs} ms (${this.frames.length} frames)`)); }, timeoutMs);
      if (!check()) this.waiters.add(waiter);
    });
  }

  /** Sends a command frame and waits for the answer with the same id. */
  async command(id: number | string, command: string, params?: unknown, timeoutMs = 5000): Promise<Frame> {
    const from = this.frames.length;
    this.send({ id, command, params });
    return this.waitFor((f) => f.id === id && f.ok !== undefined, timeoutMs, from);
  }

  close(): void {
    this.ws.terminate();
  }
}

async function watch(url: string, seconds: number): Promise<void> {
  const client = await WsClient.open(url);
  process.stdout.write(JSON.stringify({ at: Date.now(), frame: { event: 'open' } }) + '\n');
  let printed = 0;
  const flush = (): void => {
    for (; printed < client.frames.length; printed++) process.stdout.write(JSON.stringify(client.frames[printed]) + '\n');
  };
  const timer = setInterval(flush, 50);
  await new Promise<void>((resolve) => {
    const end = setTimeout(resolve, seconds * 1000);
    client.ws.once('close', () => { clearTimeout(end); resolve(); });
    process.once('SIGTERM', () => { clearTimeout(end); resolve(); });
  });
  clearInterval(timer);
  flush();
  client.close();
}

if (require.main === module) {
  const [mode, url, seconds] = process.argv.slice(2);
  if (mode !== 'watch' || !url) {
    process.stderr.write('usage: control-client.js watch WS_URL [seconds]\n');
    process.exit(2);
  }
  watch(url, Math.min(600, Number(seconds ?? 120) || 120)).then(() => process.exit(0), (err) => {
    process.stderr.write(`control-client: ${(err as Error).message}\n`);
    process.exit(1);
  });
}
