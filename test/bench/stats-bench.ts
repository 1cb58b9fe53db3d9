/**
 * Bench part for the stats engine: the cost of one StatsEngine.tick() with N live MPTCP connections
 * (real loopback MPTCP sockets with two subflows each, in a throwaway namespace), per tick and per
 * connection, against a reference from the same run and the same fds (one bare socketInfo() per
 * connection); and the memory the 10-minute history holds once full (it must stop growing).
 *
 * Called from bench.ts; also runnable alone: node dist/test/bench/stats-bench.js
 * Results go to stdout and to test-artifacts/stats-bench.json.
 */
import fs from 'node:fs';
import path from 'node:path';
import { skipUnlessRoot, Topology } from '../helpers/netns';
import { DIST, missingPrerequisite } from '../helpers/multipath-harness';

const COUNTS = [100, 1000, 5000];
const TICKS = 20;
const WORKER = path.join(DIST, 'test', 'bench', 'stats-bench-worker.js');

export interface StatsBenchRow {
  connections: number;
  subflowsPerConnection: number;
  tickMs: number;
  usPerConnection: number;
  refMs: number;
  refUsPerConnection: number;
  ratio: number;
}

export interface StatsBenchResult {
  rows: StatsBenchRow[];
  history: { capacity: number; kept: number; paths: number; gc: boolean; heapBytesAfterTicks: Record<string, number> };
}

export async function statsBench(log: (s: string) => void = (s) => void process.stdout.write(s + '\n')): Promise<StatsBenchResult> {
  const topo = new Topology();
  try {
    const ns = await topo.addNamespace('stats');
    // A second address on the namespace's loopback as a subflow endpoint: every connection gets a
    // second subflow, as a two-link host's would (the sampler's cost grows with subflows).
    await ns.exec(['ip', 'addr', 'add', '127.0.0.2/8', 'dev', 'lo']);
    await ns.setMptcpLimits(2, 2);
    await ns.addMptcpEndpoint('127.0.0.2', { dev: 'lo', flags: ['subflow'] });
    log(`bench: stats engine sampling, ${COUNTS.join(' / ')} MPTCP connections on loopback, median of ${TICKS} ticks`);
    const worker = ns.spawn([process.execPath, '--expose-gc', WORKER, '--counts', COUNTS.join(','), '--ticks', String(TICKS)], { label: 'stats-bench-worker' });
    const { line } = await worker.waitForLine((l) => l.startsWith('{'), 110_000);
    await worker.exited;
    const r = JSON.parse(line) as StatsBenchResult;
    const dir = path.resolve(DIST, '..', 'test-artifacts');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'stats-bench.json'), JSON.stringify({ when: new Date().toISOString(), ...r }, null, 2) + '\n');

    const head = ['connections', 'subflows/conn', 'tick ms', 'µs/conn', 'ref µs/conn', 'tick/ref'];
    log(head.map((h) => h.padStart(14)).join(''));
    for (const row of r.rows) {
      log([String(row.connections), row.subflowsPerConnection.toFixed(1), row.tickMs.toFixed(2), row.usPerConnection.toFixed(1), row.refUsPerConnection.toFixed(1), row.ratio.toFixed(2)]
        .map((c) => c.padStart(14)).join(''));
    }
    log('  (ref: one bare socketInfo(fd, false) per connection, same fds, same run)');
    const mem = r.history.heapBytesAfterTicks;
    const kb = (b: number | undefined): string => (b === undefined ? '-' : `${(b / 1024).toFixed(0)} KiB`);
    log(`history: ${r.history.kept}/${r.history.capacity} ticks kept, ${r.history.paths} paths each; heap over baseline after ` +
      `${Object.keys(mem).map((k) => `${k} ticks ${kb(mem[k])}`).join(', ')}${r.history.gc ? '' : ' (no --expose-gc: rough)'}`);
    return r;
  } finally {
    await topo.destroy();
  }
}

if (require.main === module) {
  const skip = skipUnlessRoot() ?? missingPrerequisite();
  if (skip) {
    process.stderr.write(`stats bench: cannot run: ${skip}\n`);
    process.exit(2);
  }
  statsBench().then(() => {}, (err) => {
    process.stderr.write(`stats bench failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  });
}
