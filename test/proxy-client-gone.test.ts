/**
 * A client that gives up is let go at once, one that only half-closed is kept: in-process with
 * ProxyServer on loopback, for SOCKS5, HTTP CONNECT and plain HTTP forwarding, while the dial is
 * still pending (a destination whose accept queue is full, so its SYNs are dropped) and while the
 * destination is silent (accepts, reads, never answers, ignores our FIN).
 *
 * Before the fix, such a connection stayed tracked (and listed in the dashboard) until connectMs
 * for a pending dial and until idleMs (5 minutes) for a silent destination.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import os from 'node:os';
import readline from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { defaultConfig } from '../electron/core/config/schema';
import { PeerSocketProbe, procHexAddress } from '../electron/core/proxy/client-gone';
import { ProxyServer } from '../electron/core/proxy/server';
import { readBytes, socksConnectRequest } from './helpers/raw-client';

const CONNECT_MS = 30_000;   // far longer than the test waits: a pending dial must not be what ends it
const GONE_WITHIN_MS = 3000;   // the first look is a second after the FIN

type Kind = 'SOCKS5' | 'HTTP CONNECT' | 'HTTP GET';
const KINDS: Kind[] = ['SOCKS5', 'HTTP CONNECT', 'HTTP GET'];

function hello(kind: Kind, port: number): Buffer {
  if (kind === 'SOCKS5') return Buffer.concat([Buffer.from([5, 1, 0]), socksConnectRequest('127.0.0.1', port)]);
  if (kind === 'HTTP CONNECT') return Buffer.from(`CONNECT 127.0.0.1:${port} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
  return Buffer.from(`GET http://127.0.0.1:${port}/slow HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
}

/** Bytes of the proxy's own answer before the destination's (none for plain HTTP). */
const REPLY_BYTES: Record<Kind, number> = { SOCKS5: 2 + 10, 'HTTP CONNECT': 'HTTP/1.1 200 Connection Established\r\n\r\n'.length, 'HTTP GET': 0 };

/** Accepts, reads everything, answers only when told to, and ignores EOF (as a server busy computing would). */
async function silentOrigin() {
  const sockets = new Set<net.Socket>();
  const ended = new Set<net.Socket>();   // saw our FIN (or reset): the proxy let go of its side
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.once('close', () => (sockets.delete(s), ended.add(s)));
    s.once('end', () => ended.add(s));
    s.on('error', () => {});
    s.resume();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    sockets,
    ended,
    close: () => new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    }),
  };
}

/**
 * A listener that never accepts, with its one-slot accept queue filled: the kernel drops further
 * SYNs, so a dial to it stays pending (Node's own servers always accept, hence Python).
 */
async function unansweredPort(): Promise<{ port: number; stop(): void }> {
  const py = spawn('python3', ['-c', [
    'import socket, sys, time',
    's = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(0)',
    'print(s.getsockname()[1], flush=True)',
    'sys.stdin.read()',
  ].join('\n')], { stdio: ['pipe', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('python listener did not start')), 5000);
    readline.createInterface({ input: py.stdout! }).once('line', (l) => (clearTimeout(t), resolve(Number(l))));
  });
  const filler = net.connect({ host: '127.0.0.1', port });
  filler.on('error', () => {});
  await new Promise((r) => filler.once('connect', r));
  return { port, stop: () => (filler.destroy(), killChild(py)) };
}

function killChild(c: ChildProcess): void {
  c.stdin?.end();
  c.kill('SIGKILL');
}

function client(proxyPort: number): Promise<net.Socket> {
  const s = net.connect({ host: '127.0.0.1', port: proxyPort, allowHalfOpen: true });
  s.on('error', () => {});
  return new Promise((r) => s.once('connect', () => r(s)));
}

describe('a client that gives up is let go', () => {
  let proxy: ProxyServer;
  let origin: Awaited<ReturnType<typeof silentOrigin>>;
  let unanswered: Awaited<ReturnType<typeof unansweredPort>>;
  const closedAt = new Map<number, number>();

  before(async () => {
    const c = defaultConfig();
    c.proxy.port = 0;
    c.proxy.dial = 'tcp';
    c.timeouts.connectMs = CONNECT_MS;
    proxy = new ProxyServer(c);
    proxy.tracker.on('closed', (s) => closedAt.set(s.id, Date.now()));
    await proxy.start();
    origin = await silentOrigin();
    unanswered = await unansweredPort();
  });
  after(async () => {
    await proxy.stop();
    await origin.close();
    unanswered.stop();
  });

  /** Opens a client, waits until its tracked entry has reached a stage, returns both. */
  async function open(kind: Kind, port: number, ready: (id: number) => boolean): Promise<{ s: net.Socket; id: number }> {
    const known = new Set(proxy.tracker.list().map((c) => c.id));
    const s = await client(proxy.address!.port);
    s.write(hello(kind, port));
    const t0 = Date.now();
    for (;;) {
      // The protocol is known once the request is parsed; the dial starts right then.
      const mine = proxy.tracker.list().find((c) => !known.has(c.id) && c.protocol !== null);
      if (mine && ready(mine.id)) return { s, id: mine.id };
      if (Date.now() - t0 > 5000) throw new Error(`${kind}: no tracked connection at the expected stage`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async function goneWithin(id: number, ms: number): Promise<number> {
    const t0 = Date.now();
    while (Date.now() - t0 < ms) {
      if (closedAt.has(id)) return closedAt.get(id)! - t0;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`connection ${id} still tracked ${ms} ms after its client closed`);
  }

  for (const kind of KINDS) {
    test(`${kind}: the client closes while the dial is pending`, async () => {
      const { s, id } = await open(kind, unanswered.port, (i) => !proxy.tracker.get(i)?.destination?.address);
      await new Promise((r) => setTimeout(r, 200));
      assert.ok(proxy.tracker.get(id), 'the dial ended on its own: the test no longer shows anything');
      s.destroy();
      await goneWithin(id, GONE_WITHIN_MS);
    });

    test(`${kind}: the client closes while the destination is silent`, async () => {
      const before = new Set(origin.sockets);
      const { s, id } = await open(kind, origin.port, () => origin.sockets.size > before.size);
      const upstream = [...origin.sockets].find((x) => !before.has(x))!;
      await new Promise((r) => setTimeout(r, 200));
      s.destroy();
      await goneWithin(id, GONE_WITHIN_MS);
      await new Promise((r) => setTimeout(r, 100));
      assert.ok(origin.ended.has(upstream), 'the connection to the destination outlived the client');
    });

    test(`${kind}: a client that only half-closed is kept and still gets the answer, then let go when it closes`, async () => {
      const before = new Set(origin.sockets);
      const { s, id } = await open(kind, origin.port, () => origin.sockets.size > before.size);
      const upstream = [...origin.sockets].find((x) => !before.has(x))!;
      if (REPLY_BYTES[kind] > 0) await readBytes(s, REPLY_BYTES[kind]);
      s.end();
      // The first check (a second after the FIN) happens in this time; a half-closed client survives it.
      await new Promise((r) => setTimeout(r, 2000));
      assert.ok(proxy.tracker.get(id), 'a half-closed client was taken for gone');
      const answer = kind === 'HTTP GET' ? 'HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate' : 'late';
      upstream.write(answer);
      const got = await readBytes(s, kind === 'HTTP GET' ? 4 : answer.length, 5000).catch(() => null);
      assert.ok(got, 'the half-closed client did not get the late answer');
      // Now it goes for good: found by a later re-check, since no new event arrives.
      s.destroy();
      await goneWithin(id, 10_000);
    });
  }
});

describe('the kernel socket lookup', () => {
  test('/proc/net/tcp spelling of addresses', () => {
    // Little-endian hosts print each 32-bit word byte-reversed.
    if (os.endianness() !== 'LE') return;
    assert.equal(procHexAddress('127.0.0.1'), '0100007F');
    assert.equal(procHexAddress('::ffff:10.1.2.3'), '0302010A');
    assert.equal(procHexAddress('::1'), '00000000000000000000000001000000');
    assert.equal(procHexAddress('fe80::1:2'), '000080FE000000000000000002000100');
  });

  for (const [host, lookup] of [['127.0.0.1', 'diag'], ['::1', 'diag'], ['127.0.0.1', 'proc'], ['::1', 'proc']] as const) {
    test(`${host}, by ${lookup === 'diag' ? 'sock_diag' : '/proc/net'}: open, half-closed, closed and never-existed sockets`, async () => {
      const accepted = new Set<net.Socket>();
      const server = net.createServer({ allowHalfOpen: true }, (s) => (accepted.add(s), s.on('error', () => {})));
      await new Promise<void>((r) => server.listen(0, host, () => r()));
      const port = (server.address() as net.AddressInfo).port;
      const probe = new PeerSocketProbe({ batchMs: 1, lookup });
      const connect = (): Promise<net.Socket> => new Promise((r) => {
        const s = net.connect({ host, port, allowHalfOpen: true }, () => r(s));
        s.on('error', () => {});
      });
      try {
        const [a, b, c] = [await connect(), await connect(), await connect()];
        const end = (s: net.Socket) => ({ address: s.localAddress!, port: s.localPort! });
        const [ea, eb, ec] = [end(a), end(b), end(c)];
        const stateOf = (e: { address: string; port: number }) => probe.state(e, { address: host, port });
        b.end();
        c.destroy();
        await new Promise((r) => setTimeout(r, 100));
        assert.equal(await stateOf(ea), 'open');
        assert.equal(await stateOf(eb), 'open', 'half-closed');
        assert.equal(await stateOf(ec), 'closed');
        assert.equal(await stateOf({ address: host, port: 1 }), 'closed', 'no such socket on a local address');
        assert.equal(await stateOf({ address: '192.0.2.1', port: 40000 }), 'unknown', 'a remote client cannot be looked up');
        assert.equal(probe.method, lookup, 'answered the way asked (the addon did not fail)');
        a.destroy();
        b.destroy();
      } finally {
        for (const s of accepted) s.destroy();
        await new Promise<void>((r) => server.close(() => r()));
      }
    });
  }
});
