/**
 * `npm run bench`: what Braid costs and what multipath buys, each figure measured in this run against
 * a reference from this same run (no stored figures). The parts, each in its own file:
 *
 * - local proxy (test/bench/proxy-bench.ts): shaped and unshaped downloads through `braid up`
 *   against raw kernel MPTCP, single-link TCP and direct downloads; MPTCP-speaking against plain-TCP
 *   destinations; the stalls behind the unshaped pairs and socat as the forwarding-hop reference.
 *   `--proxy-only` runs just that part;
 * - relay (test/bench/relay-bench.ts): through `braid relay` against raw kernel MPTCP, one link and
 *   the shadowsocks-libev chain; unshaped Gbit/s and CPU s/GB of client and relay against that
 *   chain; time to first byte. `--relay-only`;
 * - transparent mode (test/bench/transparent-bench.ts): redirected against explicit SOCKS5, same
 *   Braid, same run. `--transparent-only`;
 * - both directions (test/bench/updown-bench.ts): downloads and uploads, shaped 2 x 20, 30 + 10 and
 *   30 + 10 at 20 ms RTT, and the unshaped upload through the relay. `--updown-only`;
 * - then, in a whole run only: the stats engine, path policy, scale (`--scale-only`: 1,000 and 5,000
 *   idle connections) and caps (`--caps-only`).
 *
 * Results go to stdout as tables and to test-artifacts/bench.json.
 */
import fs from 'node:fs';
import path from 'node:path';
import { skipUnlessRoot } from '../helpers/netns';
import { DIST, missingPrerequisite } from '../helpers/multipath-harness';
import { printProxy, proxyBench } from './proxy-bench';
import { printRelay, relayBench } from './relay-bench';
import { printTransparent, transparentBench } from './transparent-bench';
import { printUpDown, upDownBench } from './updown-bench';

async function main(): Promise<void> {
  const skip = skipUnlessRoot() ?? missingPrerequisite();
  if (skip) {
    process.stderr.write(`bench: cannot run: ${skip}\n`);
    process.exit(2);
  }
  const started = Date.now();
  const log = (s: string): void => { process.stdout.write(s + '\n'); };
  const write = (parts: Record<string, unknown>): void => writeResult({
    when: new Date().toISOString(),
    kernel: fs.readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(),
    node: process.version,
    seconds: (Date.now() - started) / 1000,
    ...parts,
  }, log);
  if (process.argv.includes('--transparent-only')) {
    const only = await transparentBench(log);
    printTransparent(only, log);
    write({ transparent: only });
    return;
  }
  if (process.argv.includes('--caps-only')) {
    await (await import('./caps-bench.js')).capsBench(log);
    return;
  }
  if (process.argv.includes('--updown-only')) {
    const only = await upDownBench(log);
    printUpDown(only, log);
    write({ updown: only });
    return;
  }
  if (process.argv.includes('--scale-only')) {
    await (await import('./scale-bench.js')).scaleBench(log);
    return;
  }
  if (process.argv.includes('--relay-only')) {
    const only = await relayBench(log);
    printRelay(only, log);
    write({ relay: only });
    return;
  }
  const proxyOnly = process.argv.includes('--proxy-only');
  const pb = await proxyBench(log);
  const rb = proxyOnly ? null : await relayBench(log);
  const tb = proxyOnly ? null : await transparentBench(log);
  const ud = proxyOnly ? null : await upDownBench(log);
  const seconds = (Date.now() - started) / 1000;
  // Written before the tables are printed, so a slip in printing cannot lose the run's figures.
  write({ shaped: pb.shaped, unshaped: pb.unshaped, relay: rb, transparent: tb, updown: ud });
  printProxy(pb, log);
  if (rb) printRelay(rb, log);
  if (tb) printTransparent(tb, log);
  if (ud) printUpDown(ud, log);
  log(`\nbench took ${seconds.toFixed(0)} s`);
  if (proxyOnly) return;
  log(''); await (await import('./stats-bench.js')).statsBench(log);
  log(''); await (await import('./policy-bench.js')).policyBench(log);
  log(''); await (await import('./scale-bench.js')).scaleBench(log);
  log(''); await (await import('./caps-bench.js')).capsBench(log);
}

function writeResult(result: unknown, log: (s: string) => void): void {
  const dir = path.resolve(DIST, '..', 'test-artifacts');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'bench.json'), JSON.stringify(result, null, 2) + '\n');
  log(`wrote ${path.join(dir, 'bench.json')}`);
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
});
