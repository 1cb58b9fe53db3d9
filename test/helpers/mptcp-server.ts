/**
 * An HTTP/1.1 byte server on a socket made by our addon (MPTCP or plain TCP), answering
 * `GET /bytes/<N>[?seed=S]` with N bytes of deterministic content (see byte-stream.ts).
 *
 * For a download the server is the sender, so its view of the connection is where the per-subflow
 * split is measured (bytes sent and acked per subflow). After each response it reports that view
 * as one JSON line through `onReport`.
 */
import http from 'node:http';
import net from 'node:net';
import { listenFd, socketInfo, type MptcpInfo } from '../../electron/core/native/mptcp';
import { socketFd } from '../../electron/core/socket-fd';
import { byteChunks, DEFAULT_SEED } from './byte-stream';

export { expectedSha256, DEFAULT_SEED } from './byte-stream';

export interface ResponseReport {
  event: 'response';
  path: string;
  bytes: number;
  seed: string;
  remoteAddress: string | null;
  remotePort: number | null;
  /** wall time from request to the last body byte handed to the kernel */
  writeSeconds: number;
  /** what the socket had written in total (headers and earlier responses on the connection too) */
  connectionBytesWritten: number;
  /** server-side socketInfo of the connection, taken once the data was acked or the peer closed */
  info: MptcpInfo | null;
  infoError: string | null;
}

export interface BytesServerOptions {
  host?: string;        // default '::' with dualStack
  port?: number;        // default 0
  mptcp?: boolean;      // default true
  seed?: string;
  maxBytes?: number;    // refuse larger requests (default 64 GiB)
  onReport?: (r: ResponseReport) => void;
}

export interface BytesServer {
  port: number;
  server: http.Server;
  close(): Promise<void>;
}

const REPORT_POLL_MS = 20;
const REPORT_MAX_POLLS = 250;   // 5 s: enough for a tbf queue of 100 ms to drain many times over

function safeInfo(socket: net.Socket): { info: MptcpInfo | null; error: string | null } {
  const fd = socketFd(socket);
  if (fd === null) return { info: null, error: 'socket has no fd any more' };
  try {
    return { info: socketInfo(fd), error: null };
  } catch (err) {
    const e = err as { code?: string; message?: string };
    return { info: null, error: `${e.code ?? 'EUNKNOWN'}: ${e.message ?? String(err)}` };
  }
}

/** Every byte written so far has been acked by the peer, by the kernel's own count. */
function allAcked(info: MptcpInfo | null, written: number): boolean {
  if (!info || written <= 0) return false;
  if (info.mptcp && !info.fallback) return info.bytesAcked >= written;
  // Plain TCP (or fallback): one subflow carries everything; tcpi_bytes_acked counts the SYN too.
  return info.subflows.reduce((sum, s) => sum + s.bytesAcked, 0) >= written;
}

/**
 * Waits until the kernel reports every written byte acked, or the peer closes (then everything it
 * received was acked), or a bounded time passes; the last snapshot wins. Taken when the last byte is
 * merely handed to the kernel, a shaped link still holds a queue of unsent data and the per-subflow
 * split would be skewed toward whichever subflow drains last. Runs before res.end(): with
 * `Connection: close` Node closes the fd right after end(), and the counters would be gone.
 */
function settledInfo(socket: net.Socket): Promise<{ info: MptcpInfo | null; error: string | null }> {
  return new Promise((resolve) => {
    let last = safeInfo(socket);
    let polls = 0;
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      clearInterval(timer);
      socket.removeListener('end', onEnd);
      socket.removeListener('close', finish);
      resolve(last);
    };
    const onEnd = (): void => { const s = safeInfo(socket); if (s.info) last = s; finish(); };
    const timer = setInterval(() => {
      polls++;
      const s = safeInfo(socket);
      if (s.info) last = s;
      if (allAcked(s.info, socket.bytesWritten) || polls >= REPORT_MAX_POLLS) finish();
    }, REPORT_POLL_MS);
    // Before net.Socket's own 'end' handling closes the fd.
    socket.prependListener('end', onEnd);
    socket.once('close', finish);
    if (allAcked(last.info, socket.bytesWritten)) finish();
  });
}

/** Writes the whole body with backpressure; resolves once the last byte is in the kernel. */
function writeBody(res: http.ServerResponse, total: number, seed: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const chunks = byteChunks(total, seed);
    const onClose = (): void => reject(new Error('connection closed before the body was sent'));
    res.once('close', onClose);
    const pump = (): void => {
      for (;;) {
        const next = chunks.next();
        if (next.done) {
          // An empty write's callback runs after everything queued before it was flushed.
          res.write('', () => { res.removeListener('close', onClose); resolve(); });
          return;
        }
        if (!res.write(next.value)) { res.once('drain', pump); return; }
      }
    };
    pump();
  });
}

export async function startBytesServer(opts: BytesServerOptions = {}): Promise<BytesServer> {
  const host = opts.host ?? '::';
  const seedDefault = opts.seed ?? DEFAULT_SEED;
  const maxBytes = opts.maxBytes ?? 64 * 1024 ** 3;
  const server = http.createServer({ keepAliveTimeout: 30_000 }, (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const m = /^\/bytes\/(\d+)$/.exec(url.pathname);
    if (req.method !== 'GET' || !m) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('try GET /bytes/<N>\n');
      return;
    }
    const total = Number(m[1]);
    if (!Number.isSafeInteger(total) || total > maxBytes) {
      res.writeHead(400, { 'content-type': 'text/plain' }).end(`N must be an integer up to ${maxBytes}\n`);
      return;
    }
    const seed = url.searchParams.get('seed') ?? seedDefault;
    const started = process.hrtime.bigint();
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(total), 'x-braid-seed': seed });
    const socket = req.socket;
    const remoteAddress = socket.remoteAddress ?? null;
    const remotePort = socket.remotePort ?? null;
    writeBody(res, total, seed).then(async () => {
      const writeSeconds = Number(process.hrtime.bigint() - started) / 1e9;
      const { info, error } = await settledInfo(socket);
      opts.onReport?.({
        event: 'response', path: url.pathname, bytes: total, seed, remoteAddress, remotePort,
        writeSeconds, connectionBytesWritten: socket.bytesWritten, info, infoError: error,
      });
      res.end();
    }, () => { /* the client went away; nothing to report */ });
  });
  const fd = listenFd({ host, port: opts.port ?? 0, dualStack: host === '::', mptcp: opts.mptcp ?? true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ fd }, () => { server.removeListener('error', reject); resolve(); });
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : (opts.port ?? 0);
  return {
    port,
    server,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}
