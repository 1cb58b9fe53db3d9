/**
 * HTTP forwarding details over raw sockets, against hand-written origins whose exact bytes we
 * control: pipelining, a kept-alive origin connection that the origin closes (retried once),
 * 100 Continue, 101 Switching Protocols becoming a tunnel, HTTP/1.0 clients, and hop-by-hop headers.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { BraidProxy, startBraid } from './helpers/proc';
import { readBytes } from './helpers/raw-client';

let proxy: BraidProxy;

before(async () => {
  proxy = await startBraid(['up', '--port', '0', '--dial', 'tcp']);
});
after(() => proxy?.stop());

type Handler = (sock: net.Socket, request: string, index: number) => void;

/** An origin that splits requests on the blank line (bodyless requests only) and calls `handler`. */
async function rawOrigin(handler: Handler): Promise<{ port: number; seen: string[]; connections: number; close(): Promise<void> }> {
  const state = { port: 0, seen: [] as string[], connections: 0, close: async () => {} };
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    state.connections++;
    sockets.add(sock);
    sock.once('close', () => sockets.delete(sock));
    sock.on('error', () => {});
    let buf = '';
    let index = 0;
    sock.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      for (let i = 0; i < 100; i++) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) break;
        const req = buf.slice(0, end + 4);
        buf = buf.slice(end + 4);
        state.seen.push(req);
        handler(sock, req, index++);
      }
    });
  });
  await new Promise<void>((r) => server.listen({ host: '127.0.0.1', port: 0 }, () => r()));
  state.port = (server.address() as net.AddressInfo).port;
  state.close = () =>
    new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    });
  return state;
}

async function client(): Promise<net.Socket> {
  const s = net.connect({ host: '127.0.0.1', port: proxy.port });
  s.on('error', () => {});
  await new Promise((r) => s.once('connect', r));
  return s;
}

/** Reads one response with a Content-Length body (bounded). */
async function readResponse(s: net.Socket): Promise<{ head: string; body: string }> {
  let head = '';
  for (let i = 0; i < 10_000 && !head.endsWith('\r\n\r\n'); i++) head += (await readBytes(s, 1)).toString('latin1');
  const len = Number(/\r\ncontent-length: (\d+)/i.exec(head)?.[1] ?? 0);
  const body = len > 0 ? (await readBytes(s, len)).toString('latin1') : '';
  return { head, body };
}

const ok = (body: string, extra = ''): string => `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n${extra}\r\n${body}`;

describe('HTTP forwarding details', () => {
  test('pipelined requests are answered in order', async () => {
    const origin = await rawOrigin((sock, req) => {
      const path = /^GET (\S+)/.exec(req)![1];
      sock.write(ok(`you asked ${path}`));
    });
    const s = await client();
    try {
      const u = `http://127.0.0.1:${origin.port}`;
      s.write(`GET ${u}/one HTTP/1.1\r\nHost: x\r\n\r\nGET ${u}/two HTTP/1.1\r\nHost: x\r\n\r\nGET ${u}/three HTTP/1.1\r\nHost: x\r\n\r\n`);
      for (const p of ['/one', '/two', '/three']) assert.equal((await readResponse(s)).body, `you asked ${p}`);
      assert.equal(origin.connections, 1, 'one origin connection for the three');
    } finally {
      s.destroy();
      await origin.close();
    }
  });

  test('an origin closing its kept-alive connection on our next request gets the request again on a new one', async () => {
    const origin = await rawOrigin((sock, _req, index) => {
      if (index === 0) sock.write(ok('first'));
      else sock.destroy(); // the keep-alive race: the origin gave up on this connection
    });
    const s = await client();
    try {
      const u = `http://127.0.0.1:${origin.port}`;
      s.write(`GET ${u}/a HTTP/1.1\r\nHost: x\r\n\r\n`);
      assert.equal((await readResponse(s)).body, 'first');
      s.write(`GET ${u}/b HTTP/1.1\r\nHost: x\r\n\r\n`);
      const r = await readResponse(s);
      assert.match(r.head, /^HTTP\/1\.1 200 /);
      assert.equal(r.body, 'first', 'answered by the fresh connection');
      assert.equal(origin.connections, 2);
    } finally {
      s.destroy();
      await origin.close();
    }
  });

  test('100 Continue is passed through before the final response', async () => {
    const origin = await rawOrigin((sock) => {
      sock.write('HTTP/1.1 100 Continue\r\n\r\n');
      setTimeout(() => sock.write(ok('done')), 20);
    });
    const s = await client();
    try {
      s.write(`GET http://127.0.0.1:${origin.port}/ HTTP/1.1\r\nHost: x\r\n\r\n`);
      const interim = await readBytes(s, 'HTTP/1.1 100 Continue\r\n\r\n'.length);
      assert.equal(interim.toString(), 'HTTP/1.1 100 Continue\r\n\r\n');
      assert.equal((await readResponse(s)).body, 'done');
    } finally {
      s.destroy();
      await origin.close();
    }
  });

  test('101 Switching Protocols turns the connection into a tunnel', async () => {
    const origin = await rawOrigin((sock) => {
      sock.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n');
      sock.removeAllListeners('data');
      sock.on('data', (d: Buffer) => sock.write(Buffer.from(d.toString().toUpperCase())));
    });
    const s = await client();
    try {
      s.write(`GET http://127.0.0.1:${origin.port}/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n`);
      const head = (await readBytes(s, 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n'.length)).toString();
      assert.match(head, /^HTTP\/1\.1 101 /);
      assert.match(origin.seen[0], /\r\nUpgrade: echo\r\n/);
      assert.match(origin.seen[0], /\r\nConnection: Upgrade\r\n/);
      s.write('hello tunnel');
      assert.equal((await readBytes(s, 12)).toString(), 'HELLO TUNNEL');
    } finally {
      s.destroy();
      await origin.close();
    }
  });

  test('an HTTP/1.0 client gets Connection: close and the connection is closed after the response', async () => {
    const origin = await rawOrigin((sock) => sock.write(ok('old')));
    const s = await client();
    try {
      s.write(`GET http://127.0.0.1:${origin.port}/ HTTP/1.0\r\n\r\n`);
      const r = await readResponse(s);
      assert.equal(r.body, 'old');
      assert.match(r.head, /\r\nConnection: close\r\n/);
      assert.match(origin.seen[0], /^GET \/ HTTP\/1\.0\r\n/);
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('not closed')), 3000);
        s.once('end', () => (clearTimeout(t), resolve()));
        s.resume();
      });
    } finally {
      s.destroy();
      await origin.close();
    }
  });

  test('a client that half-closes right after its request still gets the response', async () => {
    const origin = await rawOrigin((sock) => sock.write(ok('bye')));
    const s = net.connect({ host: '127.0.0.1', port: proxy.port, allowHalfOpen: true });
    s.on('error', () => {});
    try {
      s.end(`GET http://127.0.0.1:${origin.port}/ HTTP/1.1\r\nHost: x\r\n\r\n`);
      const r = await readResponse(s);
      assert.equal(r.body, 'bye');
      assert.match(r.head, /\r\nConnection: close\r\n/);
    } finally {
      s.destroy();
      await origin.close();
    }
  });

  test('hop-by-hop headers are dropped both ways, end-to-end headers kept byte for byte', async () => {
    const origin = await rawOrigin((sock) =>
      sock.write(ok('h', 'Keep-Alive: timeout=5\r\nConnection: keep-alive, X-Hop\r\nX-Hop: secret\r\nX-Kept:  spaced  value\r\n')),
    );
    const s = await client();
    try {
      s.write(
        `GET http://user:pw@127.0.0.1:${origin.port}/p?q=1#frag HTTP/1.1\r\nHost: wrong\r\nConnection: X-Drop\r\nX-Drop: 1\r\nProxy-Connection: keep-alive\r\nKeep-Alive: 5\r\nTE: trailers\r\nX-Custom:  a  b \r\n\r\n`,
      );
      const r = await readResponse(s);
      const req = origin.seen[0];
      assert.match(req, /^GET \/p\?q=1 HTTP\/1\.1\r\n/);
      assert.match(req, new RegExp(`\\r\\nHost: 127\\.0\\.0\\.1:${origin.port}\\r\\n`));
      for (const h of ['X-Drop', 'Connection', 'Proxy-Connection', 'Keep-Alive', 'TE']) assert.doesNotMatch(req, new RegExp(`\\r\\n${h}:`, 'i'), h);
      assert.match(req, /\r\nX-Custom:  a  b \r\n/);
      for (const h of ['X-Hop', 'Connection', 'Keep-Alive']) assert.doesNotMatch(r.head, new RegExp(`\\r\\n${h}:`, 'i'), h);
      assert.match(r.head, /\r\nX-Kept:  spaced  value\r\n/);
    } finally {
      s.destroy();
      await origin.close();
    }
  });

  test('a response cut short by the origin cuts the client connection (no silent truncation)', async () => {
    const origin = await rawOrigin((sock) => {
      sock.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b');
      setTimeout(() => sock.destroy(), 20);
    });
    const s = await client();
    try {
      s.write(`GET http://127.0.0.1:${origin.port}/ HTTP/1.1\r\nHost: x\r\n\r\n`);
      const got: Buffer[] = [];
      s.on('data', (d: Buffer) => got.push(d));
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('client not cut')), 3000);
        s.once('close', () => (clearTimeout(t), resolve()));
      });
      assert.match(Buffer.concat(got).toString(), /only ten b$/);
    } finally {
      s.destroy();
      await origin.close();
    }
  });

  test('a garbage status line from the origin gets 502', async () => {
    const origin = await rawOrigin((sock) => sock.end('SSH-2.0-OpenSSH\r\n\r\n'));
    const s = await client();
    try {
      s.write(`GET http://127.0.0.1:${origin.port}/ HTTP/1.1\r\nHost: x\r\n\r\n`);
      const r = await readResponse(s);
      assert.match(r.head, /^HTTP\/1\.1 502 /);
    } finally {
      s.destroy();
      await origin.close();
    }
  });

  test('the proxy is still up', () => assert.ok(proxy.alive(), proxy.stderr()));
});
