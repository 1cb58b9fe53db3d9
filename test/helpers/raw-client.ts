/**
 * A raw TCP client for protocol tests: send bytes (optionally one at a time), collect everything
 * the peer sends until it closes or a deadline passes, and report which of the two happened.
 */
import net from 'node:net';

export interface Exchange {
  data: Buffer;
  closed: boolean;      // the peer ended or reset the connection before the deadline
  error: string | null;
  ms: number;
}

export interface ExchangeOptions {
  host?: string;
  /** Writes each buffer of `send` byte by byte with this gap, to test incremental parsers. */
  byteGapMs?: number;
  /** Stop waiting after this long; the exchange then reports closed: false. */
  timeoutMs?: number;
  /** Resolve as soon as this many bytes have arrived (the socket is then destroyed). */
  untilBytes?: number;
}

export function exchange(port: number, send: Buffer[], opts: ExchangeOptions = {}): Promise<Exchange> {
  const started = Date.now();
  return new Promise<Exchange>((resolve) => {
    const sock = net.connect({ host: opts.host ?? '127.0.0.1', port });
    const parts: Buffer[] = [];
    let size = 0;
    let settled = false;
    let error: string | null = null;
    const finish = (closed: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      resolve({ data: Buffer.concat(parts), closed, error, ms: Date.now() - started });
    };
    const timer = setTimeout(() => finish(false), opts.timeoutMs ?? 5000);
    sock.on('data', (d: Buffer) => {
      parts.push(d);
      size += d.length;
      if (opts.untilBytes !== undefined && size >= opts.untilBytes) finish(false);
    });
    sock.on('end', () => finish(true));
    sock.on('error', (e: NodeJS.ErrnoException) => {
      error = e.code ?? e.message;
      finish(true);
    });
    sock.on('close', () => finish(true));
    sock.once('connect', async () => {
      for (const buf of send) {
        if (opts.byteGapMs === undefined) {
          if (!sock.destroyed) sock.write(buf);
          continue;
        }
        for (let i = 0; i < buf.length && !sock.destroyed && !settled; i++) {
          sock.write(buf.subarray(i, i + 1));
          await new Promise((r) => setTimeout(r, opts.byteGapMs));
        }
      }
    });
  });
}

/** Reads from an open socket until `n` bytes arrived (bounded by time). */
export function readBytes(sock: net.Socket, n: number, timeoutMs = 5000): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const onData = (d: Buffer): void => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= n) {
        cleanup();
        sock.pause();
        const extra = buf.subarray(n);
        if (extra.length) sock.unshift(extra);
        resolve(buf.subarray(0, n));
      }
    };
    const onEnd = (): void => {
      cleanup();
      reject(new Error(`socket closed after ${buf.length} of ${n} bytes: ${buf.toString('hex')}`));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`timed out after ${buf.length} of ${n} bytes: ${buf.toString('hex')}`));
    }, timeoutMs);
    const cleanup = (): void => {
      clearTimeout(timer);
      sock.off('data', onData);
      sock.off('end', onEnd);
      sock.off('close', onEnd);
    };
    sock.on('data', onData);
    sock.once('end', onEnd);
    sock.once('close', onEnd);
    sock.resume();
  });
}

/** SOCKS5 CONNECT request bytes for an IPv4, IPv6 or domain destination. */
export function socksConnectRequest(host: string, port: number, cmd = 0x01): Buffer {
  const p = Buffer.alloc(2);
  p.writeUInt16BE(port);
  if (net.isIPv4(host)) return Buffer.concat([Buffer.from([5, cmd, 0, 1, ...host.split('.').map(Number)]), p]);
  if (net.isIPv6(host)) return Buffer.concat([Buffer.from([5, cmd, 0, 4]), ipv6Bytes(host), p]);
  const name = Buffer.from(host, 'latin1');
  return Buffer.concat([Buffer.from([5, cmd, 0, 3, name.length]), name, p]);
}

function ipv6Bytes(host: string): Buffer {
  const [head, tail] = host.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}
