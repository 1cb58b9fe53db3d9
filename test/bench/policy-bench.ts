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
import { pairedBraidBench, runAlone, type PairedBenchResult } from './paired-braid-bench';

export async function policyBench(log: (s: string) => void = (s) => void process.stdout.write(s + '\n')): Promise<PairedBenchResult> {
  const rules = Array.from({ length: 20 }, (_, i) => ({ name: `r${i}`, match: { host: `site${i}.example`, port: 10_000 + i }, paths: ['link1'] }));
  return pairedBraidBench({
    name: 'policy',
    title: 'path policy',
    ratioLabel: 'policy / reference',
    reference: { key: 'reference', label: 'braid up --paths off (kernel path manager, endpoints)', args: ['--paths', 'off'], config: {} },
    candidate: { key: 'policy', label: 'braid up, Braid as path manager, 20 rules, secondary controller', args: [], config: { paths: { interfaces: { link1: 'use', link2: 'use' }, rules } } },
  }, log);
}

if (require.main === module) runAlone('policy', policyBench);
