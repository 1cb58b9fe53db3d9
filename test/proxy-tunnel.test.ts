/**
 * The byte pump and the connection tracker, in-process with ProxyServer: half-close in both directions,
 * byte counts, the idle timeout, stop() with live tunnels, MPTCP status per connection, and no fd
 * left behind after many connections.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { defaultConfig, BraidConfig } from '../electron/core/config/schema';
import { pump } from '../electron/core/proxy/pump';
import { ProxyServer } from '../electron/core/proxy/server';
import type { ConnectionSnapshot } from '../electron/core/proxy/tracker';
import { readBytes, socksConnectRequest } from './helpers/raw-client';
import { mptcpAvailable, sha256 } from './helpers/servers';
import { requireFor } from './helpers/prerequisites';
import { socketPair } from './helpers/sockets';

const mp = mptcpAvailable();

interface SinkResult {
  received: Buffer;
}

/**
 * An origin that optionally sends `greeting` and half-closes at once, and reports everything it
 * received once the client half-closes, then answers with the SHA-256 of it (if still writable).
 */
async function startHalfCloseOrigin(opts: { greeting?: Buffer; mptcp?: boolean } = {}) {
  const results: Promise<SinkResult>[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
    s.on('error', () => {});
    if (opts.greeting) s.end(opts.greeting);
    const parts: Buffer[] = [];
    results.push(
      new Promise<SinkResult>((resolve) => {
        s.on('data', (d: Buffer) => parts.push(d));
        s.on('end', () => {
          const received = Buffer.concat(parts);
          if (!opts.greeting) s.end(sha256(received));
          resolve({ received });
        });
      }),
    );
  });
  await new Promise<void>((r) => {
    if (opts.mptcp) {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const native = require('../electron/core/native/mptcp') as typeof import('../electron/core/native/mptcp');
      server.listen({ fd: native.listenFd({ host: '127.0.0.1', port: 0 }) }, () => r());
    } else server.listen({ host: '127.0.0.1', port: 0 }, () => r());
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    results,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

function config(patch: (c: BraidConfig) => void): BraidConfig {
  const c = defaultConfig();
  c.proxy.port = 0;
  c.proxy.dial = 'tcp';
  patch(c);
  return c;
}

async function socksTunnel(proxyPort: number, destPort: number): Promise<net.Socket> {
  const s = net.connect({ host: '127.0.0.1', port: proxyPort, allowHalfOpen: true });
  s.on('error', () => {});
  s.write(Buffer.concat([Buffer.from([5, 1, 0]), socksConnectRequest('127.0.0.1', destPort)]));
  const reply = await readBytes(s, 12);
  assert.equal(reply.subarray(0, 4).toString('hex'), '05000500', 'SOCKS reply succeeded');
  return s;
}

function collectUntilEnd(s: net.Socket, timeoutMs = 10_000): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const parts: Buffer[] = [];
    const timer = setTimeout(() => reject(new Error(`no end within ${timeoutMs} ms after ${Buffer.concat(parts).length} bytes`)), timeoutMs);
    s.on('data', (d: Buffer) => parts.push(d));
    s.once('end', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(parts));
    });
    s.resume();
  });
}

function waitFor<T>(what: string, fn: () => T | undefined | null | false, timeoutMs = 5000): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t0 = Date.now();
    const tick = (): void => {
      const v = fn();
      if (v) return resolve(v);
      if (Date.now() - t0 > timeoutMs) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(tick, 20);
    };
    tick();
  });
}

describe('pump', () => {
  let proxy: ProxyServer;
  const closed: ConnectionSnapshot[] = [];

  before(async () => {
    proxy = new ProxyServer(config(() => {}));
    proxy.tracker.on('closed', (c) => closed.push(c));
    await proxy.start();
  });
  after(() => proxy.stop());

  test('client half-close: the origin still answers after our FIN, bytes counted exactly', async () => {
    const origin = await startHalfCloseOrigin();
    try {
      const s = await socksTunnel(proxy.address!.port, origin.port);
      const data = crypto.randomBytes(1024 * 1024 + 3);
      s.end(data);
      const answer = await collectUntilEnd(s);
      assert.equal(answer.toString(), sha256(data));
      const got = await origin.results[0];
      assert.equal(got.received.length, data.length);
      s.destroy();
      const snap = await waitFor('closed event', () => closed.find((c) => c.destination?.port === origin.port));
      assert.equal(snap.bytesUp, data.length);
      assert.equal(snap.bytesDown, answer.length);
      assert.equal(snap.protocol, 'socks5');
      assert.equal(snap.transport, 'tcp');
      assert.equal(snap.destination?.address, '127.0.0.1');
    } finally {
      await origin.close();
    }
  });

  for (const kind of ['SOCKS5', 'HTTP CONNECT'] as const) {
    test(`${kind}: request, data and FIN sent at once before the proxy has connected`, async () => {
      const origin = await startHalfCloseOrigin();
      try {
        const data = crypto.randomBytes(200_000);
        const s = net.connect({ host: '127.0.0.1', port: proxy.address!.port, allowHalfOpen: true });
        s.on('error', () => {});
        const hello =
          kind === 'SOCKS5'
            ? Buffer.concat([Buffer.from([5, 1, 0]), socksConnectRequest('127.0.0.1', origin.port)])
            : Buffer.from(`CONNECT 127.0.0.1:${origin.port} HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\n\r\n`);
        s.end(Buffer.concat([hello, data]));
        const all = await collectUntilEnd(s);
        s.destroy();
        const replyLen = kind === 'SOCKS5' ? 12 : 'HTTP/1.1 200 Connection Established\r\n\r\n'.length;
        assert.equal(all.subarray(replyLen).toString(), sha256(data));
      } finally {
        await origin.close();
      }
    });
  }

  test('origin half-close: the client gets EOF and can still send', async () => {
    const greeting = crypto.randomBytes(300_000);
    const origin = await startHalfCloseOrigin({ greeting });
    try {
      const s = await socksTunnel(proxy.address!.port, origin.port);
      const fromOrigin = await collectUntilEnd(s);
      assert.equal(sha256(fromOrigin), sha256(greeting));
      const late = crypto.randomBytes(500_000);
      s.end(late);
      const got = await origin.results[0];
      assert.equal(sha256(got.received), sha256(late));
      s.destroy();
    } finally {
      await origin.close();
    }
  });
});


/**
 * A pump from an application to a sink that does not read: the application writes `total` random
 * bytes, 1.5 s pass (the kernel's buffers fill, the pump must stop reading), then the sink reads
 * everything. What was held in userland towards the sink meanwhile, at most (`peak`, sampled every
 * ms) and after the 1.5 s, and what the application still had queued then.
 */
async function stallThenDrain(opts: { maxQueued: number; maxQueuedUp?: number; total: number }) {
  const [app, proxyIn] = await socketPair();
  const [proxyOut, sink] = await socketPair();
  sink.pause();
  const done = pump(proxyIn, proxyOut, { idleMs: 30_000, maxQueued: opts.maxQueued, maxQueuedUp: opts.maxQueuedUp });
  const data = crypto.randomBytes(opts.total);
  let peak = 0;
  const sampler = setInterval(() => (peak = Math.max(peak, proxyOut.writableLength)), 1);
  // The application writes everything; the kernel's buffers fill, then ours must stop growing.
  app.end(data);
  await new Promise((r) => setTimeout(r, 1500));
  const stalledUserland = proxyOut.writableLength;
  const appStillQueued = app.writableLength;
  const parts: Buffer[] = [];
  sink.on('data', (d: Buffer) => parts.push(d));
  const received = new Promise<Buffer>((r) => sink.once('end', () => r(Buffer.concat(parts))));
  sink.resume();
  const got = await received;
  clearInterval(sampler);
  sink.end();
  const result = await done;
  app.destroy();
  sink.destroy();
  return { data, got, result, peak, stalledUserland, appStillQueued };
}

describe('pump backpressure', () => {
  test('a destination that stops reading pauses the source: userland queue bounded, every byte delivered', async () => {
    const maxQueued = 64 * 1024;
    const total = 48 * 1024 * 1024;
    const { data, got, result, peak, stalledUserland, appStillQueued } = await stallThenDrain({ maxQueued, total });
    assert.ok(appStillQueued > 0, 'the transfer should have been held back while the sink did not read (data larger than all kernel buffers)');
    // One read's worth (64 KiB) may land after the pause decision, and a paused stream keeps up to
    // its own high-water mark: anything beyond that would mean reading went on without bound.
    assert.ok(stalledUserland <= maxQueued + 128 * 1024, `queued in userland while stalled: ${stalledUserland}`);
    assert.ok(peak <= maxQueued + 128 * 1024, `peak userland queue: ${peak}`);
    assert.equal(got.length, total);
    assert.equal(sha256(got), sha256(data));
    assert.equal(result.reason, 'done');
  });
});

describe('pump backpressure per direction', () => {
  test('maxQueuedUp bounds what is held towards the destination on its own (the relay holds more there)', async () => {
    const maxQueued = 64 * 1024;
    const maxQueuedUp = 1024 * 1024;
    const total = 48 * 1024 * 1024;
    const { data, got, result, stalledUserland } = await stallThenDrain({ maxQueued, maxQueuedUp, total });
    assert.ok(stalledUserland > maxQueued + 128 * 1024, `held only ${stalledUserland} bytes towards the destination: maxQueuedUp was not applied`);
    assert.ok(stalledUserland <= maxQueuedUp + 128 * 1024, `queued in userland while stalled: ${stalledUserland}`);
    assert.equal(got.length, total);
    assert.equal(sha256(got), sha256(data));
    assert.equal(result.reason, 'done');
  });
});

describe('idle timeout', () => {
  test('a tunnel with no traffic is closed after idleMs', async () => {
    const proxy = new ProxyServer(config((c) => (c.timeouts.idleMs = 300)));
    await proxy.start();
    const origin = await startHalfCloseOrigin();
    try {
      const s = await socksTunnel(proxy.address!.port, origin.port);
      const t0 = Date.now();
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('not closed within 5 s')), 5000);
        // Our side is half-open capable: the proxy's close shows up as EOF.
        const done = (): void => {
          clearTimeout(timer);
          resolve();
        };
        s.once('end', done);
        s.once('close', done);
        s.resume();
      });
      const ms = Date.now() - t0;
      assert.ok(ms >= 250 && ms < 3000, `closed after ${ms} ms, idleMs 300`);
    } finally {
      await origin.close();
      await proxy.stop();
    }
  });
});

describe('stop()', () => {
  test('closes the listener and every live tunnel, then resolves', async () => {
    const proxy = new ProxyServer(config(() => {}));
    const { port } = await proxy.start();
    const origin = await startHalfCloseOrigin();
    try {
      const tunnels = await Promise.all([0, 1, 2].map(() => socksTunnel(port, origin.port)));
      // A fourth client still in its handshake.
      const pending = net.connect({ host: '127.0.0.1', port });
      pending.on('error', () => {});
      await new Promise((r) => pending.once('connect', r));
      await waitFor('4 tracked connections', () => proxy.tracker.size === 4);
      const closes = [...tunnels, pending].map(
        (s) => new Promise<void>((r) => (s.destroyed ? r() : (s.once('end', () => r()), s.once('close', () => r())))),
      );
      for (const s of [...tunnels, pending]) s.resume();
      await proxy.stop();
      assert.equal(proxy.tracker.size, 0);
      await Promise.race([Promise.all(closes), new Promise((_, rej) => setTimeout(() => rej(new Error('client sockets still open')), 3000))]);
      await assert.rejects(
        new Promise((resolve, reject) => {
          const s = net.connect({ host: '127.0.0.1', port }, () => resolve(s));
          s.on('error', reject);
        }),
        /ECONNREFUSED/,
      );
    } finally {
      await origin.close();
    }
  });
});

describe('MPTCP status', { skip: requireFor('MPTCP status (proxy-tunnel.test.ts)', mp.ok ? false : `MPTCP not available: ${mp.reason}`) }, () => {
  test('subflows() reads the live MPTCP state of the outbound socket', async () => {
    const proxy = new ProxyServer(config((c) => (c.proxy.dial = 'mptcp')));
    const { port } = await proxy.start();
    const origin = await startHalfCloseOrigin({ mptcp: true });
    try {
      assert.equal(proxy.dialMode, 'mptcp');
      const s = await socksTunnel(port, origin.port);
      const conn = await waitFor('tracked connection', () => [...proxy.tracker.list()].find((c) => c.destination?.port === origin.port));
      assert.equal(conn.transport, 'mptcp');
      const info = proxy.tracker.get(conn.id)!.subflows();
      assert.ok(info, 'socketInfo returned');
      assert.equal(info.mptcp, true);
      assert.equal(info.fallback, false);
      s.destroy();
    } finally {
      await origin.close();
      await proxy.stop();
    }
  });
});

describe('resources', () => {
  test('many connections leave no file descriptor behind', async () => {
    const proxy = new ProxyServer(config(() => {}));
    const { port } = await proxy.start();
    const origin = await startHalfCloseOrigin();
    try {
      const baseline = fs.readdirSync('/proc/self/fd').length;
      for (let round = 0; round < 5; round++) {
        await Promise.all(
          Array.from({ length: 20 }, async () => {
            const s = await socksTunnel(port, origin.port);
            s.end(crypto.randomBytes(1000));
            await collectUntilEnd(s);
            s.destroy();
          }),
        );
      }
      await waitFor('tracker empty', () => proxy.tracker.size === 0);
      let now = fs.readdirSync('/proc/self/fd').length;
      for (let i = 0; i < 50 && now > baseline; i++) {
        await new Promise((r) => setTimeout(r, 50));
        now = fs.readdirSync('/proc/self/fd').length;
      }
      assert.ok(now <= baseline, `${now - baseline} file descriptors left after 100 connections`);
    } finally {
      await origin.close();
      await proxy.stop();
    }
  });
});
