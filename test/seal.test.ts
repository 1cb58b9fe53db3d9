// The relay client's sealed upload (native/src/seal.cc, proxy/seal-tunnel.ts) against a real Node
// (OpenSSL) TLS 1.3 server on an MPTCP socket, as the relay runs it: the record keys are RFC 8446's
// (checked against an independent derivation here), every byte arrives intact while the download
// flows in Node's TLS, KeyUpdates are accepted, half-close is passed on both ways, backpressure is
// bounded, the pump hands over (or declines to) as seal-tunnel.ts says, and errors are reported once.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { sealAvailable, sealDerive, sealRecords, sealStart, type SealEnd, type SealHandle, type SealParams, type SealSuite } from '../electron/core/native/seal';
import { connectFd, listenFd } from '../electron/core/native/mptcp';
import { mptcpUnavailableReason } from '../electron/core/proxy/native';
import { startPump, type PumpResult } from '../electron/core/proxy/pump';
import { markSealable } from '../electron/core/proxy/seal-tunnel';
import { loadOrCreateCredentials } from '../electron/core/relay/credentials';
import { tlsToRelay, type RelayTls } from '../electron/core/relay/tls-client';
import { requireFor } from './helpers/prerequisites';
import { fdOf, readAll } from './helpers/sockets';

const skip = requireFor('sealed relay upload', mptcpUnavailableReason() ?? (sealAvailable() ? undefined : 'the addon cannot seal here (not Linux, or no libcrypto symbols)'));
const SUITES: SealSuite[] = ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384'];
const sha = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');

/** RFC 8446 7.1's HKDF-Expand-Label with an empty context, written out independently of the addon. */
function expandLabel(hash: string, secret: Buffer, label: string, length: number): Buffer {
  const full = Buffer.from(`tls13 ${label}`);
  const info = Buffer.concat([Buffer.from([length >> 8, length & 255, full.length]), full, Buffer.from([0])]);
  return crypto.createHmac(hash, secret).update(Buffer.concat([info, Buffer.from([1])])).digest().subarray(0, length);
}

/** Opens TLS 1.3 records with Node's AES-GCM: [inner content type, plaintext] per record. */
function openRecords(suite: SealSuite, secret: Buffer, seq: number, wire: Buffer): Array<[number, Buffer]> {
  const hash = suite.endsWith('SHA384') ? 'sha384' : 'sha256';
  const keyLen = suite.startsWith('TLS_AES_256') ? 32 : 16;
  let key = expandLabel(hash, secret, 'key', keyLen);
  let iv = expandLabel(hash, secret, 'iv', 12);
  const out: Array<[number, Buffer]> = [];
  for (let off = 0; off < wire.length;) {
    assert.deepEqual([...wire.subarray(off, off + 3)], [23, 3, 3], 'record header');
    const len = wire.readUInt16BE(off + 3);
    const body = wire.subarray(off + 5, off + 5 + len);
    const nonce = Buffer.from(iv);
    for (let i = 0; i < 8; i++) nonce[4 + i]! ^= Number((BigInt(seq) >> BigInt(56 - 8 * i)) & 255n);
    const d = crypto.createDecipheriv(`aes-${keyLen * 8}-gcm`, key, nonce) as crypto.DecipherGCM;
    d.setAAD(wire.subarray(off, off + 5));
    d.setAuthTag(body.subarray(len - 16));
    const inner = Buffer.concat([d.update(body.subarray(0, len - 16)), d.final()]);
    const type = inner[inner.length - 1]!;
    out.push([type, inner.subarray(0, inner.length - 1)]);
    off += 5 + len;
    seq++;
    if (type === 22) {
      // KeyUpdate: the next secret, and its keys, from the next record on.
      secret = expandLabel(hash, secret, 'traffic upd', secret.length);
      key = expandLabel(hash, secret, 'key', keyLen);
      iv = expandLabel(hash, secret, 'iv', 12);
      seq = 0;
    }
  }
  return out;
}

interface Rig {
  /** the test's end of the plain connection and the end the sealer reads */
  outer: net.Socket;
  inner: net.Socket;
  /** the client's TLS over MPTCP, with the keys taken from its handshake */
  relay: RelayTls;
  rawFd: number;
  /** what the server received before the client's close_notify, and whether it saw it */
  received: Promise<Buffer>;
  /** the server's end, to send the download on */
  server: Promise<tls.TLSSocket>;
  close(): void;
}

const credDir = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-seal-'));
const creds = loadOrCreateCredentials({ dir: credDir });
after(() => fs.rmSync(credDir, { recursive: true, force: true }));

async function rig(suite: SealSuite = 'TLS_AES_128_GCM_SHA256'): Promise<Rig> {
  const server = tls.createServer({ key: creds.key, cert: creds.cert, minVersion: 'TLSv1.3', ciphers: suite, allowHalfOpen: true });
  await new Promise<void>((r) => server.listen({ fd: listenFd({ host: '127.0.0.1', port: 0, mptcp: true }) }, () => r()));
  const port = (server.address() as net.AddressInfo).port;
  const accepted = new Promise<tls.TLSSocket>((r) => server.once('secureConnection', r));
  const received = accepted.then((s) => new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.once('end', () => resolve(Buffer.concat(chunks)));
    s.once('error', reject);
  }));
  const rawFd = await connectFd({ address: '127.0.0.1', port, mptcp: true });
  const raw = new net.Socket({ fd: rawFd, readable: true, writable: true, allowHalfOpen: true });
  const relay = await tlsToRelay(raw, { host: '127.0.0.1', port, secret: 'x'.repeat(16), pin: creds.pin }, 5000);
  assert.ok(relay.pinOk);
  assert.ok(relay.upload, 'the handshake gave the upload keys');
  assert.equal(relay.upload.suite, suite);
  const plain = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
  await new Promise<void>((r) => plain.listen(0, '127.0.0.1', () => r()));
  const innerP = new Promise<net.Socket>((r) => plain.once('connection', r));
  const outer = net.connect({ port: (plain.address() as net.AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
  const inner = await innerP;
  return {
    outer, inner, relay, rawFd, received, server: accepted,
    close: () => {
      for (const s of [outer, inner, relay.socket]) s.destroy();
      server.close();
      plain.close();
    },
  };
}

/** Node's own first application record, as the CONNECT request is: the sealer continues at seq 1. */
async function firstRecord(r: Rig): Promise<Buffer> {
  const hello = Buffer.from('CONNECT example:443 HTTP/1.1\r\n\r\n');
  await new Promise<void>((res) => r.relay.socket.write(hello, () => res()));
  return hello;
}

/** Starts sealing what the test writes to `outer` onto the relay connection, from seq 1: the pump's handle, and its end. */
function sealFromOne(r: Rig, params: Partial<SealParams> = {}): { handle: SealHandle; ended: Promise<SealEnd> } {
  let handle!: SealHandle;
  const ended = new Promise<SealEnd>((res) => {
    handle = sealStart(fdOf(r.inner), r.rawFd, { ...r.relay.upload!, seq: 1, ...params }, Buffer.alloc(0), res);
  });
  return { handle, ended };
}

describe('sealed relay upload', { skip }, () => {
  test('record keys and records are RFC 8446 7.3 / 5.2 (an independent derivation opens them), KeyUpdate included', () => {
    for (const suite of SUITES) {
      const secret = crypto.randomBytes(suite.endsWith('SHA384') ? 48 : 32);
      const hash = suite.endsWith('SHA384') ? 'sha384' : 'sha256';
      const { key, iv } = sealDerive(suite, secret);
      assert.equal(key.toString('hex'), expandLabel(hash, secret, 'key', suite.startsWith('TLS_AES_256') ? 32 : 16).toString('hex'));
      assert.equal(iv.toString('hex'), expandLabel(hash, secret, 'iv', 12).toString('hex'));
      const plain = crypto.randomBytes(100_000);
      // 7 records of at most 16384 bytes from seq 5; with rekeyAfter 7 a KeyUpdate comes after two.
      const opened = openRecords(suite, secret, 5, sealRecords(suite, secret, 5, plain, 7));
      assert.deepEqual(opened.map(([t]) => t), [23, 23, 22, 23, 23, 23, 23, 23], `${suite}: record types`);
      assert.deepEqual([...opened[2]![1]], [24, 0, 0, 1, 0], 'KeyUpdate(update_not_requested)');
      assert.ok(opened.every(([t, p]) => t !== 23 || p.length <= 16384));
      assert.equal(sha(Buffer.concat(opened.filter(([t]) => t === 23).map(([, p]) => p))), sha(plain));
    }
  });

  test('bad arguments are refused with clear errors, nothing started', () => {
    const secret = Buffer.alloc(32);
    assert.throws(() => sealRecords('TLS_CHACHA20_POLY1305_SHA256' as SealSuite, secret, 0, Buffer.alloc(1)), /suite must be/);
    assert.throws(() => sealRecords('TLS_AES_128_GCM_SHA256', Buffer.alloc(48), 0, Buffer.alloc(1)), /secret must be 32 bytes/);
    assert.throws(() => sealRecords('TLS_AES_128_GCM_SHA256', secret, -1, Buffer.alloc(1)), /seq must be a non-negative integer/);
    assert.throws(() => sealRecords('TLS_AES_128_GCM_SHA256', secret, 0, Buffer.alloc(1), 0), /rekeyAfter must be/);
    const params = { suite: 'TLS_AES_128_GCM_SHA256' as const, secret, seq: 0 };
    assert.throws(() => sealStart(3, 3, params, Buffer.alloc(0), () => {}), /must differ/);
    assert.throws(() => sealStart(-1, 3, params, Buffer.alloc(0), () => {}), /non-negative integer/);
    const f = fs.openSync(__filename, 'r');
    try {
      assert.throws(() => sealStart(f, f + 1000, params, Buffer.alloc(0), () => {}), (e: NodeJS.ErrnoException) => e.code === 'ENOTSOCK' || e.code === 'EBADF');
    } finally {
      fs.closeSync(f);
    }
  });

  for (const [suite, rekeyAfter] of [['TLS_AES_128_GCM_SHA256', undefined], ['TLS_AES_256_GCM_SHA384', 50]] as const) {
    test(`${suite}${rekeyAfter ? `, a KeyUpdate every ${rekeyAfter} records` : ''}: 32 MB up sealed while 16 MB flow down in Node; half-close both ways`, async () => {
      const r = await rig(suite);
      try {
        const hello = await firstRecord(r);
        const eofs: number[] = [];
        const ended = new Promise<SealEnd>((res) => sealStart(fdOf(r.inner), r.rawFd, { ...r.relay.upload!, seq: 1, rekeyAfter }, Buffer.from('head:'), res, () => eofs.push(Date.now())));
        const up = crypto.randomBytes(32 << 20);
        const down = crypto.randomBytes(16 << 20);
        const gotDown = readAll(r.relay.socket);
        r.relay.socket.resume();
        r.outer.end(up);  // the client half-closes first; the server keeps sending after that
        const atServer = await r.received;
        assert.equal(sha(atServer), sha(Buffer.concat([hello, Buffer.from('head:'), up])), 'every byte intact, and the close_notify arrived');
        assert.equal(eofs.length, 1, "the client's EOF was told once");
        const end = await ended;
        assert.equal(end.reason, 'done');
        assert.equal(end.sealed, 5 + up.length);
        (await r.server).end(down);
        assert.equal(sha(await gotDown), sha(down), 'the download in Node intact after the upload half-closed');
      } finally {
        r.close();
      }
    });
  }

  test('empty records (sealNudge) between the data, across KeyUpdates: the server reads them as nothing, every byte intact; none once records wait or after the end', async () => {
    const r = await rig();
    try {
      const hello = await firstRecord(r);
      const { handle, ended } = sealFromOne(r, { rekeyAfter: 3 });
      const tick = (): Promise<void> => new Promise((res) => setTimeout(res, 20));
      const parts: Buffer[] = [];
      let queued = 0;
      for (let i = 0; i < 6; i++) {
        const part = crypto.randomBytes(40_000 + i);
        parts.push(part);
        await new Promise<void>((res) => r.outer.write(part, () => res()));
        await tick();
        // Two in a row: the second waits behind the first until the loop sends it.
        if (handle.nudge()) queued++;
        assert.equal(handle.nudge(), false, 'nothing more is queued while a record waits for the socket');
        await tick();
      }
      assert.equal(queued, 6, 'an idle sealer takes one empty record each time');
      r.outer.end();
      assert.equal(sha(await r.received), sha(Buffer.concat([hello, ...parts])), 'every byte intact, and the close_notify arrived');
      assert.equal((await ended).reason, 'done');
      assert.equal(handle.nudge(), false, 'none after the end');
    } finally {
      r.close();
    }
  });

  test('records with no data in a row stay within what TLS stacks accept: 16 empty ones, then a KeyUpdate, at most 16 KeyUpdates; data resets it', async () => {
    const r = await rig();
    try {
      const hello = await firstRecord(r);
      const { handle, ended } = sealFromOne(r);
      const turn = (): Promise<void> => new Promise((res) => setTimeout(res, 1));
      // Each queued record waits for the loop; a false after a turn is the limit.
      const nudgeUntilRefused = async (): Promise<number> => {
        let sent = 0;
        for (let i = 0; i < 1000; i++) {
          await turn();
          if (!handle.nudge()) {
            await turn();
            await turn();
            if (!handle.nudge()) return sent;
          }
          sent++;
        }
        return sent;
      };
      // 17 runs of 16 empty records with a KeyUpdate after each of the first 16: 288.
      assert.equal(await nudgeUntilRefused(), 16 * 17 + 16);
      const part = crypto.randomBytes(100_000);
      await new Promise<void>((res) => r.outer.write(part, () => res()));
      for (let i = 0; i < 50 && handle.stats()!.sealed < part.length; i++) await turn();
      assert.equal(await nudgeUntilRefused(), 16 * 17 + 16, 'data sealed since: the counts start again');
      r.outer.end();
      assert.equal(sha(await r.received), sha(Buffer.concat([hello, part])), 'the server accepted every one of them, and the data');
      assert.equal((await ended).reason, 'done');
    } finally {
      r.close();
    }
  });

  test('the server half-closes first: the sealed upload keeps flowing until the client ends', async () => {
    const r = await rig();
    try {
      const hello = await firstRecord(r);
      const { ended } = sealFromOne(r);
      const gotDown = readAll(r.relay.socket);
      r.relay.socket.resume();
      (await r.server).end('bye');
      assert.equal((await gotDown).toString(), 'bye');
      const up = crypto.randomBytes(8 << 20);
      r.outer.end(up);
      assert.equal(sha(await r.received), sha(Buffer.concat([hello, up])));
      assert.equal((await ended).reason, 'done');
    } finally {
      r.close();
    }
  });

  test('a server that stops reading: the sealer holds a bounded amount and the writer is held back', async () => {
    const r = await rig();
    try {
      await firstRecord(r);
      (await r.server).pause();
      const ends: SealEnd[] = [];
      const t = sealStart(fdOf(r.inner), r.rawFd, { ...r.relay.upload!, seq: 1 }, Buffer.alloc(0), (e) => ends.push(e));
      const chunk = Buffer.alloc(1 << 20);
      for (let i = 0; i < 200; i++) r.outer.write(chunk);
      await new Promise((res) => setTimeout(res, 1000));
      const moved = t.stats()!.sealed;
      assert.ok(moved < 100 << 20, `sealed ${moved} bytes into a reader that does not read`);
      assert.ok(r.outer.writableLength > 50 << 20, `the writer is held back (${r.outer.writableLength} bytes still queued)`);
      t.stop();
      t.stop();
      assert.equal(ends.length, 1);
      assert.equal(ends[0]!.reason, 'stopped');
      assert.equal(t.stats(), undefined);
    } finally {
      r.close();
    }
  });

  test('the relay resets: it ends once with an error naming errno and syscall', async () => {
    const r = await rig();
    try {
      await firstRecord(r);
      const { ended } = sealFromOne(r);
      r.relay.socket.on('error', () => {});
      (await r.server).destroy();
      r.received.catch(() => {});
      for (let i = 0; i < 64; i++) r.outer.write(Buffer.alloc(1 << 20));
      const end = await ended;
      assert.equal(end.reason, 'error');
      assert.match(end.code ?? '', /^(ECONNRESET|EPIPE)$/);
      assert.ok(end.syscall);
    } finally {
      r.close();
    }
  });

  for (const env of ['1', '0']) {
    test(`the pump ${env === '1' ? 'hands a marked relay stream to the sealer' : 'keeps the upload in Node with BRAID_SEAL=0'}: early bytes first, counts, half-close, done`, async () => {
      const saved = process.env.BRAID_SEAL;
      process.env.BRAID_SEAL = env;
      const r = await rig();
      try {
        const hello = await firstRecord(r);
        markSealable(r.relay.socket as unknown as net.Socket, r.rawFd, r.relay.upload!, 1);
        const writtenAtMark = r.relay.socket.bytesWritten;
        const count = { bytesUp: 0, bytesDown: 0 };
        const early = Buffer.from('early ');
        const result = new Promise<PumpResult>((res) => startPump(r.inner, r.relay.socket as unknown as net.Socket, { idleMs: 30_000, count, early }, res));
        const gotDown = readAll(r.outer);
        const up = crypto.randomBytes(24 << 20);
        r.outer.end(up);
        assert.equal(sha(await r.received), sha(Buffer.concat([hello, early, up])));
        // Sealed, Node's TLS stream wrote nothing after the CONNECT; not sealed, it wrote it all.
        const nodeWrote = r.relay.socket.bytesWritten - writtenAtMark;
        if (env === '1') assert.equal(nodeWrote, 0, 'the upload went through the sealer');
        else assert.equal(nodeWrote, early.length + up.length, 'the upload went through Node');
        const down = crypto.randomBytes(4 << 20);
        (await r.server).end(down);
        assert.equal(sha(await gotDown), sha(down));
        assert.equal((await result).reason, 'done');
        assert.equal(count.bytesUp, early.length + up.length);
        assert.equal(count.bytesDown, down.length);
      } finally {
        if (saved === undefined) delete process.env.BRAID_SEAL;
        else process.env.BRAID_SEAL = saved;
        r.close();
      }
    });
  }

  test('a stream Node wrote to after the mark stays in Node (its record count moved on)', async () => {
    const r = await rig();
    try {
      const hello = await firstRecord(r);
      markSealable(r.relay.socket as unknown as net.Socket, r.rawFd, r.relay.upload!, 1);
      const extra = Buffer.from('GET / HTTP/1.1\r\n\r\n');
      r.relay.socket.write(extra);
      const result = new Promise<PumpResult>((res) => startPump(r.inner, r.relay.socket as unknown as net.Socket, { idleMs: 30_000 }, res));
      const up = crypto.randomBytes(4 << 20);
      r.outer.end(up);
      assert.equal(sha(await r.received), sha(Buffer.concat([hello, extra, up])));
      (await r.server).end();
      r.outer.resume();
      assert.equal((await result).reason, 'done');
    } finally {
      r.close();
    }
  });
});
