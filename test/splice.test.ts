// The native splice pump (native/src/splice.cc) on its own, between loopback TCP and MPTCP sockets:
// every byte intact both ways at once, half-close passed on while the other direction flows,
// backpressure bounded (a reader that stops does not make the pump buffer without limit), stop and
// errors reported once, bad arguments refused with errno-named errors.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { spliceAvailable, spliceStart, type SpliceEnd } from '../electron/core/native/splice';
import { startPump } from '../electron/core/proxy/pump';
import { spliceTunnel } from '../electron/core/proxy/splice-tunnel';
import { setReceiveBuffer } from '../electron/core/native/datapath';
import { connectFd, listenFd } from '../electron/core/native/mptcp';
import { mptcpUnavailableReason } from '../electron/core/proxy/native';
import { requireFor } from './helpers/prerequisites';
import { fdOf, readAll } from './helpers/sockets';

const skip = requireFor('native splice pump', mptcpUnavailableReason() ?? (spliceAvailable() ? undefined : 'the addon has no splice pump (not Linux)'));

/** A connected pair [outer, inner]: `outer` is the test's end, `inner` the end given to the pump. */
async function pair(mptcp: boolean): Promise<[net.Socket, net.Socket, () => void]> {
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
  const lfd = listenFd({ host: '127.0.0.1', port: 0, mptcp });
  await new Promise<void>((r) => server.listen({ fd: lfd }, () => r()));
  const port = (server.address() as net.AddressInfo).port;
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const fd = await connectFd({ address: '127.0.0.1', port, mptcp });
  const outer = new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: true });
  const inner = await accepted;
  inner.pause();
  return [outer, inner, () => server.close()];
}

const sha = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');

describe('native splice pump', { skip }, () => {
  for (const mptcp of [false, true]) {
    test(`${mptcp ? 'MPTCP' : 'TCP'}: 16 MB each way at once, intact; half-close passed on, then done`, async () => {
      const [a, aIn, closeA] = await pair(mptcp);
      const [b, bIn, closeB] = await pair(false);
      try {
        const eofs: string[] = [];
        const ended = new Promise<SpliceEnd>((r) => spliceStart(fdOf(aIn), fdOf(bIn), r, (d) => eofs.push(d)));
        const up = crypto.randomBytes(16 << 20);
        const down = crypto.randomBytes(16 << 20);
        const gotAtB = readAll(b);
        const gotAtA = readAll(a);
        a.end(up);  // A half-closes first; B keeps sending after that
        const atB = await gotAtB;
        assert.equal(sha(atB), sha(up), 'A → B intact, and B saw the FIN');
        assert.deepEqual(eofs, ['up'], "A's EOF was told, B's not yet");
        b.end(down);
        assert.equal(sha(await gotAtA), sha(down), 'B → A intact after A had half-closed');
        const end = await ended;
        assert.equal(end.reason, 'done');
        assert.equal(end.up, up.length);
        assert.equal(end.down, down.length);
        assert.deepEqual(eofs, ['up', 'down']);
      } finally {
        for (const s of [a, aIn, b, bIn]) s.destroy();
        closeA();
        closeB();
      }
    });
  }

  test('a reader that stops: the pump holds a bounded amount and the writer is held back', async () => {
    const [a, aIn, closeA] = await pair(false);
    const [b, bIn, closeB] = await pair(false);
    try {
      const t = spliceStart(fdOf(aIn), fdOf(bIn), () => {});
      b.pause();  // B never reads
      const chunk = Buffer.alloc(1 << 20);
      // 200 MB queued at once in A's stream (references to one buffer): far more than the kernel
      // buffers between A and B plus the pump's pipe can hold.
      for (let i = 0; i < 200; i++) a.write(chunk);
      await new Promise((r) => setTimeout(r, 1000));
      const moved = t.stats()!.up;
      // What the pump wrote on is what B's kernel buffers hold, bounded by the kernel.
      assert.ok(moved < 100 << 20, `pump moved ${moved} bytes into a reader that does not read`);
      assert.ok(a.writableLength > 50 << 20, `the writer is held back (${a.writableLength} bytes still queued at A)`);
      t.stop();
    } finally {
      for (const s of [a, aIn, b, bIn]) s.destroy();
      closeA();
      closeB();
    }
  });

  // `ss -Mm` for the MPTCP socket on local port `port`: its queued bytes (skmem w) and send buffer (tb).
  function mptcpSendMemory(port: number): { queued: number; sndbuf: number } {
    const out = execFileSync('ss', ['-HMm', 'state', 'established', 'sport', `= :${port}`], { encoding: 'utf8', timeout: 5000 });
    const m = /skmem:\([^)]*\btb(\d+)[^)]*\bw(\d+)/.exec(out);
    if (!m) throw new Error(`no MPTCP socket on port ${port} in: ${out}`);
    return { sndbuf: Number(m[1]), queued: Number(m[2]) };
  }

  test('an MPTCP socket is fed only while it is writable, not to the brim (feed.h)', async () => {
    const [a, aIn, closeA] = await pair(false);
    const [b, bIn, closeB] = await pair(true);
    try {
      const t = spliceStart(fdOf(aIn), fdOf(bIn), () => {});
      b.pause();  // the MPTCP socket's peer never reads: its send buffer fills as far as the pump fills it
      const chunk = Buffer.alloc(1 << 20);
      for (let i = 0; i < 100; i++) a.write(chunk);
      await new Promise((r) => setTimeout(r, 1000));
      const { queued, sndbuf } = mptcpSendMemory(bIn.localPort!);
      // poll() calls it writable up to two thirds of its send buffer; the pump writes 64 KiB of
      // data past that at most, which the kernel counts with its per-fragment overhead (seen: 87 KiB
      // in all). Written until EAGAIN, it would be full (seen: 4.12 MB queued of 4.20).
      assert.ok(t.stats()!.up > 0, 'the pump wrote into it');
      assert.ok(queued <= (sndbuf * 2) / 3 + (128 << 10), `queued ${queued} of a send buffer of ${sndbuf}: past the writable mark`);
      assert.ok(queued >= sndbuf / 2, `queued ${queued} of ${sndbuf}: fed up to the mark`);
      t.stop();
    } finally {
      for (const s of [a, aIn, b, bIn]) s.destroy();
      closeA();
      closeB();
    }
  });

  test('stop ends it once with reason stopped; stats are gone afterwards', async () => {
    const [a, aIn, closeA] = await pair(false);
    const [b, bIn, closeB] = await pair(false);
    try {
      const ends: SpliceEnd[] = [];
      const t = spliceStart(fdOf(aIn), fdOf(bIn), (e) => ends.push(e));
      a.write('hello');
      await new Promise((r) => b.once('data', r));
      t.stop();
      t.stop();
      assert.equal(ends.length, 1);
      assert.equal(ends[0]!.reason, 'stopped');
      assert.equal(ends[0]!.up, 5);
      assert.equal(t.stats(), undefined);
    } finally {
      for (const s of [a, aIn, b, bIn]) s.destroy();
      closeA();
      closeB();
    }
  });

  test('a peer that resets ends it with an error naming errno and syscall', async () => {
    const [a, aIn, closeA] = await pair(false);
    const [b, bIn, closeB] = await pair(false);
    try {
      const ended = new Promise<SpliceEnd>((r) => spliceStart(fdOf(aIn), fdOf(bIn), r));
      b.resetAndDestroy();
      a.write(Buffer.alloc(1 << 20));
      const end = await ended;
      assert.equal(end.reason, 'error');
      assert.match(end.code ?? '', /^(ECONNRESET|EPIPE)$/);
      assert.ok(end.syscall);
    } finally {
      for (const s of [a, aIn, b, bIn]) s.destroy();
      closeA();
      closeB();
    }
  });

  test('bad arguments are refused', async () => {
    assert.throws(() => spliceStart(-1, 3, () => {}), /spliceStart/);
    assert.throws(() => spliceStart(1.5, 3, () => {}), /spliceStart/);
    assert.throws(() => spliceStart(3, 4, 'x' as unknown as () => void), /onEnd/);
    assert.throws(() => spliceStart(2 ** 30, 2 ** 30 + 1, () => {}), (e: Error & { code?: string }) => e.code === 'EBADF');
    const [a, aIn, closeA] = await pair(false);
    try {
      assert.throws(() => spliceStart(fdOf(aIn), fdOf(aIn), () => {}), /differ/);
    } finally {
      a.destroy();
      aIn.destroy();
      closeA();
    }
  });
});

function pipeCount(): number {
  return fs.readdirSync('/proc/self/fd').filter((f) => {
    try {
      return fs.readlinkSync(`/proc/self/fd/${f}`).startsWith('pipe:');
    } catch {
      return false;
    }
  }).length;
}

describe('the byte pump hands bulk plain tunnels to the splice pump', { skip }, () => {
  test('16 MB each way through startPump: intact, half-close kept, counted, and moved by the kernel', async () => {
    const [a, aIn, closeA] = await pair(true);
    const [b, bIn, closeB] = await pair(false);
    try {
      const count = { bytesUp: 0, bytesDown: 0 };
      const ended = new Promise<{ reason: string }>((r) => startPump(aIn, bIn, { idleMs: 30_000, count, splice: true }, r));
      const pipesBefore = pipeCount();
      let pipesDuring = 0;
      const up = crypto.randomBytes(16 << 20);
      const down = crypto.randomBytes(16 << 20);
      const gotAtB = readAll(b);
      const gotAtA = readAll(a);
      // Written in pieces, so the hand-over (after the first MiB) happens mid-stream.
      for (let i = 0; i < 16; i++) {
        a.write(up.subarray(i << 20, (i + 1) << 20));
        b.write(down.subarray(i << 20, (i + 1) << 20));
        await new Promise((r) => setTimeout(r, 5));
        pipesDuring = Math.max(pipesDuring, pipeCount());
      }
      a.end();
      assert.equal(sha(await gotAtB), sha(up), 'A → B intact');
      b.end();
      assert.equal(sha(await gotAtA), sha(down), 'B → A intact');
      assert.equal((await ended).reason, 'done');
      assert.equal(count.bytesUp, up.length);
      assert.equal(count.bytesDown, down.length);
      assert.ok(pipesDuring >= pipesBefore + 4, `the kernel's pump ran (pipes open: ${pipesBefore} before, ${pipesDuring} during)`);
    } finally {
      for (const s of [a, aIn, b, bIn]) s.destroy();
      closeA();
      closeB();
    }
  });
});

describe('hand-over while the destination is slow', { skip }, () => {
  test('bytes Node had read but not yet written on go through once, in order', async () => {
    // A slow destination (a shaped link in the bench): a tiny receive buffer at the far end and a
    // reader that pauses, so the hand-over happens under backpressure. There, bytes Node had read
    // were once written twice (read() emits 'data' as well): seen in the bench's shaped uploads
    // through braid up (3 of 4 failed), which this test does not reproduce every time.
    const [a, aIn, closeA] = await pair(false);
    const [b, bIn, closeB] = await pair(true);
    try {
      setReceiveBuffer((bIn as unknown as { _handle: { fd: number } })._handle.fd, 4096);
      const count = { bytesUp: 0, bytesDown: 0 };
      const ended = new Promise<{ reason: string }>((r) => startPump(aIn, b, { idleMs: 30_000, count, splice: true }, r));
      const up = crypto.randomBytes(3 << 20);
      const chunks: Buffer[] = [];
      bIn.on('data', (c: Buffer) => {
        chunks.push(c);
        bIn.pause();
        setTimeout(() => bIn.resume(), 1);
      });
      const gotEnd = new Promise((r) => bIn.once('end', r));
      bIn.resume();
      a.end(up);
      await gotEnd;
      bIn.end();
      a.resume();
      const got = Buffer.concat(chunks);
      assert.equal(got.length, up.length, 'as many bytes arrived as were sent');
      assert.equal(sha(got), sha(up));
      assert.equal((await ended).reason, 'done');
      assert.equal(count.bytesUp, up.length);
    } finally {
      for (const s of [a, aIn, b, bIn]) s.destroy();
      closeA();
      closeB();
    }
  });
});

describe('hand-over with bytes Node has read but not yet passed on', { skip }, () => {
  test('they go on exactly once, before what the kernel moves after them', async () => {
    // Deterministic where the test above is not: the client's socket is paused (as the pump pauses
    // it under backpressure) with bytes in Node's buffer when the hand-over starts. Draining that
    // buffer with read() emits 'data' for them, so the caller's listener passes them on; writing
    // them a second time (as the hand-over once did) shows here as extra bytes at the far end.
    const [a, aIn, closeA] = await pair(false);
    const [b, bIn, closeB] = await pair(false);
    try {
      const first = crypto.randomBytes(8192);
      const rest = crypto.randomBytes(2 << 20);
      const forward = (c: Buffer): void => void b.write(c);
      aIn.on('data', forward);   // the pump's listener; aIn stays paused (pair() paused it)
      a.write(first);
      aIn.read(0);               // Node starts reading into its buffer, still paused
      const t0 = Date.now();
      while (aIn.readableLength < first.length && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 10));
      assert.equal(aIn.readableLength, first.length, 'the first bytes wait in Node\'s buffer');
      const got = readAll(bIn);
      bIn.resume();
      const ended = new Promise<SpliceEnd>((resolve, reject) => spliceTunnel(aIn, b, {
        moved: () => {},
        started: () => void aIn.off('data', forward),
        declined: () => reject(new Error('the hand-over was declined')),
        clientEof: () => {},
        end: resolve,
      }));
      a.end(rest);
      const body = await got;
      bIn.end();
      a.resume();
      await ended;
      assert.equal(body.length, first.length + rest.length, `${body.length - first.length - rest.length} bytes more than were sent`);
      assert.equal(sha(body), sha(Buffer.concat([first, rest])));
    } finally {
      for (const s of [a, aIn, b, bIn]) s.destroy();
      closeA();
      closeB();
    }
  });
});
