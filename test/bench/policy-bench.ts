/**
 * Bench part for the path policy: what choosing every connection's paths costs in the plain case
 * (two 20 Mbit/s links, both `use`), against Braid without it, in the same run and topology.
 *
 * - reference: `braid up --paths off`, the kernel's path manager with the topology's own endpoint on
 *   link 2 (what Braid did before: the first subflow by the routing table, extra ones from endpoints);
 * - policy: `braid up` as the namespace's MPTCP path manager, first subflow chosen by policy,
 *   subflows opened per connection, the secondary controller and 20 per-destination rules evaluated
 *   at every dial (none of which matches).
 *
 * The two alternate, one download each per round, and the ratio is taken per round (median of
 * pairs), so drift over the run affects both alike. The target: policy / reference >= 0.98.
 * Called from bench.ts; also runnable alone: node dist/test/bench/policy-bench.js
 * Results go to stdout and to test-artifacts/policy-bench.json.
 */
import fs from 'node:fs';
import path from 'node:path';
import { createTwoLinkTopology, skipUnlessRoot, type TwoLinkTopology } from '../helpers/netns';
import { curlDownload, DIST, missingPrerequisite, startByteServer } from '../helpers/multipath-harness';
import { startBraid, type BraidProxy } from '../helpers/proc';
import { median } from './relay-bench';

const RATE_MBIT = 20;
const BYTES = 32 * 1000 * 1000;
const ROUNDS = 7;
const PORT = 8080;
const MAX_SECONDS = 30;

export interface PolicyBenchResult {
  rateMbitPerLink: number;
  bytes: number;
  rounds: number;
  mbit: { reference: number[]; policy: number[] };
  ratios: number[];
  medianRatio: number;
}

async function startIn(topo: TwoLinkTopology, dir: string, args: string[], config: unknown): Promise<BraidProxy> {
  const file = path.join(dir, 'config.json');
  fs.writeFileSync(file, JSON.stringify(config));
  return startBraid(['up', '--port', '0', '--control', 'off', '--config', file, '--state-dir', path.join(dir, 'state'), ...args],
    { prefix: ['ip', 'netns', 'exec', topo.client.name], timeoutMs: 15_000 });
}

export async function policyBench(log: (s: string) => void = (s) => void process.stdout.write(s + '\n')): Promise<PolicyBenchResult> {
  const topo = await createTwoLinkTopology({ rateMbit: RATE_MBIT });
  const dir = fs.mkdtempSync(path.join('/tmp', 'braid-policy-bench-'));
  const rules = Array.from({ length: 20 }, (_, i) => ({ name: `r${i}`, match: { host: `site${i}.example`, port: 10_000 + i }, paths: ['link1'] }));
  const out: PolicyBenchResult = { rateMbitPerLink: RATE_MBIT, bytes: BYTES, rounds: ROUNDS, mbit: { reference: [], policy: [] }, ratios: [], medianRatio: 0 };
  let braid: BraidProxy | null = null;
  try {
    await startByteServer(topo.server, { port: PORT });
    const url = `http://${topo.serverAddress(1)}:${PORT}/bytes/${BYTES}`;
    const run = async (label: 'reference' | 'policy'): Promise<number> => {
      braid = label === 'reference'
        ? await startIn(topo, dir, ['--paths', 'off'], {})
        : await startIn(topo, dir, [], { paths: { interfaces: { link1: 'use', link2: 'use' }, rules } });
      try {
        const r = await curlDownload(topo.client, url, { socksPort: braid.port, maxSeconds: MAX_SECONDS });
        if (r.bytes !== BYTES) throw new Error(`${label}: downloaded ${r.bytes} bytes, expected ${BYTES}`);
        return r.mbit;
      } finally {
        await braid.stop('SIGTERM', 5000);
        braid = null;
      }
    };
    for (let round = 1; round <= ROUNDS; round++) {
      // Alternating which goes first, so neither always runs on a warmer path.
      const order: ('reference' | 'policy')[] = round % 2 ? ['reference', 'policy'] : ['policy', 'reference'];
      const got: Record<string, number> = {};
      for (const label of order) got[label] = await run(label);
      out.mbit.reference.push(got.reference!);
      out.mbit.policy.push(got.policy!);
      out.ratios.push(got.policy! / got.reference!);
      log(`  policy round ${round}: reference ${got.reference!.toFixed(1)}, policy ${got.policy!.toFixed(1)} Mbit/s`);
    }
  } finally {
    await (braid as BraidProxy | null)?.stop('SIGTERM', 5000);
    await topo.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  out.medianRatio = median(out.ratios);
  const line = (label: string, value: string): void => log(`${label.padEnd(64)}  ${value.padStart(13)}`);
  log('');
  line(`path policy, shaped 2 x ${RATE_MBIT} Mbit/s, both links use, median`, 'throughput');
  line('braid up --paths off (kernel path manager, endpoints)', `${median(out.mbit.reference).toFixed(1)} Mbit/s`);
  line('braid up, Braid as path manager, 20 rules, secondary controller', `${median(out.mbit.policy).toFixed(1)} Mbit/s`);
  line('ratio policy / reference, median of pairs (target >= 0.98)', out.medianRatio.toFixed(3));
  line('  range over the pairs', `${Math.min(...out.ratios).toFixed(3)}-${Math.max(...out.ratios).toFixed(3)}`);
  const file = path.resolve(DIST, '..', 'test-artifacts', 'policy-bench.json');
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify({ when: new Date().toISOString(), ...out }, null, 2) + '\n');
  log(`wrote ${file}`);
  return out;
}

if (require.main === module) {
  const skip = skipUnlessRoot() ?? missingPrerequisite();
  if (skip) {
    process.stderr.write(`policy bench: cannot run: ${skip}\n`);
    process.exit(2);
  }
  policyBench().catch((err) => {
    process.stderr.write(`policy bench failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  });
}
