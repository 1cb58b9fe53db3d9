/**
 * The stats engine with many idle connections (unit, no kernel): a connection whose byte counts do
 * not move is read only now and then, one that moves is read every tick (and after, while its
 * subflows' counters still move), bytes that move after a quiet spell are split by the subflow
 * counters read then, and the per-path subflow counts and RTTs stay right while connections sit
 * idle and after they close; with nothing moving the engine ticks at its slower idle pace until a
 * byte, an opening or a closing wakes it.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { test } from 'node:test';
import type { SubflowInfo } from '../electron/core/native/mptcp';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConnectionTracker, type ConnectionSnapshot } from '../electron/core/proxy/tracker';
import { StatsEngine } from '../electron/core/stats/engine';

interface FakeConn {
  id: number;
  bytesUp: number;
  bytesDown: number;
  sub: SubflowInfo[] | null;
  /** the MPTCP connection's own counters (the reader then answers as socketInfo() does) */
  own?: { acked: number; received: number };
}

function subflow(iface: string, received: number, rttUs: number, port: number): SubflowInfo {
  return {
    id: 0, localAddress: `10.0.${iface === 'a' ? 1 : 2}.1`, localPort: port, remoteAddress: '10.0.9.9', remotePort: 443, family: 4,
    interface: iface, bytesSent: 0, bytesAcked: 0, bytesReceived: received, rttUs, rttVarUs: 0, rcvRttUs: 0, bytesRetrans: 0, backup: false, backupKnown: false, state: 1,
  };
}

/** What the engine uses of a ConnectionTracker; moved connections found by comparing counts. */
class FakeTracker extends EventEmitter {
  readonly live = new Map<number, FakeConn>();
  private readonly seen = new Map<number, string>();
  get size(): number {
    return this.live.size;
  }
  connections(): IterableIterator<FakeConn> {
    return this.live.values();
  }
  get(id: number): FakeConn | undefined {
    return this.live.get(id);
  }
  takeMoved(): Set<FakeConn> {
    const out = new Set<FakeConn>();
    for (const c of this.live.values()) {
      const k = `${c.bytesUp}:${c.bytesDown}`;
      if (this.seen.get(c.id) !== k) out.add(c);
      this.seen.set(c.id, k);
    }
    return out;
  }
  close(id: number): void {
    const c = this.live.get(id)!;
    this.live.delete(id);
    this.seen.delete(id);
    const snap: ConnectionSnapshot = { id, client: { address: '', port: 0 }, protocol: 'socks5', destination: null, startedAt: 0, bytesUp: c.bytesUp, bytesDown: c.bytesDown, transport: 'mptcp', program: null, route: null };
    this.emit('closed', snap);
  }
}

function setup(n: number) {
  const tracker = new FakeTracker();
  for (let id = 1; id <= n; id++) tracker.live.set(id, { id, bytesUp: 0, bytesDown: 1000, sub: [subflow('a', 600, 10_000, id), subflow('b', 400, 30_000, id)] });
  const reads = new Map<number, number>();
  const engine = new StatsEngine(() => tracker as unknown as ConnectionTracker, {
    read: (c) => {
      reads.set(c.id, (reads.get(c.id) ?? 0) + 1);
      const f = c as unknown as FakeConn;
      const subflows = f.sub?.map((s) => ({ ...s })) ?? null;
      if (!f.own || !subflows) return subflows;
      return { mptcp: true, fallback: false, token: 1, subflowsTotal: subflows.length, bytesSent: f.own.acked, bytesReceived: f.own.received, bytesAcked: f.own.acked, retransmits: 0, subflows };
    },
  });
  let t = 1_000_000;
  const tick = () => engine.tick((t += 500));
  return { tracker, engine, reads, tick };
}

test('idle connections are read once per 600 s, in slices 10 s apart; a moving one every tick', () => {
  const { tracker, reads, tick } = setup(600);
  for (let i = 0; i < 10; i++) tick(); // first reads, then quiet
  reads.clear();
  const busy = tracker.live.get(7)!;
  const idleReadsPerTick: number[] = [];
  for (let i = 0; i < 1200; i++) {
    busy.bytesDown += 1500;
    busy.sub![0]!.bytesReceived += 1500;
    const before = [...reads.values()].reduce((x, y) => x + y, 0);
    tick();
    idleReadsPerTick.push([...reads.values()].reduce((x, y) => x + y, 0) - before - 1);
  }
  assert.equal(reads.get(7), 1200, 'the moving connection was read on every tick');
  // Batched: a few larger slices rather than a few reads every tick (cheaper per read).
  const slices = idleReadsPerTick.filter((n) => n > 0);
  assert.equal(slices.length, 60, `idle reads per tick: ${idleReadsPerTick.join(',')}`);
  // A slice is 600 * 10 s / 600 s = 10 connections, one fewer when it passes the moving one (read anyway).
  assert.ok(slices.every((n) => n === 10 || n === 9), `slice sizes: ${[...new Set(slices)].join(',')}`);
  const idle = [...reads.entries()].filter(([id]) => id !== 7).map(([, n]) => n);
  assert.equal(idle.length, 599, 'every idle connection was refreshed');
  assert.ok(idle.every((n) => n === 1), `each idle one read once in 600 s: ${[...new Set(idle)].join(',')}`);
});

test('refreshIdle() reads every idle connection within a few ticks, not all in one', () => {
  const { engine, reads, tick } = setup(600);
  for (let i = 0; i < 10; i++) tick();
  reads.clear();
  engine.refreshIdle();
  const perTick: number[] = [];
  for (let i = 0; i < 3; i++) {
    const before = [...reads.values()].reduce((x, y) => x + y, 0);
    tick();
    perTick.push([...reads.values()].reduce((x, y) => x + y, 0) - before);
  }
  assert.equal(reads.size, 600, `read after refreshIdle: ${reads.size} of 600 (per tick ${perTick.join(',')})`);
  assert.ok(perTick.every((n) => n <= 210), `per tick: ${perTick.join(',')}`);
  reads.clear();
  for (let i = 0; i < 3; i++) tick();
  assert.ok(reads.size <= 10, `back to the slow refresh: ${reads.size} reads in 3 ticks`);
});

test('the engine ticks at its idle pace while nothing moves; a byte, an opening, a closing or a new proxy wakes it', async () => {
  const tracker = new ConnectionTracker(10);
  let current = tracker;
  const engine = new StatsEngine(() => current, { intervalMs: 50, idleIntervalMs: 1000, read: () => [] });
  const at: number[] = [];
  engine.on('tick', (k) => at.push(k.t));
  const conn = tracker.open({ address: '127.0.0.1', port: 1 })!;
  engine.start();
  const waitFor = async (what: string, ok: () => boolean, ms: number) => {
    const end = Date.now() + ms;
    while (!ok()) {
      if (Date.now() > end) assert.fail(`${what}: not within ${ms} ms (ticks at ${at.map((t) => t - at[0]!).join(',')})`);
      await sleep(5);
    }
  };
  try {
    // New, then quiet for a few ticks at the fast pace: then the idle pace.
    await waitFor('idle pace', () => engine.idle, 3000);
    const n = at.length;
    await waitFor('two idle ticks', () => at.length >= n + 2, 5000);
    const gaps = at.slice(n - 1).map((t, i, a) => (i ? t - a[i - 1]! : null)).filter((g): g is number => g !== null);
    assert.ok(gaps.every((g) => g >= 995), `idle gaps ${gaps.join(',')} ms`);
    for (const [what, act] of [
      ['a byte', () => void (conn.bytesDown += 100)],
      ['an opening', () => void tracker.open({ address: '127.0.0.1', port: 2 })],
      ['a closing', () => conn.close()],
      ['a new proxy', () => engine.track((current = new ConnectionTracker(10)))],
    ] as const) {
      await waitFor(`idle before ${what}`, () => engine.idle, 3000);
      // Just after an idle tick, so that the next one would be a whole idle interval away.
      const m = at.length;
      await waitFor('an idle tick', () => at.length > m, 3000);
      const t0 = Date.now();
      act();
      assert.equal(engine.idle, false, `${what} woke the engine`);
      await waitFor(`a tick after ${what}`, () => at.length > m + 1, 3000);
      assert.ok(at[m + 1]! - t0 < 500, `${what}: next tick ${at[m + 1]! - t0} ms later (idle pace 1000 ms)`);
      if (what === 'a closing') assert.equal(engine.recent().at(-1)!.connections, 1, 'the tick after the closing counts one connection');
    }
    assert.equal(engine.recent().at(-1)!.connections, 0, 'the new proxy\'s tracker is the one counted');
  } finally {
    engine.stop();
  }
});

test('a connection is read until a read finds neither its bytes nor its subflows\' counters moved, and no longer', () => {
  const { tracker, reads, tick } = setup(1);
  const c = tracker.live.get(1)!;
  // New: read on the next tick (its first bytes), and once more, which finds nothing moved.
  for (let i = 0; i < 5; i++) tick();
  assert.equal(reads.get(1), 2, 'a new connection that then sat still');
  // Its bytes move once, then stop while its send buffer drains: path b's counter moves on for two ticks.
  reads.clear();
  c.bytesDown += 5000;
  c.sub![0]!.bytesReceived += 3000;
  tick();
  for (let i = 0; i < 2; i++) {
    c.sub![1]!.bytesReceived += 1000;
    tick();
  }
  for (let i = 0; i < 4; i++) tick();
  assert.equal(reads.get(1), 4, 'read while its counters moved, then once finding them still');
  const k = tick();
  assert.equal(k.totalDown, 6000, 'the bytes the proxy counted');
});

test('an MPTCP connection whose own counters show every counted byte acknowledged and read is idle after one read', () => {
  const { tracker, reads, tick } = setup(3);
  // 1: settled. 2: 40 bytes written but not yet acknowledged. 3: more on the wire than the proxy
  // counted (a relay connection's TLS records): never taken as settled.
  tracker.live.get(1)!.own = { acked: 0, received: 1000 };
  tracker.live.get(2)!.own = { acked: 0, received: 1000 };
  tracker.live.get(2)!.bytesUp = 40;
  tracker.live.get(3)!.own = { acked: 0, received: 1029 };
  for (let i = 0; i < 5; i++) tick();
  assert.equal(reads.get(1), 1, 'settled at its first read');
  assert.equal(reads.get(2), 2, 'not settled: read again, which finds nothing moved');
  assert.equal(reads.get(3), 2, 'its counters never equal the proxy\'s');
  // Its bytes move again: read while they do, and once it is settled no more.
  reads.clear();
  const c = tracker.live.get(1)!;
  c.bytesDown += 3000;
  c.sub![0]!.bytesReceived += 3000;
  c.own = { acked: 0, received: 4000 };
  for (let i = 0; i < 5; i++) tick();
  assert.equal(reads.get(1), 1);
  const k = tick();
  assert.equal(k.totalDown, 3 * 1000 + 3000, 'the bytes the proxy counted');
  assert.equal(k.paths.find((p) => p.path === 'a')!.totalDown, 3 * 600 + 3000, 'the new bytes on the path whose counter moved');
});

test('bytes after a quiet spell are split by the subflow counters read then', () => {
  const { tracker, tick } = setup(1);
  for (let i = 0; i < 10; i++) tick();
  const c = tracker.live.get(1)!;
  // While it sat idle (unread), its subflow counters went on: only path b carries the new bytes.
  c.sub![1]!.bytesReceived += 9000;
  c.bytesDown += 9000;
  const k = tick();
  const b = k.paths.find((p) => p.path === 'b')!;
  const a = k.paths.find((p) => p.path === 'a')!;
  assert.equal(b.downBps * 0.5, 9000, 'all 9000 new bytes on path b');
  assert.equal(a.downBps, 0);
  assert.equal(k.totalDown, 10_000);
});

test('per-path subflows and RTT hold while connections are idle and drop when they close', () => {
  const { tracker, tick } = setup(50);
  let k = tick();
  for (let i = 0; i < 30; i++) k = tick();
  const path = (name: string) => k.paths.find((p) => p.path === name)!;
  assert.equal(path('a').subflows, 50);
  assert.equal(path('b').subflows, 50);
  assert.equal(path('a').rttUs, 10_000);
  assert.equal(path('b').rttUs, 30_000);
  for (let id = 1; id <= 20; id++) tracker.close(id);
  k = tick();
  assert.equal(path('a').subflows, 30, 'closed connections no longer count');
  // A connection whose outbound socket is gone reads as null: its subflows stop counting when it is next read.
  const gone = tracker.live.get(21)!;
  gone.bytesDown += 10;
  gone.sub = null;
  k = tick();
  assert.equal(path('a').subflows, 29);
  assert.equal(path('b').subflows, 29);
});
