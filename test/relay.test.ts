// The relay on loopback: standard clients (curl as an HTTPS-proxy client) and Braid's own relay
// dialer against a real RelayServer, covering auth, pinning, policy, limits, garbage and metrics.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
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
import { HeadReader, MAX_HEAD_BYTES } from '../electron/core/relay/wire';
import { loadNative } from '../electron/core/proxy/native';
import { sealAvailable } from '../electron/core/native/seal';
import { startBytesServer, expectedSha256, type BytesServer } from './helpers/mptcp-server';
import { skipUnlessRoot, type NsProcess } from './helpers/netns';
import { curlDownload, missingPrerequisite, startByteServer, DIST } from './helpers/multipath-harness';
import {
  createRelayTopology, metricValue, relayTxBytes, scrapeMetrics, startRelay, startRelayClient, tempRelayDir,
  type RelayProcess, type RelayTopology,
} from './helpers/relay-topology';
import { requireFor } from './helpers/prerequisites';

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

/** Client ports of this host's established connections to 127.0.0.1:port, as the kernel lists them. */
function clientPortsTo(port: number): number[] {
  const out = execFileSync('ss', ['-Htn', 'state', 'established', `( dport = :${port} )`], { encoding: 'utf8', timeout: 5000 });
  return out.split('\n').filter((l) => l.trim()).map((l) => Number(l.trim().split(/\s+/).at(-2)!.split(':').pop()));
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

test('a head split anywhere is read whole, with the bytes after it; an endless one is refused', () => {
  const text = 'CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\nX-A: 1\r\nx-a: 2\r\n\r\nEARLY';
  const reader = new HeadReader();
  let head = null;
  const bytes = Buffer.from(text);
  for (let i = 0; i < bytes.length && !head; i++) head = reader.push(bytes.subarray(i, i + 1));
  assert.ok(head, 'complete after the blank line');
  assert.equal(head.startLine, 'CONNECT example.org:443 HTTP/1.1');
  assert.equal(head.headers.get('x-a'), '1, 2');
  const rest = new HeadReader().push(bytes);
  assert.equal(rest?.rest.toString(), 'EARLY');
  const endless = new HeadReader();
  assert.equal(endless.push(Buffer.from('GET / HTTP/1.1\r\n')), null);
  assert.throws(() => endless.push(Buffer.alloc(MAX_HEAD_BYTES, 'a')), { code: 'EHEADTOOBIG' });
  assert.throws(() => new HeadReader().push(Buffer.from('X\r\nno colon here\r\n\r\n')), { code: 'EBADHEAD' });
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
    // curl never promised to leave key updates alone (wire.ts, X-Braid-Seal): Node's TLS carried it.
    assert.equal(metric(m, 'braid_relay_sealed_downloads_total'), 0, m);
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
  await withRelay({}, async (r, port) => {
    const d = dialer(link(port), 2);
    d.start();
    const res = await d.dial({ host: '127.0.0.1', port: origin.port });
    const info = loadNative().mod!.socketInfo(res.fd!);
    assert.equal(info.mptcp, true);
    assert.equal(info.fallback, false, 'client to relay must be real MPTCP');
    assert.equal(await fetchThrough(res.socket, origin.port, 100_000), expectedSha256(100_000));
    // Braid's client sent X-Braid-Seal: the relay's addon sealed that download, the client's addon opened it.
    if (sealAvailable()) assert.equal(metric(await getMetrics(r), 'braid_relay_sealed_downloads_total'), 1);
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
  await withRelay({ handshakeMs: 500, requestWaitMs: 500 }, async (r, port) => {
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

test('a warm pooled connection outlives the handshake timeout (the pool stays warm)', async () => {
  await withRelay({ handshakeMs: 300 }, async (r, port) => {
    const d = dialer(link(port), 1);
    d.start();
    await new Promise((resolve) => setTimeout(resolve, 1200));
    const before = await getMetrics(r);
    assert.equal(metric(before, 'braid_relay_connections_total'), 1, 'the pool should hold exactly one connection');
    // The kernel's view of that one connection: its client port (ss lists an MPTCP subflow as TCP).
    const warmPorts = clientPortsTo(port);
    assert.equal(warmPorts.length, 1, `connections to the relay: ${warmPorts.join(', ')}`);
    const res = await d.dial({ host: '127.0.0.1', port: origin.port });
    assert.equal(res.raw.localPort, warmPorts[0], 'the tunnel does not run over the warm connection: the pool redialled');
    assert.equal(await fetchThrough(res.socket, origin.port, 1000), expectedSha256(1000));
    // Handing out the warm connection tops the pool up: exactly one new connection, never two (a
    // silent redial for the dial plus the refill).
    let after = await getMetrics(r);
    for (let i = 0; i < 40 && metric(after, 'braid_relay_connections_total') < 2; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      after = await getMetrics(r);
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
    after = await getMetrics(r);
    assert.equal(metric(after, 'braid_relay_connections_total'), 2, 'connections: the warm one and the one refill');
    assert.doesNotMatch(after, /^braid_relay_refused_total\{reason="handshake"\}/m, 'the relay cut an idle pooled connection');
    assert.equal(metric(after, 'braid_relay_tunnels_total'), 1);
    d.close();
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

// ---- end to end in network namespaces ---------------------------------------------------------
// client (curl + braid up --relay) ⇄ two 20 Mbit/s links ⇄ relay (braid relay) ⇄ destination.
// The destination is reachable from the relay only, so every byte the client gets came through it.

const RATE_MBIT = 20;
const RELAY_PORT = 8443;
const PROXY_PORT = 1080;
const DEST_MPTCP = 8080;
const DEST_TCP = 8081;
const DEST_SINK_TCP = 8082;
const DEST_SINK_MPTCP = 8083;
const AGG_BYTES = 16 * 1000 * 1000;
const RELAY_ABUSE = path.join(DIST, 'test', 'helpers', 'relay-abuse.js');

/** curl in the client namespace with the proxy as an HTTP proxy: status, body, seconds. */
async function curlIn(topo: RelayTopology, args: string[], maxSeconds = 10): Promise<{ code: number | null; http: number; body: string; seconds: number; stderr: string }> {
  const t0 = Date.now();
  const r = await topo.client.exec(['curl', '-sS', '--max-time', String(maxSeconds), '-w', '\n%{http_code}', ...args], { allowFailure: true, timeoutMs: (maxSeconds + 5) * 1000 });
  const lines = r.stdout.split('\n');
  return { code: r.code, http: Number(lines.pop()), body: lines.join('\n'), seconds: (Date.now() - t0) / 1000, stderr: r.stderr };
}

describe('relay end to end: client ⇄ two shaped links ⇄ relay ⇄ destination', { skip: requireFor('relay end to end in namespaces (relay.test.ts)', skipUnlessRoot() ?? missingPrerequisite()), timeout: 120_000 }, () => {
  let topo: RelayTopology;
  let relayDir: string;
  let relayProc: RelayProcess;
  let client: NsProcess;
  const destUrl = (family: 4 | 6, port: number, n: number): string =>
    `http://${family === 6 ? `[${topo.destAddress(6)}]` : topo.destAddress(4)}:${port}/bytes/${n}`;

  before(async () => {
    topo = await createRelayTopology({ rateMbit: RATE_MBIT });
    relayDir = tempRelayDir();
    await startByteServer(topo.dest, { port: DEST_MPTCP });
    await startByteServer(topo.dest, { port: DEST_TCP, tcp: true });
    relayProc = await startRelay(topo, { port: RELAY_PORT, dir: relayDir, extra: ['--handshake-timeout', '1500'] });
    client = await startRelayClient(topo.client, { port: PROXY_PORT, link: relayProc.link });
  });

  after(async () => {
    await topo?.destroy();
    if (relayDir) fs.rmSync(relayDir, { recursive: true, force: true });
  });

  test('the destination is reachable from the relay only', async () => {
    const direct = await curlIn(topo, ['-o', '/dev/null', destUrl(4, DEST_MPTCP, 10)], 3);
    assert.notEqual(direct.code, 0, 'the client reached the destination directly');
    const fromRelay = await topo.relay.exec(['curl', '-sS', '--max-time', '5', '-o', '/dev/null', '-w', '%{http_code}', destUrl(4, DEST_MPTCP, 10)], { allowFailure: true });
    assert.equal(fromRelay.stdout, '200', fromRelay.stderr);
    assert.match(relayProc.link, /^braid:\/\/[A-Za-z0-9_-]+@10\.\d+\.1\.2:8443\?pin=[A-Za-z0-9_-]{43}$/);
  });

  test('curl → braid up → relay → destination: intact over IPv4 and IPv6, MPTCP and TCP destinations', async (t) => {
    const n = 2 * 1000 * 1000;
    for (const [family, port] of [[4, DEST_MPTCP], [6, DEST_TCP], [6, DEST_MPTCP], [4, DEST_TCP]] as const) {
      const r = await curlDownload(topo.client, destUrl(family, port, n), { socksPort: PROXY_PORT, hash: true, maxSeconds: 20 });
      assert.equal(r.httpCode, 200);
      assert.equal(r.sha256, expectedSha256(n), `IPv${family} destination :${port}: content differs`);
    }
    // The client ⇄ relay leg over IPv6 too: the same relay, its link-1 IPv6 address in the link.
    const v6Link = formatRelayLink({ ...parseRelayLink(relayProc.link), host: topo.relayAddress(1, 6) });
    const c6 = await startRelayClient(topo.client, { port: PROXY_PORT + 10, link: v6Link });
    try {
      const r = await curlDownload(topo.client, destUrl(6, DEST_MPTCP, n), { socksPort: PROXY_PORT + 10, hash: true, maxSeconds: 20 });
      assert.equal(r.sha256, expectedSha256(n), 'IPv6 relay link: content differs');
      t.diagnostic(`IPv6 relay link: ${r.mbit.toFixed(1)} Mbit/s`);
    } finally {
      await c6.stop();
    }
    const m = await scrapeMetrics(topo, relayProc.metricsUrl!);
    assert.ok(metricValue(m, 'braid_relay_tunnels_total') >= 5, m);
    assert.ok(metricValue(m, 'braid_relay_bytes_total{direction="down"}') >= 5 * n, m);
    // Every one of them was sealed by the relay's addon (and opened by Node's TLS in braid up).
    if (sealAvailable()) assert.equal(metricValue(m, 'braid_relay_sealed_downloads_total'), metricValue(m, 'braid_relay_tunnels_total'), m);
  });

  test('curl -T → braid up → relay → destination: uploads arrive intact (the client seals them in the addon where it can)', async (t) => {
    // The sink hashes what it receives and answers only after the last byte; TCP and MPTCP destinations.
    const sink = path.join(DIST, 'test', 'bench', 'upload-sink.js');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-relay-up-'));
    const body = crypto.randomBytes(8 * 1000 * 1000);
    const file = path.join(dir, 'body');
    fs.writeFileSync(file, body);
    const want = crypto.createHash('sha256').update(body).digest('hex');
    try {
      for (const [port, tcp] of [[DEST_SINK_TCP, true], [DEST_SINK_MPTCP, false]] as const) {
        const proc = topo.dest.spawn([process.execPath, sink, '--port', String(port), ...(tcp ? ['--tcp'] : [])], { label: `upload-sink :${port}` });
        await proc.waitForLine(/^listening \d+/, 15_000);
        const r = await topo.client.exec(['curl', '-sS', '--fail', '--max-time', '30', '--socks5-hostname', `127.0.0.1:${PROXY_PORT}`,
          '-T', file, '-H', 'Expect:', '--output', '-', `http://${topo.destAddress(4)}:${port}/sink`], { allowFailure: true, timeoutMs: 40_000 });
        assert.equal(r.code, 0, r.stderr);
        const got = JSON.parse(r.stdout) as { bytes: number; sha256: string };
        assert.equal(got.bytes, body.length, `${tcp ? 'TCP' : 'MPTCP'} destination: bytes received`);
        assert.equal(got.sha256, want, `${tcp ? 'TCP' : 'MPTCP'} destination: content differs`);
        t.diagnostic(`${tcp ? 'TCP' : 'MPTCP'} destination: ${body.length} bytes intact`);
        await proc.stop();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('aggregation through the relay: both links carry substantial bytes, faster than one link', async (t) => {
    const tx0 = await relayTxBytes(topo);
    const download = curlDownload(topo.client, destUrl(4, DEST_MPTCP, AGG_BYTES), { socksPort: PROXY_PORT, hash: true, maxSeconds: 40 });
    // While it runs, the relay's own view: the tunnel's client connection has two subflows.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const mid = await scrapeMetrics(topo, relayProc.metricsUrl!);
    const r = await download;
    const tx1 = await relayTxBytes(topo);
    const sent = [tx1[0] - tx0[0], tx1[1] - tx0[1]];
    const total = sent[0]! + sent[1]!;
    t.diagnostic(`through relay ${r.mbit.toFixed(1)} Mbit/s; relay sent link1 ${(sent[0]! / 1e6).toFixed(1)} MB, link2 ${(sent[1]! / 1e6).toFixed(1)} MB`);
    assert.equal(r.sha256, expectedSha256(AGG_BYTES), 'content differs');
    assert.ok(metricValue(mid, 'braid_relay_connection_subflows{subflows="2"}') >= 1, `no tunnel with 2 subflows mid-transfer:\n${mid}`);
    assert.ok(total >= AGG_BYTES, `the relay's links sent only ${total} bytes`);
    for (const i of [0, 1]) {
      assert.ok(sent[i]! / total >= 0.2, `link ${i + 1} carried only ${((sent[i]! / total) * 100).toFixed(1)}% (want >= 20%)`);
    }
    assert.ok(r.mbit > 1.4 * RATE_MBIT, `${r.mbit.toFixed(1)} Mbit/s is not above 1.4 x one ${RATE_MBIT} Mbit/s link`);
  });

  test('wrong secret, wrong pin, relay down: a precise 502 at once, no hang', async () => {
    const good = parseRelayLink(relayProc.link);
    const bad: Array<[string, RelayLink, string]> = [
      ['ERELAYAUTH', { ...good, secret: crypto.randomBytes(24).toString('base64url') }, 'refused our secret'],
      ['ERELAYPIN', { ...good, pin: crypto.randomBytes(32).toString('base64url') }, 'pin mismatch'],
      ['ERELAYDOWN', { ...good, port: RELAY_PORT + 1 }, 'unreachable'],
    ];
    const authBefore = metricValue(await scrapeMetrics(topo, relayProc.metricsUrl!), 'braid_relay_auth_failures_total');
    await Promise.all(bad.map(async ([code, l, logged], i) => {
      const port = PROXY_PORT + 20 + i;
      const c = await startRelayClient(topo.client, { port, link: formatRelayLink(l) });
      try {
        const viaHttp = await curlIn(topo, ['-x', `http://127.0.0.1:${port}`, destUrl(4, DEST_MPTCP, 10)]);
        assert.equal(viaHttp.http, 502, `${code}: ${viaHttp.body} ${viaHttp.stderr}`);
        assert.ok(viaHttp.body.includes(code), `${code} not named in the reply: ${viaHttp.body}`);
        assert.ok(viaHttp.seconds < 5, `${code}: the error took ${viaHttp.seconds} s`);
        const viaSocks = await curlIn(topo, ['--socks5-hostname', `127.0.0.1:${port}`, '-o', '/dev/null', destUrl(4, DEST_MPTCP, 10)]);
        assert.notEqual(viaSocks.code, 0);
        assert.ok(viaSocks.seconds < 5, `${code}: the SOCKS error took ${viaSocks.seconds} s`);
        assert.match(c.stderr, new RegExp(logged), `braid up did not say why: ${c.stderr}`);
        assert.equal(c.running, true);
      } finally {
        await c.stop();
      }
    }));
    const m = await scrapeMetrics(topo, relayProc.metricsUrl!);
    assert.ok(metricValue(m, 'braid_relay_auth_failures_total') > authBefore, 'the relay did not count the wrong secret');
  });

  test('random bytes and half-finished TLS handshakes at the relay port: all cut, relay unharmed', async () => {
    const { stdout } = await topo.client.exec([process.execPath, RELAY_ABUSE, '--host', topo.relayAddress(1), '--port', String(RELAY_PORT), '--timeout-ms', '10000'], { timeoutMs: 20_000 });
    const outcomes = JSON.parse(stdout.trim()) as Array<{ kind: string; ended: string; ms: number }>;
    for (const o of outcomes) assert.equal(o.ended, 'closed', `the relay kept a '${o.kind}' connection open for ${o.ms} ms`);
    assert.equal(relayProc.proc.running, true, `the relay died: ${relayProc.proc.stderr}`);
    const r = await curlDownload(topo.client, destUrl(4, DEST_MPTCP, 100_000), { socksPort: PROXY_PORT, hash: true, maxSeconds: 10 });
    assert.equal(r.sha256, expectedSha256(100_000));
    const m = await scrapeMetrics(topo, relayProc.metricsUrl!);
    assert.ok(metricValue(m, 'braid_relay_refused_total{reason="tls"}') >= 3, m);
  });

  test('relay killed mid-transfer: curl gets a clean error at once; a restarted relay serves the same client', async (t) => {
    const big = 400 * 1000 * 1000; // ~90 s at two links' speed: it cannot finish on its own
    const t0 = Date.now();
    const download = curlIn(topo, ['--socks5-hostname', `127.0.0.1:${PROXY_PORT}`, '-o', '/dev/null', destUrl(4, DEST_MPTCP, big)], 60);
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const killedAt = Date.now();
    relayProc.proc.killSync();
    await relayProc.proc.exited;
    const r = await download;
    const endedMs = Date.now() - killedAt;
    t.diagnostic(`curl ended ${endedMs} ms after the kill (${Date.now() - t0} ms after it started) with exit ${r.code}: ${r.stderr.trim()}`);
    assert.notEqual(r.code, 0, 'curl reported success for a cut transfer');
    assert.ok(endedMs < 10_000, `curl hung for ${endedMs} ms after the relay died`);
    assert.equal(client.running, true, 'braid up died with the relay');

    // While the relay is down: a fast, precise failure.
    const down = await curlIn(topo, ['-x', `http://127.0.0.1:${PROXY_PORT}`, destUrl(4, DEST_MPTCP, 10)]);
    assert.equal(down.http, 502);
    assert.ok(down.body.includes('ERELAYDOWN'), down.body);

    // Same directory, same port: same certificate and secret, so the client's link still fits.
    relayProc = await startRelay(topo, { port: RELAY_PORT, dir: relayDir, extra: ['--handshake-timeout', '1500'] });
    const first = await curlDownload(topo.client, destUrl(4, DEST_MPTCP, 1_000_000), { socksPort: PROXY_PORT, hash: true, maxSeconds: 10 });
    assert.equal(first.sha256, expectedSha256(1_000_000), 'first download after the restart');

    // A graceful restart (SIGTERM) while the client holds warm connections: the next dial recovers.
    await relayProc.proc.stop();
    relayProc = await startRelay(topo, { port: RELAY_PORT, dir: relayDir, extra: ['--handshake-timeout', '1500'] });
    for (let i = 0; i < 3; i++) {
      const again = await curlDownload(topo.client, destUrl(6, DEST_MPTCP, 200_000), { socksPort: PROXY_PORT, hash: true, maxSeconds: 10 });
      assert.equal(again.sha256, expectedSha256(200_000), `download ${i + 1} after the graceful restart`);
    }
    assert.equal(client.running, true);
  });
});
