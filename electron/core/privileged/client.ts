/**
 * An unprivileged Braid's connection to the privileged helper. The connection is also the lifeline
 * of the rules the helper applied for it: it stays open while they are wanted, and closing it (or
 * this process dying) takes them out.
 */
import net from 'node:net';
import { BraidError, errorCode, errorMessage } from '../errors';
import { helperSocketPath, MAX_LINE, type PathsConnectionRequest, type PathsSecondaryRequest, type TransparentRequest } from './protocol';

const ANSWER_MS = 10_000;

export class HelperClient {
  private socket: net.Socket | null = null;
  private nextId = 1;
  private buf = '';
  private readonly waiting = new Map<number, { resolve(v: unknown): void; reject(e: Error): void; timer: NodeJS.Timeout }>();

  constructor(private readonly socketPath = helperSocketPath(), private readonly onLost?: (why: string) => void) {}

  get connected(): boolean {
    return this.socket !== null && !this.socket.destroyed;
  }

  private connect(): Promise<net.Socket> {
    if (this.socket && !this.socket.destroyed) return Promise.resolve(this.socket);
    return new Promise((resolve, reject) => {
      const s = net.connect(this.socketPath);
      s.setEncoding('utf8');
      s.once('connect', () => {
        s.off('error', reject);
        s.on('error', () => {});
        this.socket = s;
        // Not a reason to keep Braid's event loop alive on its own.
        s.unref();
        resolve(s);
      });
      s.once('error', (err) => {
        const code = errorCode(err);
        reject(new BraidError('ENOHELPER', code === 'ENOENT' || code === 'ECONNREFUSED'
          ? `transparent mode needs CAP_NET_ADMIN, and no braid helper runs at ${this.socketPath}: install build/linux/braid-helper.service (or run \`sudo braid helper\`), or run braid up as root`
          : `cannot reach the braid helper at ${this.socketPath}: ${errorMessage(err)}`, { cause: err }));
      });
      s.on('data', (chunk: string) => this.onData(chunk));
      s.on('close', () => {
        if (this.socket === s) this.socket = null;
        for (const [id, w] of this.waiting) {
          clearTimeout(w.timer);
          w.reject(new BraidError('ENOHELPER', 'the braid helper went away'));
          this.waiting.delete(id);
        }
        this.onLost?.('the braid helper closed the connection');
      });
    });
  }

  private onData(chunk: string): void {
    this.buf += chunk;
    if (this.buf.length > MAX_LINE) {
      this.socket?.destroy();
      return;
    }
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      let a: { id: number; ok: boolean; result?: unknown; error?: { code: string; message: string } };
      try {
        a = JSON.parse(line);
      } catch {
        continue;
      }
      const w = this.waiting.get(a.id);
      if (!w) continue;
      this.waiting.delete(a.id);
      clearTimeout(w.timer);
      if (a.ok) w.resolve(a.result);
      else w.reject(new BraidError(a.error?.code ?? 'EHELPER', `braid helper: ${a.error?.message ?? 'refused'}`));
    }
  }

  private async call(op: string, params?: unknown): Promise<unknown> {
    const s = await this.connect();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new BraidError('ETIMEDOUT', `the braid helper did not answer within ${ANSWER_MS} ms`));
      }, ANSWER_MS);
      this.waiting.set(id, { resolve, reject, timer });
      s.write(JSON.stringify({ id, op, params }) + '\n');
    });
  }

  apply(req: TransparentRequest): Promise<unknown> {
    return this.call('transparent.apply', req);
  }

  pathsConnection(req: PathsConnectionRequest): Promise<unknown> {
    return this.call('paths.connection', req);
  }

  pathsSecondary(req: PathsSecondaryRequest): Promise<unknown> {
    return this.call('paths.secondary', req);
  }

  /** Drops the connection (and with it whatever the helper holds for this process). */
  close(): void {
    this.socket?.destroy();
    this.socket = null;
  }

  /** Takes this process's rules out and drops the lifeline. */
  async clear(): Promise<void> {
    if (!this.connected) return;
    try {
      await this.call('transparent.clear');
    } finally {
      this.socket?.destroy();
      this.socket = null;
    }
  }
}
