/**
 * Bench part for data caps and path quality: what counting every path's bytes against a cap and
 * judging every path's quality costs in the plain case (two 20 Mbit/s links, both `use`), against
 * the same Braid without caps and with `paths.quality.enabled = false`, in the same run and topology.
 *
 * - reference: `braid up`, both links `use`, no caps, quality judging off;
 * - caps: the same with a cap on each link (never reached: 1 PB/month, so each tick's evaluation and
 *   the usage file's writes run but no demotion happens) and quality judging on (the default).
 *
 * The usage counting itself (the subflow observers) runs in both: it is part of the stats engine's
 * reads, whose CPU per tick each tick carries (system.sampleUs). The two alternate, one download
 * each per round; the ratio is taken per round (median of pairs). Target: caps / reference >= 0.98.
 * Part of `npm run bench`; alone: npm run bench -- --caps-only
 * Results go to stdout and to test-artifacts/caps-bench.json.
 */
import { pairedBraidBench, runAlone, type PairedBenchResult } from './paired-braid-bench';

export async function capsBench(log: (s: string) => void = (s) => void process.stdout.write(s + '\n')): Promise<PairedBenchResult> {
  const interfaces = { link1: 'use', link2: 'use' };
  const cap = { bytes: 1e15, period: 'month', resetDay: 1, atCap: 'off' };
  return pairedBraidBench({
    name: 'caps',
    title: 'caps and quality',
    ratioLabel: 'caps / reference',
    reference: { key: 'reference', label: 'braid up, no caps, paths.quality off', args: [], config: { paths: { interfaces, quality: { enabled: false } } } },
    candidate: { key: 'caps', label: 'braid up, a cap on each link, paths.quality on', args: [], config: { paths: { interfaces, caps: { link1: cap, link2: cap } } } },
  }, log);
}

if (require.main === module) runAlone('caps', capsBench);
