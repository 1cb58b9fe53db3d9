// What the relay client receives, opened by the addon (relay/open-tls.ts, native/src/open.cc): the
// relay's end of TLS over an MPTCP socket as `braid relay` accepts it (relay/tls-accept.ts), the
// client's end as Braid's relay dialer makes it (tlsToRelay with `open`). The records come from the
// relay's own sealer (with KeyUpdates every few records) or are made here with node:crypto, so the
// opener is checked against an implementation other than its own; its refusals are errors with
// codes, never a stream that goes on with wrong bytes.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { connectFd, listenFd } from '../electron/core/native/mptcp';
import { expandLabel256, sealRecords, sealStart } from '../electron/core/native/seal';
import { mptcpUnavailableReason } from '../electron/core/proxy/native';
import { loadOrCreateCredentials } from '../electron/core/relay/credentials';
import { takeReading } from '../electron/core/proxy/node-reading';
import { startPump, type PumpResult } from '../electron/core/proxy/pump';
import { openingAvailable } from '../electron/core/relay/open-tls';
import { acceptTls, type AcceptedTls } from '../electron/core/relay/tls-accept';
import { tlsToRelay, type RelayTls } from '../electron/core/relay/tls-client';
import { requireFor } from './helpers/prerequisites';
import { fdOf, readAll, socketPair } from './helpers/sockets';

const skip = requireFor('records opened by the addon', mptcpUnavailableReason() ?? (openingAvailable() ? undefined : 'the addon cannot open records here (not Linux, or no libcrypto symbols)'));
const sha = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');

const credDir = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-open-'));
const creds = loadOrCreateCredentials({ dir: credDir });
after(() => fs.rmSync(credDir, { recursive: true, force: true }));

interface Rig {
  relay: AcceptedTls;
  relayFd: number;
  /** the client's end, as the relay dialer gets it */
  client: RelayTls;
  /** records the relay has sent under its application secret (its tickets, then those written here) */
  seq: number;
  close(): void;
}

async function rig(suite: 'TLS_AES_128_GCM_SHA256' | 'TLS_AES_256_GCM_SHA384'): Promise<Rig> {
  const context = tls.createSecureContext({ key: creds.key, cert: creds.cert, minVersion: 'TLSv1.3', ciphers: suite });
  const server = net.createServer({ allowHalfOpen: true });
  await new Promise<void>((r) => server.listen({ fd: listenFd({ host: '127.0.0.1', port: 0, mptcp: true }) }, () => r()));
  const port = (server.address() as net.AddressInfo).port;
  const accepted = new Promise<{ a: AcceptedTls; fd: number }>((resolve, reject) => {
    server.once('connection', (raw: net.Socket) => acceptTls(raw, context, 5000, (a) => resolve({ a, fd: fdOf(raw) }), reject));
  });
  const raw = new net.Socket({ fd: await connectFd({ address: '127.0.0.1', port, mptcp: true }), readable: true, writable: true, allowHalfOpen: true });
  const client = await tlsToRelay(raw, { host: '127.0.0.1', port, secret: 'unused', pin: creds.pin }, 5000, { open: true });
  const { a, fd } = await accepted;
  server.close();
  a.socket.on('error', () => {});
  client.socket.on('error', () => {});
  // One exchange, as the CONNECT is: by its end the relay has sent its tickets.
  const got = new Promise<void>((r) => a.socket.once('data', () => r()));
  client.socket.write('ping');
  await got;
  a.socket.pause();
  return {
    relay: a, relayFd: fd, client, seq: a.tickets(),
    close: () => {
      for (const s of [client.socket, a.socket]) s.destroy();
    },
  };
}

/** One TLS 1.3 record of inner type `type`, sealed with node:crypto (AES-128-GCM, SHA-256). */
function record(secret: Buffer, seq: number, type: number, content: Buffer): Buffer {
  const inner = Buffer.concat([content, Buffer.from([type])]);
  const header = Buffer.from([23, 3, 3, (inner.length + 16) >> 8, (inner.length + 16) & 255]);
  const nonce = expandLabel256(secret, 'iv', 12);
  for (let i = 0; i < 8; i++) nonce[4 + i]! ^= Number((BigInt(seq) >> BigInt(56 - 8 * i)) & 255n);
  const c = crypto.createCipheriv('aes-128-gcm', expandLabel256(secret, 'key', 16), nonce);
  c.setAAD(header);
  return Buffer.concat([header, c.update(inner), c.final(), c.getAuthTag()]);
}

/** Writes bytes onto the relay's socket under Node's TLS, as the relay's sealer does. */
function writeRaw(r: Rig, bytes: Buffer): void {
  assert.equal(fs.writeSync(r.relayFd, bytes), bytes.length);
}

function errorOf(s: net.Socket): Promise<NodeJS.ErrnoException> {
  return new Promise((resolve) => s.once('error', resolve));
}

describe('records opened by the addon', { skip }, () => {
  for (const suite of ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384'] as const) {
    test(`${suite}: 8 MB sealed by the relay's addon with a KeyUpdate every 64 records arrive intact, then close_notify and FIN end the stream`, async () => {
      const r = await rig(suite);
      const [near, src] = await socketPair();
      try {
        assert.equal(r.client.opened, true, 'the dialer opens what the relay sends');
        assert.ok(r.seq >= 1, 'the relay sent its session tickets, which the addon skips');
        const data = crypto.randomBytes(8 << 20);
        takeReading(near);  // the sealer reads it from here, not Node
        const sealed = new Promise<string>((resolve) => {
          sealStart(fdOf(near), r.relayFd, { suite, secret: r.relay.download!.secret, seq: r.seq, rekeyAfter: 64 }, Buffer.from('head:'), (end) => resolve(end.reason));
        });
        const received = readAll(r.client.socket);
        r.client.socket.resume();
        src.end(data);
        assert.equal(await sealed, 'done');
        const got = await received;
        assert.equal(got.length, data.length + 5);
        assert.equal(sha(got), sha(Buffer.concat([Buffer.from('head:'), data])));
      } finally {
        near.destroy();
        src.destroy();
        r.close();
      }
    });
  }

  test('a reader that stops holds the stream back and loses nothing when it reads again', async () => {
    const r = await rig('TLS_AES_128_GCM_SHA256');
    try {
      const secret = r.relay.download!.secret;
      const data = crypto.randomBytes(32 << 20);
      // 32 MB (more than both ends' socket buffers) in records written in 64 KiB pieces as the socket takes them; the client reads none at first.
      const records = sealRecords('TLS_AES_128_GCM_SHA256', secret, r.seq, data);
      const chunks: Buffer[] = [];
      let length = 0;
      r.client.socket.on('data', (c: Buffer) => {
        chunks.push(c);
        length += c.length;
      });
      r.client.socket.pause();
      let off = 0;
      const deadline = Date.now() + 10_000;
      for (let stuck = 0; off < records.length && Date.now() < deadline;) {
        try {
          off += fs.writeSync(r.relayFd, records, off, Math.min(65536, records.length - off));
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
          if (++stuck === 20) break;  // both ends' buffers full: the reader is holding it back
          await new Promise((res) => setTimeout(res, 10));
        }
      }
      assert.ok(off < records.length, 'a paused reader must hold the sender back (the addon stops reading)');
      assert.ok(r.client.socket.readableLength <= 1 << 20, `buffered in JavaScript: ${r.client.socket.readableLength}`);
      r.client.socket.resume();
      while (off < records.length && Date.now() < deadline) {
        try {
          off += fs.writeSync(r.relayFd, records, off, records.length - off);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
          await new Promise((res) => setTimeout(res, 5));
        }
      }
      while (length < data.length && Date.now() < deadline) await new Promise((res) => setTimeout(res, 10));
      assert.equal(sha(Buffer.concat(chunks)), sha(data));
    } finally {
      r.close();
    }
  });

  test('the pump hands the download to the addon: 16 MB written straight to the application\'s socket, counted, then its FIN; the upload still flows', async () => {
    const r = await rig('TLS_AES_128_GCM_SHA256');
    const [near, src] = await socketPair();       // the relay's destination side: src writes the download
    const [app, appFar] = await socketPair();     // the application: appFar is its end
    try {
      takeReading(near);
      const data = crypto.randomBytes(16 << 20);
      const sealed = new Promise<string>((resolve) => {
        sealStart(fdOf(near), r.relayFd, { suite: 'TLS_AES_128_GCM_SHA256', secret: r.relay.download!.secret, seq: r.seq }, Buffer.alloc(0), (end) => resolve(end.reason));
      });
      app.pause();
      let down = 0;
      const upload = new Promise<string>((resolve) => {
        const chunks: Buffer[] = [];
        r.relay.socket.on('data', (c: Buffer) => chunks.push(c));
        r.relay.socket.on('end', () => resolve(Buffer.concat(chunks).toString()));
        r.relay.socket.resume();
      });
      const result = new Promise<PumpResult>((resolve) => startPump(app, r.client.socket, { idleMs: 30_000, onDown: (n) => (down += n) }, resolve));
      assert.equal(r.client.socket.listenerCount('data'), 0, 'the download is the addon\'s, not the JavaScript pump\'s');
      const received = readAll(appFar);
      src.end(data);
      const got = await received;
      assert.equal(sha(got), sha(data), 'every byte, in order');
      assert.equal(await sealed, 'done');
      // The application half-closes; its upload, in Node's TLS here, reaches the relay with its FIN.
      appFar.end('bye');
      assert.equal(await upload, 'bye');
      r.relay.socket.end();
      const end = await result;
      assert.equal(end.reason, 'done', String(end.error));
      assert.equal(down, data.length, 'counted from the addon');
    } finally {
      for (const s of [near, src, app, appFar]) s.destroy();
      r.close();
    }
  });

  const refusals: Array<{ name: string; code: string; bytes: (secret: Buffer, seq: number) => Buffer; fin?: boolean }> = [
    {
      name: 'a record whose bytes were changed on the way',
      code: 'EBADMSG',
      bytes: (secret, seq) => {
        const rec = record(secret, seq, 23, Buffer.from('hello'));
        rec[8]! ^= 1;
        return rec;
      },
    },
    { name: 'a KeyUpdate that asks for one in return', code: 'EPROTO', bytes: (secret, seq) => record(secret, seq, 22, Buffer.from([24, 0, 0, 1, 1])) },
    { name: 'an alert other than close_notify', code: 'ECONNRESET', bytes: (secret, seq) => record(secret, seq, 21, Buffer.from([2, 40])) },
    { name: 'a record of an unknown inner type', code: 'EPROTO', bytes: (secret, seq) => record(secret, seq, 99, Buffer.from('x')) },
    { name: 'a FIN inside a record', code: 'ECONNRESET', bytes: (secret, seq) => record(secret, seq, 23, Buffer.from('cut short')).subarray(0, 12), fin: true },
  ];
  for (const c of refusals) {
    test(`${c.name}: the data before it arrives, then the socket errors with ${c.code}`, async () => {
      const r = await rig('TLS_AES_128_GCM_SHA256');
      try {
        const secret = r.relay.download!.secret;
        const chunks: Buffer[] = [];
        r.client.socket.on('data', (d: Buffer) => chunks.push(d));
        const failed = errorOf(r.client.socket);
        r.client.socket.resume();
        // A ticket-like handshake message first (skipped), then data, then the bad record.
        const ticket = record(secret, r.seq, 22, Buffer.from([4, 0, 0, 4, 1, 2, 3, 4]));
        writeRaw(r, Buffer.concat([ticket, record(secret, r.seq + 1, 23, Buffer.from('before')), c.bytes(secret, r.seq + 2)]));
        if (c.fin) r.relay.socket.destroy();
        const err = await failed;
        assert.equal(err.code, c.code, String(err));
        assert.equal(Buffer.concat(chunks).toString(), 'before');
      } finally {
        r.close();
      }
    });
  }
});
