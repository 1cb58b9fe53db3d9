// The relay's sealed download (relay/tls-accept.ts, proxy/seal-tunnel.ts, native/src/seal.cc): the
// relay's end of TLS over an MPTCP socket, as `braid relay` accepts it, and Node's own TLS client at
// the other end opening what the addon seals. The tickets counted per connection are the tickets the
// client received (full handshake and resumption), the pump hands the download to the sealer and
// keeps the upload in Node, every byte arrives intact both ways, half-close is passed on, and the
// count matters: one record off, the client's TLS refuses the stream.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { sealAvailable } from '../electron/core/native/seal';
import { connectFd, listenFd } from '../electron/core/native/mptcp';
import { mptcpUnavailableReason } from '../electron/core/proxy/native';
import { QUIET_TICK_MS } from '../electron/core/proxy/ack-nudge';
import { startPump, type PumpResult } from '../electron/core/proxy/pump';
import { markSealable } from '../electron/core/proxy/seal-tunnel';
import { loadOrCreateCredentials } from '../electron/core/relay/credentials';
import { acceptTls, ticketCountingWorks, type AcceptedTls } from '../electron/core/relay/tls-accept';
import { requireFor } from './helpers/prerequisites';
import { fdOf, readAll, socketPair } from './helpers/sockets';

const skip = requireFor('sealed relay download', mptcpUnavailableReason() ?? (sealAvailable() ? undefined : 'the addon cannot seal here (not Linux, or no libcrypto symbols)'));
const sha = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');

const credDir = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-seal-down-'));
const creds = loadOrCreateCredentials({ dir: credDir });
after(() => fs.rmSync(credDir, { recursive: true, force: true }));
const context = tls.createSecureContext({ key: creds.key, cert: creds.cert, minVersion: 'TLSv1.3', ciphers: 'TLS_AES_128_GCM_SHA256' });

interface Rig {
  /** the relay's end, as acceptTls gave it, and its raw socket's fd */
  accepted: AcceptedTls;
  fd: number;
  /** Node's TLS client at the other end, and the tickets ('session' events) it received */
  client: tls.TLSSocket;
  sessions: Buffer[];
  close(): void;
}

/** A relay-side TLS connection over MPTCP; `session` resumes an earlier one. */
async function rig(session?: Buffer): Promise<Rig> {
  const server = net.createServer({ allowHalfOpen: true });
  await new Promise<void>((r) => server.listen({ fd: listenFd({ host: '127.0.0.1', port: 0, mptcp: true }) }, () => r()));
  const port = (server.address() as net.AddressInfo).port;
  const accepted = new Promise<{ a: AcceptedTls; fd: number }>((resolve, reject) => {
    server.once('connection', (raw: net.Socket) => {
      const fd = fdOf(raw);
      acceptTls(raw, context, 5000, (a) => resolve({ a, fd }), reject);
    });
  });
  const rawFd = await connectFd({ address: '127.0.0.1', port, mptcp: true });
  const raw = new net.Socket({ fd: rawFd, readable: true, writable: true, allowHalfOpen: true });
  const client = tls.connect({ socket: raw, rejectUnauthorized: false, minVersion: 'TLSv1.3', session, allowHalfOpen: true } as tls.ConnectionOptions);
  const sessions: Buffer[] = [];
  client.on('session', (s: Buffer) => sessions.push(s));
  client.on('error', () => {});
  const { a, fd } = await accepted;
  a.socket.on('error', () => {});
  return {
    accepted: a, fd, client, sessions,
    close: () => {
      for (const s of [client, a.socket]) s.destroy();
      server.close();
    },
  };
}

/** The relay's CONNECT exchange: the request read, the 200 written (one record) and flushed. */
async function answer(r: Rig): Promise<void> {
  const request = new Promise<void>((res) => r.accepted.socket.once('data', () => res()));
  r.client.write('CONNECT example:443 HTTP/1.1\r\n\r\n');
  await request;
  r.accepted.socket.pause();
  await new Promise<void>((res) => r.accepted.socket.write('HTTP/1.1 200 Connection established\r\n\r\n', () => res()));
  const head = await new Promise<Buffer>((res) => r.client.once('data', res));
  assert.match(head.toString(), /^HTTP\/1\.1 200/);
}

/** A plain TCP pair standing in for the relay's destination: [the pump's end (paused), the destination's]. */
async function destination(): Promise<[net.Socket, net.Socket]> {
  const [near, dest] = await socketPair();
  near.pause();
  return [near, dest];
}

describe('sealed relay download', { skip }, () => {
  test('tickets counted per connection are the tickets the client received: full handshake and resumption', async () => {
    assert.equal(await ticketCountingWorks(context), true);
    const first = await rig();
    let resumeWith: Buffer;
    try {
      await answer(first);
      assert.ok(first.accepted.download, 'keys from the relay\'s handshake');
      assert.equal(first.accepted.download.suite, 'TLS_AES_128_GCM_SHA256');
      assert.equal(first.accepted.tickets(), first.sessions.length);
      assert.ok(first.sessions.length >= 1, 'a full handshake brings tickets');
      // acceptTls takes only its own listeners away once secure: what is left is Node's own (it
      // frees the connection's SSL object on close).
      assert.ok(first.accepted.socket.listenerCount('close') >= 1, 'Node\'s own close listener is gone');
      resumeWith = first.sessions[first.sessions.length - 1]!;
    } finally {
      first.close();
    }
    const again = await rig(resumeWith);
    try {
      await answer(again);
      assert.equal(again.client.isSessionReused(), true);
      assert.equal(again.accepted.tickets(), again.sessions.length);
    } finally {
      again.close();
    }
  });

  for (const resumed of [false, true]) {
    test(`the pump seals the destination's bytes into the relay connection${resumed ? ' (resumed session)' : ''}: 32 MB down sealed while 8 MB go up in Node, half-close both ways`, async () => {
      let session: Buffer | undefined;
      if (resumed) {
        const first = await rig();
        await answer(first);
        session = first.sessions.at(-1);
        first.close();
      }
      const r = await rig(session);
      const [near, dest] = await destination();
      try {
        await answer(r);
        markSealable(r.accepted.socket as unknown as net.Socket, r.fd, r.accepted.download!, r.accepted.tickets() + 1);
        const writtenAtMark = r.accepted.socket.bytesWritten;
        const sealed: string[] = [];
        const count = { bytesUp: 0, bytesDown: 0 };
        const result = new Promise<PumpResult>((res) => startPump(r.accepted.socket as unknown as net.Socket, near, { idleMs: 30_000, count, onSealed: (d) => sealed.push(d) }, res));
        assert.deepEqual(sealed, ['down']);
        const gotDown = readAll(r.client);
        const gotUp = readAll(dest);
        const down = crypto.randomBytes(32 << 20);
        const up = crypto.randomBytes(8 << 20);
        dest.end(down);  // the destination finishes first; the upload goes on after it
        assert.equal(sha(await gotDown), sha(down), 'every byte down intact, and the close_notify arrived');
        r.client.end(up);
        assert.equal(sha(await gotUp), sha(up));
        assert.equal((await result).reason, 'done');
        assert.equal(r.accepted.socket.bytesWritten - writtenAtMark, 0, 'Node\'s TLS wrote nothing after the 200');
        assert.equal(count.bytesDown, down.length);
        assert.equal(count.bytesUp, up.length);
      } finally {
        r.close();
        near.destroy();
        dest.destroy();
      }
    });
  }

  test('an upload that stops after bulk data brings an empty record down (ack-nudge.ts), read by the client as nothing; interactive traffic brings none', async () => {
    const r = await rig();
    const [near, dest] = await destination();
    try {
      await answer(r);
      markSealable(r.accepted.socket as unknown as net.Socket, r.fd, r.accepted.download!, r.accepted.tickets() + 1);
      let nudges = 0;
      const result = new Promise<PumpResult>((res) => startPump(r.accepted.socket as unknown as net.Socket, near, { idleMs: 30_000, onNudge: () => nudges++ }, res));
      let atDest = 0;
      dest.on('data', (c: Buffer) => { atDest += c.length; });
      const gotUp = readAll(dest);
      const gotDown = readAll(r.client);
      const pause = (): Promise<void> => new Promise((res) => setTimeout(res, QUIET_TICK_MS * 10));
      const arrived = async (bytes: number): Promise<void> => {
        for (let i = 0; i < 1000 && atDest < bytes; i++) await new Promise((res) => setTimeout(res, 10));
        assert.equal(atDest, bytes, 'the upload so far reached the destination');
      };
      const up: Buffer[] = [];
      let sent = 0;
      for (let i = 0; i < 3; i++) {
        const burst = crypto.randomBytes(4 << 20);
        up.push(burst);
        sent += burst.length;
        r.client.write(burst);
        await arrived(sent);
        await pause();
      }
      // In one process the relay's reader shares the loop with the client's writer, and the stall
      // the record ends comes often (without it: gaps of about 200 ms, 4 MB taking half a second),
      // so there may be several per burst; after each burst's last byte there is one.
      const afterBursts = nudges;
      assert.ok(afterBursts >= 3, `an empty record after each burst at least (${afterBursts})`);
      // 1 KiB every 5 ms is far below BULK_BYTES_PER_TICK.
      for (let i = 0; i < 20; i++) {
        const keystroke = crypto.randomBytes(1024);
        up.push(keystroke);
        r.client.write(keystroke);
        await new Promise((res) => setTimeout(res, 5));
      }
      await arrived(sent + 20 * 1024);
      await pause();
      assert.equal(nudges, afterBursts, 'none for interactive traffic');
      const down = crypto.randomBytes(8 << 20);
      dest.end(down);
      assert.equal(sha(await gotDown), sha(down), 'every byte down intact around the empty records');
      r.client.end();
      assert.equal(sha(await gotUp), sha(Buffer.concat(up)));
      assert.equal((await result).reason, 'done');
    } finally {
      r.close();
      near.destroy();
      dest.destroy();
    }
  });

  test('one record off, and the client refuses the stream: the count is what makes it work', async () => {
    const r = await rig();
    const [near, dest] = await destination();
    try {
      await answer(r);
      markSealable(r.accepted.socket as unknown as net.Socket, r.fd, r.accepted.download!, r.accepted.tickets());
      const result = new Promise<PumpResult>((res) => startPump(r.accepted.socket as unknown as net.Socket, near, { idleMs: 30_000 }, res));
      const failed = new Promise<string>((res) => r.client.once('error', (e: NodeJS.ErrnoException) => res(e.code ?? e.message)));
      r.client.resume();
      dest.end(crypto.randomBytes(1 << 20));
      assert.match(await failed, /BAD_RECORD_MAC|DECRYPTION_FAILED/);
      r.client.destroy();
      dest.destroy();
      assert.notEqual((await result).reason, 'idle');
    } finally {
      r.close();
      near.destroy();
      dest.destroy();
    }
  });
});
