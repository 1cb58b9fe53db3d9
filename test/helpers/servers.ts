/**
 * Local origin servers for tests: HTTP or HTTPS serving random bytes made at test time, plus a few
 * endpoints that exercise framing (chunked, read-until-close, no-body statuses, request echo).
 * With `mptcp: true` the listening socket comes from the native addon, so MPTCP clients get MPTCP.
 */
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export function sha256(data: Buffer | string): string {
  return crypto.createHash('sha256').update(data).digest('hex');
}

export interface Cert {
  dir: string;
  certFile: string;
  keyFile: string;
  cert: Buffer;
  key: Buffer;
}

/** A throwaway self-signed certificate for CN=localhost (and the SAN curl checks). */
export function makeSelfSignedCert(): Cert {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-cert-'));
  const keyFile = path.join(dir, 'key.pem');
  const certFile = path.join(dir, 'cert.pem');
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1',
      '-keyout', keyFile, '-out', certFile],
    { stdio: 'ignore', timeout: 20_000 },
  );
  return { dir, certFile, keyFile, cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile) };
}

export interface OriginServer {
  port: number;
  host: string;
  blobs: Map<string, Buffer>;
  /** base URL such as http://127.0.0.1:1234 */
  base: string;
  /** Requests seen, for tests that check what the proxy sent. */
  requests: { method: string; url: string; headers: http.IncomingHttpHeaders; rawHeaders: string[] }[];
  close(): Promise<void>;
}

export interface OriginOptions {
  host?: string;                     // default 127.0.0.1
  tls?: Cert;
  /** Listen through the native addon with IPPROTO_MPTCP. */
  mptcp?: boolean;
  blobs?: Record<string, number>;    // name -> size in bytes of random content
  port?: number;                     // default 0: any free port
}

/**
 * Endpoints: /blob/NAME (Content-Length), /chunked/NAME (chunked), /close/NAME (no length, closes),
 * /empty (204), /not-modified (304), /echo (responds with JSON {sha256, length, headers} of the body).
 */
export async function startOrigin(opts: OriginOptions = {}): Promise<OriginServer> {
  const host = opts.host ?? '127.0.0.1';
  const blobs = new Map<string, Buffer>();
  for (const [name, size] of Object.entries(opts.blobs ?? { big: 3 * 1024 * 1024 })) blobs.set(name, crypto.randomBytes(size));
  const requests: OriginServer['requests'] = [];
  const sockets = new Set<net.Socket>();

  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders });
    const [, kind, name] = (req.url ?? '').split('/');
    const blob = name ? blobs.get(name) : undefined;
    if (kind === 'echo') {
      const parts: Buffer[] = [];
      req.on('data', (d: Buffer) => parts.push(d));
      req.on('end', () => {
        const body = Buffer.concat(parts);
        const out = JSON.stringify({ sha256: sha256(body), length: body.length, headers: req.headers });
        res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(out) });
        res.end(out);
      });
      return;
    }
    if (kind === 'empty') {
      res.writeHead(204);
      res.end();
      return;
    }
    if (kind === 'not-modified') {
      res.writeHead(304, { ETag: '"x"' });
      res.end();
      return;
    }
    if (!blob) {
      res.writeHead(404, { 'Content-Length': 0 });
      res.end();
      return;
    }
    if (kind === 'blob') {
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': blob.length });
      res.end(req.method === 'HEAD' ? undefined : blob);
    } else if (kind === 'chunked') {
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Transfer-Encoding': 'chunked' });
      // Uneven pieces so chunk boundaries fall everywhere.
      for (let off = 0, i = 0; off < blob.length; i++) {
        const n = Math.min(blob.length - off, 1000 + ((i * 7919) % 70000));
        res.write(blob.subarray(off, off + n));
        off += n;
      }
      res.end();
    } else if (kind === 'close') {
      // Hand-written: node's server would add chunking; this is the read-until-close framing.
      const sock = req.socket;
      sock.write('HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n');
      sock.end(blob);
    } else {
      res.writeHead(404, { 'Content-Length': 0 });
      res.end();
    }
  };

  const server: net.Server = opts.tls ? https.createServer({ key: opts.tls.key, cert: opts.tls.cert }, handler) : http.createServer(handler);
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    if (opts.mptcp) {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const native = require('../../electron/core/native/mptcp') as typeof import('../../electron/core/native/mptcp');
      const fd = native.listenFd({ host, port: opts.port ?? 0, mptcp: true });
      server.listen({ fd }, () => resolve());
    } else {
      server.listen({ host, port: opts.port ?? 0 }, () => resolve());
    }
  });
  const addr = server.address() as net.AddressInfo;
  // A listen({fd}) server reports the fd's address through the handle.
  const port = addr.port;
  const scheme = opts.tls ? 'https' : 'http';
  const urlHost = net.isIPv6(host) ? `[${host}]` : host;
  return {
    port,
    host,
    blobs,
    requests,
    base: `${scheme}://${urlHost}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A loopback port that refuses connections (bound, then closed; nothing else binds it meanwhile). */
export async function refusedPort(host = '127.0.0.1'): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen({ host, port: 0 }, () => resolve()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/** Whether the native addon loads and the kernel does MPTCP; the reason when not. */
export function mptcpAvailable(): { ok: boolean; reason: string } {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const native = require('../../electron/core/native/mptcp') as typeof import('../../electron/core/native/mptcp');
    const s = native.supported();
    return { ok: s.mptcp, reason: s.reason ?? '' };
  } catch (err) {
    return { ok: false, reason: `native addon not loaded: ${(err as Error).message}` };
  }
}
