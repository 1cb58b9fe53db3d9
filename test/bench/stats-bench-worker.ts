/**
 * Runs inside a throwaway namespace (stats-bench.ts starts it there): N real MPTCP connections over
 * the namespace's loopback, each with a second subflow when the namespace has an endpoint for it,
 * fed to a StatsEngine through a stand-in tracker whose connections read their subflows from the
 * real fds, exactly as the proxy's TrackedConnection does. Prints one JSON line.
 *
 *   node stats-bench-worker.js --counts 100,1000,5000 --ticks 20   (with --expose-gc for memory)
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { closeFd, connectFd, listenFd, socketInfo, type SubflowInfo } from '../../electron/core/native/mptcp';
import type { ConnectionTracker, TrackedConnection } from '../../electron/core/proxy/tracker';
import { StatsEngine } from '../../electron/core/stats/engine';

interface Args { counts: number[]; ticks: number }

function parseArgs(argv: string[]): Args {
  const out: Args = { counts: [100, 1000, 5000], ticks: 20 };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--counts') out.counts = argv[++i]!.split(',').map(Number);
    else if (argv[i] === '--ticks') out.ticks = Number(argv[++i]);
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  if (out.counts.some((n) => !Number.isInteger(n) || n < 1 || n > 8000)) throw new Error('--counts: integers 1..8000');
  if (!Number.isInteger(out.ticks) || out.ticks < 3 || out.ticks > 1000) throw new Error('--ticks: 3..1000');
  return out;
}

/** What the engine uses of a TrackedConnection: id, byte counts, subflows(). */
class FakeConnection {
  bytesUp = 0;
  bytesDown = 0;
  constructor(readonly id: number, readonly fd: number) {}
  subflows(withBackupFlags = true) {
    return socketInfo(this.fd, withBackupFlags);
  }
}

/** What the engine uses of a ConnectionTracker. Every connection moves every tick here. */
class FakeTracker extends EventEmitter {
  readonly live: FakeConnection[] = [];
  get size(): number {
    return this.live.length;
  }
  connections(): IterableIterator<FakeConnection> {
    return this.live.values();
  }
  get(id: number): FakeConnection | undefined {
    return this.live[id - 1];
  }
  takeMoved(): Set<FakeConnection> {
    return new Set(this.live);
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const max = Math.max(...args.counts);
  const listener = listenFd({ host: '127.0.0.1', port: 0, backlog: 4096 });
  const accepted: net.Socket[] = [];
  const server = net.createServer((s) => {
    accepted.push(s);
    s.on('error', () => {});
    s.write(Buffer.alloc(1024)); // some bytes, so that the counters are not all zero
  });
  await new Promise<void>((resolve) => server.listen({ fd: listener }, resolve));
  const port = (server.address() as net.AddressInfo).port;

  const tracker = new FakeTracker();
  const engine = new StatsEngine(() => tracker as unknown as ConnectionTracker, { intervalMs: 500 });
  const rows: Record<string, number>[] = [];
  const deadline = Date.now() + 90_000;

  for (const n of [...args.counts].sort((a, b) => a - b)) {
    // Grow to n connections, a batch at a time.
    while (tracker.live.length < n) {
      if (Date.now() > deadline) throw new Error('connecting took too long');
      const batch = Math.min(200, n - tracker.live.length);
      const fds = await Promise.all(Array.from({ length: batch }, () => connectFd({ address: '127.0.0.1', port, timeoutMs: 10_000 })));
      for (const fd of fds) tracker.live.push(new FakeConnection(tracker.live.length + 1, fd));
    }
    // Let the second subflows join and the accepts land (bounded).
    for (let i = 0; i < 100 && accepted.length < n; i++) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 300));
    const subflows = tracker.live.slice(0, 50).reduce((a, c) => a + c.subflows(false).subflows.length, 0) / Math.min(50, tracker.live.length);

    const tickMs: number[] = [];
    const refMs: number[] = [];
    let t = Date.now();
    for (let i = 0; i < args.ticks + 3; i++) {
      for (const c of tracker.live) c.bytesDown += 1000;
      t += 500;
      const a = nowMs();
      engine.tick(t);
      const b = nowMs();
      // Reference, same run, same fds: one bare socketInfo (MPTCP_INFO + subflow getsockopt) each.
      let sink = 0;
      for (const c of tracker.live) sink += socketInfo(c.fd, false).subflows.length;
      const d = nowMs();
      if (sink < 0) throw new Error('unreachable');
      if (i >= 3) { tickMs.push(b - a); refMs.push(d - b); }
    }
    const tick = median(tickMs);
    const ref = median(refMs);
    rows.push({ connections: n, subflowsPerConnection: subflows, tickMs: tick, usPerConnection: (tick * 1000) / n, refMs: ref, refUsPerConnection: (ref * 1000) / n, ratio: tick / ref });
  }

  // History memory: a 10-minute ring at 500 ms (1200 ticks), filled twice over, with a few paths per tick.
  const gc = (globalThis as { gc?: () => void }).gc;
  const fakePaths: SubflowInfo[] = ['wlan0', 'wwan0', 'eth0', 'usb0'].map((name, i) => ({
    id: i, localAddress: `10.0.${i}.2`, localPort: 40000 + i, remoteAddress: '192.0.2.1', remotePort: 443, family: 4, interface: name,
    bytesSent: 0, bytesAcked: 0, bytesReceived: 0, rttUs: 20_000, rttVarUs: 0, rcvRttUs: 0, bytesRetrans: 0, backup: false, backupKnown: false, state: 1,
  }));
  const memTracker = new FakeTracker();
  for (let i = 0; i < 8; i++) memTracker.live.push(new FakeConnection(i + 1, -1));
  let counter = 0;
  const memEngine = new StatsEngine(() => memTracker as unknown as ConnectionTracker, {
    intervalMs: 500,
    historyMs: 10 * 60_000,
    read: () => fakePaths.map((s) => ({ ...s, bytesReceived: (counter += 1500), bytesAcked: counter })),
  });
  const heap = (): number => { gc?.(); gc?.(); return process.memoryUsage().heapUsed; };
  const base = heap();
  let tm = Date.now();
  const capacity = 1200;
  const memAt: Record<string, number> = {};
  for (let i = 1; i <= 3 * capacity; i++) {
    for (const c of memTracker.live) c.bytesDown += 10_000;
    memEngine.tick((tm += 500));
    if (i === capacity || i === 2 * capacity || i === 3 * capacity) memAt[String(i)] = heap() - base;
  }
  const kept = memEngine.recent().length;

  engine.stop();
  memEngine.stop();
  for (const c of tracker.live) closeFd(c.fd);
  for (const s of accepted) s.destroy();
  server.close();
  process.stdout.write(JSON.stringify({ rows, history: { capacity, kept, paths: fakePaths.length, gc: gc !== undefined, heapBytesAfterTicks: memAt } }) + '\n');
}

main().then(() => process.exit(0), (err) => {
  process.stderr.write(`stats-bench-worker: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
