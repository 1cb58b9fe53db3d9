/**
 * The relay's README claims that relay.test.ts leaves open, on loopback: `braid relay --cert --key
 * --secret` (its own identity, nothing generated), the total connection limit (clients from several
 * addresses), the TLS 1.3 cipher order the relay imposes (checked with openssl s_client, a client
 * that is not ours), the dial-error metric by code, and a valid link imported and cleared through
 * the control API of a running `braid up`.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import type { RelayView, StatusView } from '../electron/core/contract';
import { loadNative } from '../electron/core/proxy/native';
import { RelayDialer } from '../electron/core/relay/client';
import { loadOrCreateCredentials, pemToDer, type RelayCredentials } from '../electron/core/relay/credentials';
import { DestinationPolicy } from '../electron/core/relay/policy';
import { RelayServer, type RelayServerOptions } from '../electron/core/relay/server';
import { certificatePin, formatRelayLink, parseRelayLink } from '../electron/core/relay/share-link';
import { call, callOk, waitControlLine, type ControlAddress } from './helpers/control-client';
import { expectedSha256, startBytesServer, type BytesServer } from './helpers/mptcp-server';
import { runBraid, runProcess, startBraid, startProcess, type BraidProxy } from './helpers/proc';
import { requireFor } from './helpers/prerequisites';
import { makeSelfSignedCert } from './helpers/servers';

const quiet = { info() {}, warn() {}, debug() {} };
const native = loadNative().mod;
let tmp: string;
let creds: RelayCredentials;
let origin: BytesServer;

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-relay-claims-'));
  creds = loadOrCreateCredentials({ dir: path.join(tmp, 'relay') });
  origin = await startBytesServer({ host: '127.0.0.1' });
});

after(async () => {
  await origin?.close();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

function relayOptions(over: Partial<RelayServerOptions> = {}): RelayServerOptions {
  return {
    host: '127.0.0.1', port: 0, credentials: creds, policy: new DestinationPolicy({ allow: ['127.0.0.0/8'] }),
    dial: 'mptcp', maxConnections: 64, maxPerClient: 32, handshakeMs: 2000, idleMs: 30_000, connectMs: 3000,
    metrics: { host: '127.0.0.1', port: 0 }, log: quiet, ...over,
  };
}

async function withRelay<T>(over: Partial<RelayServerOptions>, fn: (r: RelayServer, port: number) => Promise<T>): Promise<T> {
  const r = new RelayServer(relayOptions(over));
  const { port } = await r.start();
  try {
    return await fn(r, port);
  } finally {
    await r.stop();
  }
}

function getMetrics(r: RelayServer): Promise<string> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: r.metricsAddress()!.port, path: '/metrics' }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d)).on('end', () => resolve(body));
    }).on('error', reject);
  });
}

/** A sample's value; NaN when the exact series (name plus labels) is not in the text. */
function metric(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line ? Number(line.slice(series.length + 1)) : NaN;
}

const relayDialer = (port: number, l: Partial<{ secret: string; pin: string }> = {}): RelayDialer =>
  new RelayDialer({ link: { host: '127.0.0.1', port, secret: creds.secret, pin: creds.pin, ...l }, native, mode: 'mptcp', connectMs: 3000, poolSize: 0, poolIdleMs: 20_000, log: quiet });

async function fetchThrough(sock: net.Socket, n: number): Promise<string> {
  sock.write(`GET /bytes/${n} HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\nConnection: close\r\n\r\n`);
  const chunks: Buffer[] = [];
  for await (const c of sock) chunks.push(c as Buffer);
  const all = Buffer.concat(chunks);
  const body = all.subarray(all.indexOf('\r\n\r\n') + 4);
  assert.equal(body.length, n);
  return crypto.createHash('sha256').update(body).digest('hex');
}

/** A TLS connection to the relay from `localAddress`, handshake done (or refused: null). */
function tlsFrom(port: number, localAddress: string): Promise<tls.TLSSocket | null> {
  return new Promise((resolve) => {
    const raw = net.connect({ host: '127.0.0.1', port, localAddress });
    raw.on('error', () => resolve(null));
    const s = tls.connect({ socket: raw, rejectUnauthorized: false }, () => resolve(s));
    s.on('error', () => resolve(null));
    s.on('close', () => resolve(null));
  });
}

/** A listener on 127.0.0.1 that never accepts and whose queue is full: a dial to it times out. */
async function hangingPort(): Promise<{ port: number; close(): void }> {
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
  const fd = native!.listenFd({ host: '127.0.0.1', port, backlog: 1, mptcp: false });
  const fillers = [0, 1, 2].map(() => net.connect({ host: '127.0.0.1', port }).on('error', () => {}));
  await new Promise((r) => setTimeout(r, 100));
  return { port, close: () => { for (const f of fillers) f.destroy(); native!.closeFd(fd); } };
}

describe('braid relay --cert --key --secret', () => {
  test('serves with the given identity: the link carries its pin and secret, nothing is generated', async () => {
    const cert = makeSelfSignedCert();
    const dir = path.join(tmp, 'given-identity');
    const secret = 'given-secret_0123456789';
    const relay = await startProcess(process.execPath, [path.join(__dirname, '..', 'electron', 'core', 'cli', 'main.js'), 'relay',
      '--listen', '127.0.0.1:0', '--allow', '127.0.0.0/8', '--metrics', 'off', '--dir', dir, '--cert', cert.certFile, '--key', cert.keyFile, '--secret', secret],
    { ready: /^braid: share link: (\S+)$/m, timeoutMs: 15_000 });
    try {
      const link = parseRelayLink(relay.match![1]!);
      assert.equal(link.secret, secret);
      assert.equal(link.pin, certificatePin(pemToDer(cert.cert.toString())), 'the link pins the given certificate');
      assert.doesNotMatch(relay.stderr(), /created a new key/);
      assert.deepEqual(fs.existsSync(dir) ? fs.readdirSync(dir) : [], [], 'files were generated next to a given identity');
      // The relay presents that certificate, and only the given secret opens it.
      const d = new RelayDialer({ link, native, mode: 'mptcp', connectMs: 3000, poolSize: 0, poolIdleMs: 20_000, log: quiet });
      const res = await d.dial({ host: '127.0.0.1', port: origin.port });
      assert.equal(await fetchThrough(res.socket, 50_000), expectedSha256(50_000));
      await assert.rejects(new RelayDialer({ link: { ...link, secret: 'x'.repeat(24) }, native, mode: 'mptcp', connectMs: 3000, poolSize: 0, poolIdleMs: 20_000, log: quiet })
        .dial({ host: '127.0.0.1', port: origin.port }), { code: 'ERELAYAUTH' });
      assert.ok(!relay.stderr().includes(secret), 'the secret reached the log');
    } finally {
      await relay.stop();
      fs.rmSync(cert.dir, { recursive: true, force: true });
    }
  });

  test('--cert without --key, and a secret too short: refused with a usage error', async () => {
    const only = await runBraid(['relay', '--listen', '127.0.0.1:0', '--cert', '/nonexistent.pem'], { timeoutMs: 15_000 });
    assert.equal(only.code, 2, only.stderr);
    assert.match(only.stderr, /--cert and --key go together/);
    const short = await runBraid(['relay', '--listen', '127.0.0.1:0', '--secret', 'short'], { timeoutMs: 15_000 });
    assert.equal(short.code, 2, short.stderr);
    assert.match(short.stderr, /--secret: the secret must be 16-128 characters/);
  });
});

describe('the total connection limit', () => {
  test('counts client connections from every address, tunnels included; a freed slot is usable again', async () => {
    await withRelay({ maxConnections: 2, maxPerClient: 32 }, async (r, port) => {
      // One client with a live tunnel, one merely connected: two connections, from two addresses.
      const d = relayDialer(port);
      const tunnel = await d.dial({ host: '127.0.0.1', port: origin.port });
      const idle = await tlsFrom(port, '127.0.0.3');
      assert.ok(idle, 'the second client connection (limit 2) was refused');
      // A third client, from yet another address: over the total, refused before TLS.
      assert.equal(await tlsFrom(port, '127.0.0.4'), null, 'a third connection got through a limit of 2');
      const m = await getMetrics(r);
      assert.equal(metric(m, 'braid_relay_refused_total{reason="limit"}'), 1, m);
      // The tunnel still works, and once a connection goes, a new client gets in.
      assert.equal(await fetchThrough(tunnel.socket, 10_000), expectedSha256(10_000));
      idle.destroy();
      let again: tls.TLSSocket | null = null;
      for (let i = 0; i < 20 && !again; i++) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        again = await tlsFrom(port, '127.0.0.5');
      }
      assert.ok(again, 'a freed slot was not given to the next client');
      again.destroy();
    });
  });
});

describe('the TLS 1.3 cipher order is the relay\'s', () => {
  const AES128 = 'TLS_AES_128_GCM_SHA256';
  const CHACHA = 'TLS_CHACHA20_POLY1305_SHA256';
  const AES256 = 'TLS_AES_256_GCM_SHA384';

  /** openssl s_client offering `suites` in that order of preference: the suite the server chose. */
  async function negotiated(port: number, suites: string[]): Promise<string | null> {
    const r = await runProcess('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-tls1_3', '-ciphersuites', suites.join(':')], { timeoutMs: 15_000 });
    const suite = /Cipher is (\S+)/.exec(r.stdout.toString())?.[1] ?? null;
    return suite === '(NONE)' ? null : suite;
  }

  test('AES-128-GCM first whatever the client prefers; then ChaCha20-Poly1305; then AES-256-GCM', async () => {
    await withRelay({}, async (_r, port) => {
      assert.equal(await negotiated(port, [AES256, CHACHA, AES128]), AES128);
      assert.equal(await negotiated(port, [CHACHA, AES128]), AES128);
      assert.equal(await negotiated(port, [AES256, CHACHA]), CHACHA);
      assert.equal(await negotiated(port, [AES256]), AES256);
      assert.equal(await negotiated(port, ['TLS_AES_128_CCM_SHA256']), null, 'a suite outside the three was accepted');
    });
  });

  test('Node\'s TLS client sees the same choice', async () => {
    await withRelay({}, async (_r, port) => {
      const chosen = (ciphers: string): Promise<string> => new Promise((resolve, reject) => {
        const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ciphers }, () => {
          resolve(s.getCipher().standardName);
          s.destroy();
        });
        s.on('error', reject);
      });
      assert.equal(await chosen(`${AES256}:${CHACHA}:${AES128}`), AES128);
      assert.equal(await chosen(`${AES256}:${CHACHA}`), CHACHA);
    });
  });
});

describe('dial errors are counted by code', () => {
  test('a refused and a silent destination: ECONNREFUSED and ETIMEDOUT in braid_relay_dial_errors_total', { skip: requireFor('relay dial-error metric (relay-claims.test.ts)', native ? false : 'needs the native addon for a non-accepting listener') }, async () => {
    const hang = await hangingPort();
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
    const refused = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    try {
      await withRelay({ connectMs: 400 }, async (r, port) => {
        const before = await getMetrics(r);
        assert.match(before, /^braid_relay_dial_errors_total 0$/m, 'the family is exported (as 0) before any error');
        await assert.rejects(relayDialer(port).dial({ host: '127.0.0.1', port: refused }), { code: 'ECONNREFUSED' });
        await assert.rejects(relayDialer(port).dial({ host: '127.0.0.1', port: refused }), { code: 'ECONNREFUSED' });
        await assert.rejects(relayDialer(port).dial({ host: '127.0.0.1', port: hang.port }), { code: 'ETIMEDOUT' });
        const m = await getMetrics(r);
        assert.equal(metric(m, 'braid_relay_dial_errors_total{code="ECONNREFUSED"}'), 2, m);
        assert.equal(metric(m, 'braid_relay_dial_errors_total{code="ETIMEDOUT"}'), 1, m);
        // A policy refusal is not a dial error: it has its own reason.
        await assert.rejects(relayDialer(port).dial({ host: '10.0.0.1', port: 80 }), { code: 'EPOLICY' });
        const m2 = await getMetrics(r);
        assert.equal(metric(m2, 'braid_relay_refused_total{reason="policy"}'), 1, m2);
        assert.deepEqual(m2.split('\n').filter((l) => l.startsWith('braid_relay_dial_errors_total{')).sort(),
          ['braid_relay_dial_errors_total{code="ECONNREFUSED"} 2', 'braid_relay_dial_errors_total{code="ETIMEDOUT"} 1']);
      });
    } finally {
      hang.close();
    }
  });
});

describe('a relay link imported and cleared through the control API', () => {
  let braid: BraidProxy;
  let c: ControlAddress;
  let relay: RelayServer;
  let relayPort: number;
  let configFile: string;

  before(async () => {
    relay = new RelayServer(relayOptions());
    relayPort = (await relay.start()).port;
    const dir = fs.mkdtempSync(path.join(tmp, 'up-'));
    configFile = path.join(dir, 'config.json');
    fs.writeFileSync(configFile, JSON.stringify({ proxy: { port: 0 } }));
    braid = await startBraid(['up', '--port', '0', '--config', configFile, '--state-dir', path.join(dir, 'state'), '--control', '127.0.0.1:0']);
    c = await waitControlLine(() => braid.stdout());
  });

  after(async () => {
    await braid?.stop();
    await relay?.stop();
  });

  const proxyPort = async (): Promise<number> => Number((await callOk<StatusView>(c, 'status')).proxy.listen!.split(':').pop());
  const curlVia = (port: number): Promise<{ code: number | null; stdout: Buffer; stderr: string }> =>
    runProcess('curl', ['-sS', '--fail', '--max-time', '15', '--socks5-hostname', `127.0.0.1:${port}`, `http://127.0.0.1:${origin.port}/bytes/20000`], { timeoutMs: 20_000 });
  const sha = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');

  test('import: the view names the relay, it is saved, and connections go through it', async () => {
    const link = formatRelayLink({ host: '127.0.0.1', port: relayPort, secret: creds.secret, pin: creds.pin, name: 'test relay' });
    const view = await callOk<RelayView>(c, 'relay.import', { link });
    assert.deepEqual({ ...view, state: undefined, error: undefined }, { host: '127.0.0.1', port: relayPort, name: 'test relay', pin: creds.pin, state: undefined, error: undefined });
    assert.equal(JSON.parse(fs.readFileSync(configFile, 'utf8')).relay.link, link, 'the link is not in the config file');
    const before = metric(await getMetrics(relay), 'braid_relay_tunnels_total');
    const r = await curlVia(await proxyPort());
    assert.equal(r.code, 0, r.stderr);
    assert.equal(sha(r.stdout), expectedSha256(20_000));
    assert.equal(metric(await getMetrics(relay), 'braid_relay_tunnels_total'), before + 1, 'the download did not go through the relay');
    const status = await callOk<StatusView>(c, 'status');
    assert.equal(status.relay?.state, 'ok', JSON.stringify(status.relay));
  });

  test('clear: no relay in the status or the file, and connections go direct again', async () => {
    assert.equal(await callOk<null>(c, 'relay.clear'), null);
    assert.equal((await callOk<StatusView>(c, 'status')).relay, null);
    assert.equal(JSON.parse(fs.readFileSync(configFile, 'utf8')).relay.link, null);
    const before = metric(await getMetrics(relay), 'braid_relay_tunnels_total');
    const r = await curlVia(await proxyPort());
    assert.equal(r.code, 0, r.stderr);
    assert.equal(sha(r.stdout), expectedSha256(20_000));
    assert.equal(metric(await getMetrics(relay), 'braid_relay_tunnels_total'), before, 'a download went through the cleared relay');
  });

  test('a bad link changes nothing', async () => {
    const a = await call(c, 'relay.import', { link: 'braid://nope' });
    assert.equal(a.status, 400, a.text);
    assert.equal(a.json?.error?.code, 'EBADLINK');
    assert.equal((await callOk<StatusView>(c, 'status')).relay, null);
  });
});
