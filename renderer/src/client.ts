/**
 * The renderer's one way to talk to Braid's core, typed from the shared contract. Two transports
 * carry the same frames: the control WebSocket (any browser, `braid up`'s dashboard) and the
 * Electron preload's `window.braid` (the desktop app).
 */
import type {
  CommandName, ErrorFrame, EventFrame, EventName, Events, ParamsOf, PreloadApi, RequestFrame, ResponseFrame, ResultOf,
} from '../../electron/core/contract/index';
import { EVENT_NAMES } from '../../electron/core/contract/index';

declare global {
  interface Window {
    braid?: PreloadApi;
  }
}

/** Commands without required parameters may be called without them. */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type -- "may be empty" is exactly the test
export type ParamsArg<C extends CommandName> = {} extends ParamsOf<C> ? [params?: ParamsOf<C>] : [params: ParamsOf<C>];

export type LinkState =
  | { kind: 'connecting'; attempt: number }
  | { kind: 'open' }
  | { kind: 'retrying'; attempt: number; inMs: number; why: string }
  | { kind: 'failed'; why: string };

export interface BraidClient {
  call<C extends CommandName>(command: C, ...params: ParamsArg<C>): Promise<ResultOf<C>>;
  on<E extends EventName>(event: E, fn: (data: Events[E]) => void): () => void;
  /** Transport state; called at once with the current state. */
  onLink(fn: (s: LinkState) => void): () => void;
  close(): void;
}

/** An error from Braid (its code and message) or from getting there (ETIMEDOUT, EDISCONNECTED…). */
export class BraidApiError extends Error {
  constructor(readonly code: string, message: string, readonly command: string | null = null) {
    super(message);
    this.name = 'BraidApiError';
  }
}

export const REQUEST_TIMEOUT_MS = 10_000;
/** Commands that take longer by design: a diagnosis with its speed test runs for a minute or more. */
const LONG_COMMANDS: Partial<Record<CommandName, number>> = { 'doctor.run': 10 * 60_000 };
const timeoutFor = (command: CommandName, base: number): number => Math.max(base, LONG_COMMANDS[command] ?? 0);

type Listener = (data: never) => void;

/** Event fan-out and link-state bookkeeping shared by both transports. */
abstract class Base implements BraidClient {
  private readonly listeners = new Map<EventName, Set<Listener>>();
  private readonly linkListeners = new Set<(s: LinkState) => void>();
  protected linkState: LinkState = { kind: 'connecting', attempt: 1 };

  abstract call<C extends CommandName>(command: C, ...params: ParamsArg<C>): Promise<ResultOf<C>>;
  abstract close(): void;

  on<E extends EventName>(event: E, fn: (data: Events[E]) => void): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(fn as Listener);
    return () => void set.delete(fn as Listener);
  }

  onLink(fn: (s: LinkState) => void): () => void {
    this.linkListeners.add(fn);
    fn(this.linkState);
    return () => void this.linkListeners.delete(fn);
  }

  protected setLink(s: LinkState): void {
    this.linkState = s;
    for (const fn of [...this.linkListeners]) fn(s);
  }

  protected emit(frame: EventFrame): void {
    for (const fn of [...(this.listeners.get(frame.event) ?? [])]) {
      try {
        (fn as (d: unknown) => void)(frame.data);
      } catch (err) {
        // One broken view must not starve the others of events; the console keeps the trace.
        console.error(`braid: '${frame.event}' listener failed`, err);
      }
    }
  }
}

function unwrap<C extends CommandName>(command: C, frame: ResponseFrame | ErrorFrame): ResultOf<C> {
  if (frame.ok) return frame.result as ResultOf<C>;
  throw new BraidApiError(frame.error.code, frame.error.message, command);
}

function isEventFrame(v: unknown): v is EventFrame {
  return typeof v === 'object' && v !== null && typeof (v as EventFrame).event === 'string';
}

function isAnswerFrame(v: unknown): v is ResponseFrame | ErrorFrame {
  return typeof v === 'object' && v !== null && 'id' in v && typeof (v as ResponseFrame).ok === 'boolean';
}

// ---- WebSocket -------------------------------------------------------------------------------

interface Pending {
  command: CommandName;
  resolve(frame: ResponseFrame | ErrorFrame): void;
  reject(err: BraidApiError): void;
  timer: ReturnType<typeof setTimeout>;
}

export interface WsOptions {
  url: string;              // ws://host:port/api/ws (token added here)
  token: string;
  timeoutMs?: number;
  /** Diagnoses a refused socket (the browser hides the HTTP status of a failed upgrade). */
  probe?: () => Promise<string | null>;
}

const BACKOFF_MS = [250, 500, 1000, 2000, 4000, 8000, 15000];

export class WebSocketClient extends Base {
  private ws: WebSocket | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private attempt = 0;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private closed = false;

  constructor(private readonly opts: WsOptions) {
    super();
    this.connect();
  }

  private connect(): void {
    if (this.closed) return;
    this.attempt++;
    this.setLink({ kind: 'connecting', attempt: this.attempt });
    const url = `${this.opts.url}?token=${encodeURIComponent(this.opts.token)}`;
    let ws: WebSocket;
    try {
      ws = new WebSocket(url);
    } catch (err) {
      this.setLink({ kind: 'failed', why: `cannot open ${this.opts.url}: ${(err as Error).message}` });
      return;
    }
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.attempt = 0;
      this.setLink({ kind: 'open' });
    };
    ws.onmessage = (ev) => this.onFrame(ev.data);
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.failPending('EDISCONNECTED', 'the connection to Braid closed before it answered');
      if (this.closed) return;
      const base = opened ? `connection to Braid lost (code ${ev.code})` : 'cannot reach Braid\'s control API';
      void this.explain(base, opened).then((why) => this.scheduleRetry(why));
    };
  }

  private async explain(base: string, opened: boolean): Promise<string> {
    if (opened || !this.opts.probe) return base;
    try {
      const why = await this.opts.probe();
      return why ? `${base}: ${why}` : base;
    } catch {
      return `${base}: is braid up still running?`;
    }
  }

  private scheduleRetry(why: string): void {
    if (this.closed) return;
    // attempt is 0 right after a connection that was open dropped: retry soon, then back off.
    const step = BACKOFF_MS[Math.max(0, Math.min(this.attempt - 1, BACKOFF_MS.length - 1))]!;
    // Jitter, so several open dashboards do not reconnect in lockstep after a restart.
    const inMs = Math.round(step * (0.8 + Math.random() * 0.4));
    this.setLink({ kind: 'retrying', attempt: Math.max(1, this.attempt), inMs, why });
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.connect();
    }, inMs);
  }

  /** Reconnects now instead of waiting for the backoff. */
  retryNow(): void {
    if (this.closed || this.ws) return;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.connect();
  }

  private onFrame(data: unknown): void {
    let frame: unknown;
    try {
      frame = JSON.parse(String(data));
    } catch {
      console.error('braid: a frame that is not JSON', data);
      return;
    }
    if (isEventFrame(frame)) return this.emit(frame);
    if (isAnswerFrame(frame)) {
      const p = typeof frame.id === 'number' ? this.pending.get(frame.id) : undefined;
      if (p) {
        this.pending.delete(frame.id as number);
        clearTimeout(p.timer);
        p.resolve(frame);
      } else if (!frame.ok) {
        // An error for no request of ours (e.g. EBADFRAME): say so rather than drop it.
        this.emit({ event: 'error', data: { code: frame.error.code, message: frame.error.message, source: 'control' } });
      }
    }
  }

  call<C extends CommandName>(command: C, ...params: ParamsArg<C>): Promise<ResultOf<C>> {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new BraidApiError('ENOTCONNECTED', `cannot run '${command}': not connected to Braid`, command));
    }
    const id = this.nextId++;
    const frame: RequestFrame = { id, command, params: params[0] ?? {} };
    const timeoutMs = timeoutFor(command, this.opts.timeoutMs ?? REQUEST_TIMEOUT_MS);
    return new Promise<ResponseFrame | ErrorFrame>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new BraidApiError('ETIMEDOUT', `'${command}' got no answer from Braid within ${timeoutMs / 1000} s`, command));
      }, timeoutMs);
      this.pending.set(id, { command, resolve, reject, timer });
      ws.send(JSON.stringify(frame));
    }).then((f) => unwrap(command, f));
  }

  private failPending(code: string, message: string): void {
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new BraidApiError(code, `'${p.command}': ${message}`, p.command));
      this.pending.delete(id);
    }
  }

  close(): void {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.failPending('ECLOSED', 'the dashboard closed its connection');
    this.ws?.close();
    this.ws = null;
  }
}

// ---- Electron IPC ----------------------------------------------------------------------------

/** The preload's `window.braid` (PreloadApi in the contract): commands reject with {code, message}. */
export class IpcClient extends Base {
  private readonly unsubscribe: (() => void)[] = [];

  constructor(private readonly api: PreloadApi, private readonly timeoutMs = REQUEST_TIMEOUT_MS) {
    super();
    for (const event of EVENT_NAMES) {
      this.unsubscribe.push(api.on(event, (data) => this.emit({ event, data })));
    }
    this.setLink({ kind: 'open' });
  }

  call<C extends CommandName>(command: C, ...params: ParamsArg<C>): Promise<ResultOf<C>> {
    const timeoutMs = timeoutFor(command, this.timeoutMs);
    return new Promise<ResultOf<C>>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new BraidApiError('ETIMEDOUT', `'${command}' got no answer from Braid within ${timeoutMs / 1000} s`, command)),
        timeoutMs,
      );
      this.api.call(command, (params[0] ?? {}) as ParamsOf<C>).then(
        (result) => {
          clearTimeout(timer);
          resolve(result);
        },
        (err: unknown) => {
          clearTimeout(timer);
          const e = err as { code?: unknown; message?: unknown } | null;
          if (e && typeof e.code === 'string' && typeof e.message === 'string') reject(new BraidApiError(e.code, e.message, command));
          else reject(new BraidApiError('EIPC', `'${command}' failed in the app: ${e instanceof Error ? e.message : String(err)}`, command));
        },
      );
    });
  }

  close(): void {
    for (const u of this.unsubscribe.splice(0)) u();
  }
}

// ---- choosing one ----------------------------------------------------------------------------

/** The token from `#token=…` (what `braid up` prints), or null. */
export function tokenFromHash(hash: string): string | null {
  const params = new URLSearchParams(hash.replace(/^#/, ''));
  const t = params.get('token');
  return t && t.length > 0 ? t : null;
}

export type ClientChoice = { client: BraidClient; transport: 'ipc' | 'websocket' } | { client: null; why: string };

/** IPC under Electron, else the WebSocket of the server this page came from. */
export function createClient(loc: Location = window.location, preload: PreloadApi | undefined = window.braid): ClientChoice {
  if (preload) return { client: new IpcClient(preload), transport: 'ipc' };
  if (loc.protocol !== 'http:' && loc.protocol !== 'https:') {
    return { client: null, why: `this page was opened from ${loc.protocol}// — open the address braid up prints instead` };
  }
  const token = tokenFromHash(loc.hash);
  if (!token) return { client: null, why: 'no access token in the address: open the dashboard link that `braid up` prints (it ends in #token=…)' };
  const base = `${loc.protocol === 'https:' ? 'wss' : 'ws'}://${loc.host}/api/ws`;
  const probe = async (): Promise<string | null> => {
    const res = await fetch(`${loc.protocol}//${loc.host}/api/status`, { headers: { Authorization: `Bearer ${token}` }, cache: 'no-store' });
    if (res.status === 401) return 'the token in the address is not this Braid\'s (was it restarted? open the new link it printed)';
    if (res.status === 403) return 'Braid refused this page\'s Host name';
    return res.ok ? null : `HTTP ${res.status}`;
  };
  return { client: new WebSocketClient({ url: base, token, probe }), transport: 'websocket' };
}
