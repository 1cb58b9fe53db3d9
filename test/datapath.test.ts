// `braid relay` dials destinations over plain TCP by default (an MPTCP socket towards a destination
// stalls on the kernel's MPTCP receive path whenever the relay's reads pause; RELAY_DEFAULT_DIAL),
// `--dial mptcp` over MPTCP. Checked by what an MPTCP-speaking destination sees.
//
// The data path between braid up and braid relay: both ends of the MPTCP connection get a fixed
// receive buffer (relay/receive-buffer.ts), because the kernel's MPTCP receive autotuning left
// pooled connections at 128 KiB and capped uploads through the relay at ~0.8x raw MPTCP (measured
// by `npm run bench`, both-directions part). Checked here on loopback, in-process: the buffer
// the kernel reports on each end of a tunnel, and every byte intact both ways through it.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { loadOrCreateCredentials, type RelayCredentials } from '../electron/core/relay/credentials';
import { RelayServer, type RelayServerOptions } from '../electron/core/relay/server';
import { RelayDialer } from '../electron/core/relay/client';
import { DestinationPolicy } from '../electron/core/relay/policy';
import { parseRelayLink, formatRelayLink } from '../electron/core/relay/share-link';
import { MAX_RECEIVE_BUFFER, MIN_RECEIVE_BUFFER, receiveBufferFor, relayReceiveBuffer } from '../electron/core/relay/receive-buffer';
import { loadNative, mptcpUnavailableReason } from '../electron/core/proxy/native';
import { receiveBuffer, setReceiveBuffer } from '../electron/core/native/datapath';
import { startBytesServer, type ResponseReport } from './helpers/mptcp-server';

const quiet = { info() {}, warn() {}, debug() {} };
const skip = mptcpUnavailableReason() ?? undefined;

describe('native receive-buffer knobs', { skip }, () => {
  test('setReceiveBuffer guards its arguments and names errno and syscall', () => {
    const bad = [[-1, 65536], [1.5, 65536], ['3', 65536], [0, 100], [0, 2 ** 40]] as const;
    for (const [fd, bytes] of bad) assert.throws(() => setReceiveBuffer(fd as unknown as number, bytes), /setReceiveBuffer/);
    assert.throws(() => setReceiveBuffer(2 ** 30, 65536), (e: Error & { code?: string; syscall?: string }) => e.code === 'EBADF' && e.syscall === 'setsockopt');
    assert.throws(() => receiveBuffer(2 ** 30), (e: Error & { code?: string }) => e.code === 'EBADF');
  });
});

describe('the relay connection\'s receive buffer size', () => {
  test('half of tcp_rmem[2] (the ceiling autotuning would reach), from 2 MiB to 32 MiB', () => {
    assert.equal(receiveBufferFor('4096\t131072\t33554432\n'), 16 * 1024 * 1024);
    assert.equal(receiveBufferFor('4096 131072 6291456'), 3 * 1024 * 1024);
    assert.equal(receiveBufferFor('4096 87380 1048576'), MIN_RECEIVE_BUFFER, 'never below the floor');
    assert.equal(receiveBufferFor('4096 131072 1073741824'), MAX_RECEIVE_BUFFER, 'never above the cap');
    for (const bad of [null, '', 'garbage', '4096 131072', '4096 131072 -5']) assert.equal(receiveBufferFor(bad), MIN_RECEIVE_BUFFER, String(bad));
  });
});

describe('relay connection receive buffer', { skip }, () => {
  let dir: string;
  let creds: RelayCredentials;
  let echo: net.Server;
  let relay: RelayServer;
  let port: number;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-datapath-'));
    creds = loadOrCreateCredentials({ dir });
    echo = net.createServer({ allowHalfOpen: true }, (s) => s.pipe(s));
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
    relay = new RelayServer({
      host: '127.0.0.1', port: 0, credentials: creds, policy: new DestinationPolicy({ allow: ['127.0.0.0/8'] }),
      dial: 'tcp', maxConnections: 16, maxPerClient: 16, handshakeMs: 2000, idleMs: 30_000, connectMs: 3000,
      requestWaitMs: 2000, metrics: null, log: quiet,
    });
    port = (await relay.start()).port;
  });

  after(async () => {
    await relay?.stop();
    echo?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('both ends of a tunnel run with the fixed buffer, and 8 MB echo back intact', async () => {
    const link = parseRelayLink(formatRelayLink({ secret: creds.secret, host: '127.0.0.1', port, pin: creds.pin }));
    const dialer = new RelayDialer({ link, native: loadNative().mod, mode: 'mptcp', connectMs: 3000, poolSize: 1, poolIdleMs: 20_000, log: quiet });
    dialer.start();
    try {
      // A pooled connection, as braid up uses them: the case the kernel's autotuning left small.
      await new Promise((r) => setTimeout(r, 300));
      const tunnel = await dialer.dial({ host: '127.0.0.1', port: (echo.address() as net.AddressInfo).port });
      try {
        assert.ok(tunnel.fd !== null, 'the relay connection has an fd');
        // The kernel doubles the request (its bookkeeping); autotuning would start at tcp_rmem[1].
        assert.equal(receiveBuffer(tunnel.fd!), 2 * relayReceiveBuffer(), 'braid up side');
        const relayFds = relay.tunnelFds();
        assert.ok(relayFds.length >= 1);
        for (const fd of relayFds) assert.equal(receiveBuffer(fd), 2 * relayReceiveBuffer(), 'relay side');

        const body = crypto.randomBytes(8 * 1024 * 1024);
        const sock = tunnel.socket;
        const got: Buffer[] = [];
        let n = 0;
        const done = new Promise<void>((resolve, reject) => {
          sock.on('data', (c: Buffer) => { got.push(c); n += c.length; if (n >= body.length) resolve(); });
          sock.on('error', reject);
          setTimeout(() => reject(new Error(`only ${n} of ${body.length} bytes echoed within 20 s`)), 20_000).unref();
        });
        sock.resume();
        sock.end(body);
        await done;
        assert.equal(crypto.createHash('sha256').update(Buffer.concat(got)).digest('hex'), crypto.createHash('sha256').update(body).digest('hex'));
      } finally {
        tunnel.socket.destroy();
      }
    } finally {
      dialer.close();
    }
  });
});

describe('relay dial towards destinations', { skip }, () => {
  let dir: string;
  let creds: RelayCredentials;

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-datapath-dial-'));
    creds = loadOrCreateCredentials({ dir });
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** What an MPTCP-speaking destination saw of the relay's connection to it. */
  async function destinationView(dial: RelayServerOptions['dial']): Promise<ResponseReport> {
    const reports: ResponseReport[] = [];
    const dest = await startBytesServer({ host: '127.0.0.1', port: 0, mptcp: true, onReport: (r) => reports.push(r) });
    const relay = new RelayServer({
      host: '127.0.0.1', port: 0, credentials: creds, policy: new DestinationPolicy({ allow: ['127.0.0.0/8'] }),
      ...(dial ? { dial } : {}), maxConnections: 16, maxPerClient: 16, handshakeMs: 2000, requestWaitMs: 2000, idleMs: 30_000, connectMs: 3000,
      metrics: null, log: quiet,
    });
    const port = (await relay.start()).port;
    const link = parseRelayLink(formatRelayLink({ secret: creds.secret, host: '127.0.0.1', port, pin: creds.pin }));
    const dialer = new RelayDialer({ link, native: loadNative().mod, mode: 'mptcp', connectMs: 3000, poolSize: 0, poolIdleMs: 20_000, log: quiet });
    try {
      const t = await dialer.dial({ host: '127.0.0.1', port: dest.port });
      t.socket.resume();
      t.socket.write(`GET /bytes/100000 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
      for (let i = 0; i < 100 && reports.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
      t.socket.destroy();
      assert.equal(reports.length, 1, 'the destination answered once');
      return reports[0]!;
    } finally {
      dialer.close();
      await relay.stop();
      await dest.close();
    }
  }

  test('by default the relay dials plain TCP, even to a destination that speaks MPTCP', async () => {
    const r = await destinationView(undefined);
    assert.ok(r.info, r.infoError ?? 'no info');
    // An MPTCP listener hands a plain TCP client a plain TCP socket (or one that fell back).
    assert.ok(!r.info!.mptcp || r.info!.fallback, `the destination saw MPTCP: ${JSON.stringify({ mptcp: r.info!.mptcp, fallback: r.info!.fallback })}`);
  });

  test("with dial 'mptcp' the relay speaks MPTCP to it (the test can tell the two apart)", async () => {
    const r = await destinationView('mptcp');
    assert.ok(r.info, r.infoError ?? 'no info');
    assert.ok(r.info!.mptcp && !r.info!.fallback, 'the destination saw MPTCP');
  });
});
