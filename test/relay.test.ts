// The relay on loopback: standard clients (curl as an HTTPS-proxy client) and Braid's own relay
// dialer against a real RelayServer, covering auth, pinning, policy, limits, garbage and metrics.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { loadOrCreateCredentials, type RelayCredentials } from '../electron/core/relay/credentials';
import { RelayServer, type RelayServerOptions } from '../electron/core/relay/server';
import { RelayDialer } from '../electron/core/relay/client';
import { DestinationPolicy } from '../electron/core/relay/policy';
import { formatRelayLink, parseRelayLink, type RelayLink } from '../electron/core/relay/share-link';
import { loadNative } from '../electron/core/proxy/native';
import { startBytesServer, expectedSha256, type BytesServer } from './helpers/mptcp-server';

const quiet = { info() {}, warn() {}, debug() {} };
let dir: string;
let creds: RelayCredentials;
let origin: BytesServer;

function relayOptions(over: Partial<RelayServerOptions> = {}): RelayServerOptions {
  return {
    host: '127.0.0.1', port: 0, credentials: creds, policy: new DestinationPolicy({ allow: ['127.0.0.0/8'] }),
    dial: 'mptcp', maxConnections: 64, maxPerClient: 32, handshakeMs: 2000, idleMs: 30_000, connectMs: 3000,
    metrics: { host: '127.0.0.1', port: 0 }, log: quiet, ...over,
  };
}

async function withRelay<T>(over: Partial<RelayServerOptions>, fn: (r: RelayServer, port: number) => Promise<T>): Promise<T> {
  const r = new RelayServer(relayOptions(over));
  const addr = await r.start();
  try {
    return await fn(r, addr.port);
  } finally {
    await r.stop();
  }
}

function curl(args: string[]): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  return new Promise((resolve) => {
    execFile('curl', ['-sS', '--max-time', '20', ...args], { encoding: 'buffer', maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code as number) ?? 1 : 0, stdout, stderr: stderr.toString() });
    });
  });
}

function getMetrics(r: RelayServer): Promise<string> {
  const port = r.metricsAddress()!.port;
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/metrics' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

function metric(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(name + ' ') || l.startsWith(name + '{'));
  return line ? Number(line.split(' ').pop()) : NaN;
}

function link(port: number, over: Partial<RelayLink> = {}): RelayLink {
  return { host: '127.0.0.1', port, secret: creds.secret, pin: creds.pin, ...over };
}

function dialer(l: RelayLink, poolSize = 0): RelayDialer {
  return new RelayDialer({ link: l, native: loadNative().mod, mode: 'mptcp', connectMs: 3000, poolSize, poolIdleMs: 20_000, log: quiet });
}

async function fetchThrough(sock: net.Socket, port: number, n: number): Promise<string> {
  sock.write(`GET /bytes/${n} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`);
  const chunks: Buffer[] = [];
  for await (const c of sock) chunks.push(c as Buffer);
  const all = Buffer.concat(chunks);
  const body = all.subarray(all.indexOf('\r\n\r\n') + 4);
  assert.equal(body.length, n);
  return crypto.createHash('sha256').update(body).digest('hex');
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-relay-test-'));
  creds = loadOrCreateCredentials({ dir });
  origin = await startBytesServer({ host: '127.0.0.1' });
});

after(async () => {
  await origin?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('credentials are created once and reused; the link round-trips', () => {
  assert.equal(creds.created, true);
  const again = loadOrCreateCredentials({ dir });
  assert.equal(again.created, false);
  assert.equal(again.secret, creds.secret);
  assert.equal(again.pin, creds.pin);
  const l = { host: '2001:db8::1', port: 8443, secret: creds.secret, pin: creds.pin, name: 'my relay' };
  assert.deepEqual(parseRelayLink(formatRelayLink(l)), l);
  assert.throws(() => parseRelayLink('http://x'), { code: 'EBADLINK' });
  assert.throws(() => parseRelayLink(`braid://${creds.secret}@h:1`), /pin/);
  assert.throws(() => parseRelayLink(`braid://short@h:1?pin=${creds.pin}`), /secret/);
});

test('curl, as a standard HTTPS-proxy client, downloads through the relay intact', async () => {
  await withRelay({}, async (r, port) => {
    const n = 3 * 1024 * 1024;
    const res = await curl(['--proxy', `https://127.0.0.1:${port}`, '--proxy-insecure', '--proxytunnel', '--proxy-user', `braid:${creds.secret}`,
      `http://127.0.0.1:${origin.port}/bytes/${n}`]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(crypto.createHash('sha256').update(res.stdout).digest('hex'), expectedSha256(n));
    const m = await getMetrics(r);
    assert.ok(metric(m, 'braid_relay_bytes_total{direction="down"}') >= n, m);
    assert.equal(metric(m, 'braid_relay_tunnels_total'), 1);
  });
});

test('no valid secret, no service; the secret never reaches the logs', async () => {
  const lines: string[] = [];
  const log = { info: (s: string) => lines.push(s), warn: (s: string) => lines.push(s), debug: (s: string) => lines.push(s) };
  await withRelay({ log }, async (r, port) => {
    for (const user of [`braid:wrong-secret-value-x`, null]) {
      const args = ['--proxy', `https://127.0.0.1:${port}`, '--proxy-insecure', '--proxytunnel', `http://127.0.0.1:${origin.port}/bytes/10`];
      if (user) args.unshift('--proxy-user', user);
      const res = await curl(args);
      assert.notEqual(res.code, 0);
      assert.match(res.stderr, /407/);
    }
    assert.equal(metric(await getMetrics(r), 'braid_relay_auth_failures_total'), 2);
    await assert.rejects(dialer(link(port, { secret: 'x'.repeat(32) })).dial({ host: '127.0.0.1', port: origin.port }), { code: 'ERELAYAUTH' });
  });
  assert.ok(lines.some((l) => /authentication failed/.test(l)));
  assert.ok(!lines.some((l) => l.includes(creds.secret)), 'a log line contains the secret');
});

test('private destinations are refused unless allowed; deny beats allow', async () => {
  await withRelay({ policy: new DestinationPolicy() }, async (r, port) => {
    await assert.rejects(dialer(link(port)).dial({ host: '127.0.0.1', port: origin.port }), { code: 'EPOLICY' });
    await assert.rejects(dialer(link(port)).dial({ host: 'localhost', port: origin.port }), { code: 'EPOLICY' });
    assert.equal(metric(await getMetrics(r), 'braid_relay_refused_total{reason="policy"}'), 2);
  });
  await withRelay({ policy: new DestinationPolicy({ allow: ['127.0.0.0/8'], deny: ['127.0.0.1/32'] }) }, async (_r, port) => {
    await assert.rejects(dialer(link(port)).dial({ host: '127.0.0.1', port: origin.port }), { code: 'EPOLICY' });
  });
});

test("Braid's relay dialer: pin checked, errors precise, relay down fails fast", async () => {
  await withRelay({}, async (_r, port) => {
    const d = dialer(link(port), 2);
    d.start();
    const res = await d.dial({ host: '127.0.0.1', port: origin.port });
    const info = loadNative().mod!.socketInfo(res.fd!);
    assert.equal(info.mptcp, true);
    assert.equal(info.fallback, false, 'client to relay must be real MPTCP');
    assert.equal(await fetchThrough(res.socket, origin.port, 100_000), expectedSha256(100_000));
    const closedPort = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    await assert.rejects(d.dial({ host: '127.0.0.1', port: closedPort }), { code: 'ECONNREFUSED' });
    d.close();
    const wrongPin = crypto.randomBytes(32).toString('base64url');
    await assert.rejects(dialer(link(port, { pin: wrongPin })).dial({ host: '127.0.0.1', port: origin.port }), { code: 'ERELAYPIN' });
  });
  const t0 = Date.now();
  const down = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  await assert.rejects(dialer(link(down)).dial({ host: '127.0.0.1', port: origin.port }), { code: 'ERELAYDOWN' });
  assert.ok(Date.now() - t0 < 2000, 'a refused relay must fail fast');
});

test('random bytes and half-finished TLS handshakes never take the relay down', async () => {
  await withRelay({ handshakeMs: 500 }, async (r, port) => {
    const garbage = [crypto.randomBytes(4096), Buffer.from('GET / HTTP/1.1\r\n\r\n'), Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])];
    const closed = garbage.map((g) => new Promise<void>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => s.write(g));
      s.on('error', () => {});
      s.on('close', () => resolve());
      s.resume();
    }));
    // A TLS client that completes the handshake and then says nothing: cut after handshakeMs.
    const silent = new Promise<void>((resolve) => {
      const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false });
      s.on('error', () => {});
      s.on('close', () => resolve());
      s.resume();
    });
    await Promise.race([Promise.all([...closed, silent]), new Promise((_, rej) => setTimeout(() => rej(new Error('relay kept a bad client open')), 8000))]);
    const n = 50_000;
    const res = await curl(['--proxy', `https://127.0.0.1:${port}`, '--proxy-insecure', '--proxytunnel', '--proxy-user', `braid:${creds.secret}`, `http://127.0.0.1:${origin.port}/bytes/${n}`]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.stdout.length, n);
    const m = await getMetrics(r);
    assert.ok(metric(m, 'braid_relay_refused_total{reason="tls"}') + metric(m, 'braid_relay_refused_total{reason="handshake"}') >= 3, m);
  });
});

test('per-client connection limit', async () => {
  await withRelay({ maxPerClient: 2 }, async (r, port) => {
    const held = await Promise.all([0, 1].map(() => new Promise<tls.TLSSocket>((resolve) => {
      const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => resolve(s));
      s.on('error', () => {});
    })));
    await assert.rejects(dialer(link(port)).dial({ host: '127.0.0.1', port: origin.port }), (e: NodeJS.ErrnoException) => /^ERELAY/.test(e.code ?? ''));
    assert.equal(metric(await getMetrics(r), 'braid_relay_refused_total{reason="limit"}'), 1);
    for (const s of held) s.destroy();
  });
});
