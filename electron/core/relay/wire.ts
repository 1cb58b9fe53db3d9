/**
 * The relay's wire protocol, both ends of it: HTTP/1.1 CONNECT inside TLS 1.3 (an "HTTPS proxy"),
 * so standard tools speak it too, e.g.
 *
 *   curl --proxy https://relay:8443 --proxy-insecure --proxy-user braid:SECRET https://example.org
 *
 * Request:  CONNECT host:port HTTP/1.1 / Host / Proxy-Authorization: Basic base64("braid:" + secret)
 * Response: 200 once the relay is connected to the destination; otherwise 4xx/5xx with an
 *           `X-Braid-Error: <code>` header carrying the errno-style reason (ECONNREFUSED, EPOLICY ...)
 *           so the desktop can give the application the precise SOCKS/HTTP failure; with EPOLICY,
 *           `X-Braid-Reason: <reason>` says which rule refused it (loopback, private, link-local,
 *           cgnat, multicast, reserved, denied; see policy.ts).
 * Bytes the client sends right after its request (before the 200) are forwarded once connected.
 *
 * Braid's own client adds `X-Braid-Seal: 1`: a promise never to ask the relay for a KeyUpdate
 * (RFC 8446 4.6.3, request_update), which Node's TLS at the relay would answer with a record of its
 * own. With it the relay may write the download's records from the addon (proxy/seal-tunnel.ts);
 * without it (curl, any other HTTPS proxy client) they stay in Node's TLS. BRAID_SEAL=0 at the
 * client leaves both directions of its connections in Node's TLS.
 */
import net from 'node:net';
import { BraidError, errorMessage } from '../errors';

export const RELAY_USER = 'braid';
export const MAX_HEAD_BYTES = 8192;

export interface Head {
  startLine: string;
  headers: Map<string, string>;  // lower-case names; repeated headers joined with ", "
  rest: Buffer;                  // bytes after the blank line
}

/** Finds a complete head in `buf`; null if more bytes are needed. Throws when it cannot be one. */
export function parseHead(buf: Buffer): Head | null {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) {
    if (buf.length > MAX_HEAD_BYTES) throw new BraidError('EHEADTOOBIG', `header block exceeds ${MAX_HEAD_BYTES} bytes`);
    return null;
  }
  if (end > MAX_HEAD_BYTES) throw new BraidError('EHEADTOOBIG', `header block exceeds ${MAX_HEAD_BYTES} bytes`);
  const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) throw new BraidError('EBADHEAD', 'malformed header line');
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers.set(name, headers.has(name) ? `${headers.get(name)}, ${value}` : value);
  }
  return { startLine: lines[0], headers, rest: buf.subarray(end + 4) };
}

/** Collects a peer's bytes until they hold a complete head; both ends of the relay read one. */
export class HeadReader {
  private buf: Buffer = Buffer.alloc(0);

  /** The head once complete, null while more bytes are needed; throws as parseHead does. */
  push(chunk: Buffer): Head | null {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    return parseHead(this.buf);
  }
}

export function formatAuthority(host: string, port: number): string {
  return net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}

/** "host:port" or "[v6]:port" → parts; null if malformed. */
export function parseAuthority(text: string): { host: string; port: number } | null {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^\s:[\]/]+)):(\d{1,5})$/.exec(text);
  if (!m) return null;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return null;
  const host = m[1] ?? m[2];
  if (m[1] && !net.isIPv6(m[1])) return null;
  return { host, port };
}

export function basicAuth(secret: string): string {
  return 'Basic ' + Buffer.from(`${RELAY_USER}:${secret}`).toString('base64');
}

/** The request header (lower case, as Head keeps them) of the promise above. */
export const SEAL_HEADER = 'x-braid-seal';

export function connectRequest(host: string, port: number, secret: string): string {
  const authority = formatAuthority(host, port);
  const seal = process.env.BRAID_SEAL === '0' ? '' : 'X-Braid-Seal: 1\r\n';
  return `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\nProxy-Authorization: ${basicAuth(secret)}\r\n${seal}\r\n`;
}

const REASONS: Record<number, string> = {
  200: 'Connection Established', 400: 'Bad Request', 403: 'Forbidden', 405: 'Method Not Allowed',
  407: 'Proxy Authentication Required', 429: 'Too Many Requests', 431: 'Request Header Fields Too Large',
  502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout',
};

export function relayResponse(status: number, code?: string, message?: string, headers: Record<string, string> = {}): string {
  const lines = [`HTTP/1.1 ${status} ${REASONS[status] ?? 'Error'}`];
  if (status === 407) lines.push('Proxy-Authenticate: Basic realm="braid"');
  if (code) lines.push(`X-Braid-Error: ${code}`);
  for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`);
  if (status !== 200) {
    const body = (message ?? REASONS[status] ?? 'error') + '\n';
    lines.push('Content-Type: text/plain', `Content-Length: ${Buffer.byteLength(body)}`, 'Connection: close', '', body);
    return lines.join('\r\n');
  }
  return lines.join('\r\n') + '\r\n\r\n';
}

/** The status line's code, or throws when the peer does not speak HTTP. */
export function statusOf(head: Head): number {
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(head.startLine);
  if (!m) throw new BraidError('EPROTO', 'relay answered something that is not HTTP');
  return Number(m[1]);
}

/**
 * Sends CONNECT for `target` and reads the relay's answer head: the one exchange both the proxy's
 * relay dialer and `braid doctor` make. Resolves with the head and its status, the socket paused
 * and this function's listeners gone (bytes after the head are in `head.rest`); rejects with
 * ETIMEDOUT, EABORTED, ERELAYCLOSED or EPROTO. It never destroys the socket: the caller decides.
 */
export function requestConnect(
  socket: net.Socket,
  target: { host: string; port: number },
  secret: string,
  opts: { timeoutMs: number; signal?: AbortSignal },
): Promise<{ head: Head; status: number }> {
  return new Promise((resolve, reject) => {
    const reader = new HeadReader();
    const done = (err: Error | null, answer?: { head: Head; status: number }): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      opts.signal?.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve(answer!);
    };
    const timer = setTimeout(() => done(new BraidError('ETIMEDOUT', `the relay did not answer within ${opts.timeoutMs} ms`)), opts.timeoutMs);
    const onAbort = (): void => done(new BraidError('EABORTED', 'dial aborted'));
    const onClose = (): void => done(new BraidError('ERELAYCLOSED', 'the relay closed the connection before answering'));
    const onData = (chunk: Buffer): void => {
      let head: Head | null;
      try {
        head = reader.push(chunk);
      } catch (err) {
        return done(new BraidError('EPROTO', `bad answer from the relay: ${errorMessage(err)}`));
      }
      if (!head) return;
      // Bytes the destination sends next wait in the socket until the caller's listeners are in place.
      socket.pause();
      try {
        done(null, { head, status: statusOf(head) });
      } catch (err) {
        done(err as Error);
      }
    };
    if (opts.signal?.aborted) return onAbort();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.write(connectRequest(target.host, target.port, secret));
    socket.resume();
  });
}
