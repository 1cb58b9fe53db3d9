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

export interface CapsBenchResult {
  rateMbitPerLink: number;
  bytes: number;
  rounds: number;
  mbit: { reference: number[]; caps: number[] };
  ratios: number[];
  medianRatio: number;
}

async function startIn(topo: TwoLinkTopology, dir: string, config: unknown): Promise<BraidProxy> {
  const file = path.join(dir, 'config.json');
  fs.writeFileSync(file, JSON.stringify(config));
  return startBraid(['up', '--port', '0', '--control', 'off', '--config', file, '--state-dir', path.join(dir, 'state')],
    { prefix: ['ip', 'netns', 'exec', topo.client.name], timeoutMs: 15_000 });
}

export async function capsBench(log: (s: string) => void = (s) => void process.stdout.write(s + '\n')): Promise<CapsBenchResult> {
  const topo = await createTwoLinkTopology({ rateMbit: RATE_MBIT });
  const dir = fs.mkdtempSync(path.join('/tmp', 'braid-caps-bench-'));
  const interfaces = { link1: 'use', link2: 'use' };
  const cap = { bytes: 1e15, period: 'month', resetDay: 1, atCap: 'off' };
  const configs = {
    reference: { paths: { interfaces, quality: { enabled: false } } },
    caps: { paths: { interfaces, caps: { link1: cap, link2: cap } } },
  };
  const out: CapsBenchResult = { rateMbitPerLink: RATE_MBIT, bytes: BYTES, rounds: ROUNDS, mbit: { reference: [], caps: [] }, ratios: [], medianRatio: 0 };
  let braid: BraidProxy | null = null;
  try {
    await startByteServer(topo.server, { port: PORT });
    const url = `http://${topo.serverAddress(1)}:${PORT}/bytes/${BYTES}`;
    const run = async (label: 'reference' | 'caps'): Promise<number> => {
      braid = await startIn(topo, dir, configs[label]);
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
      const order: ('reference' | 'caps')[] = round % 2 ? ['reference', 'caps'] : ['caps', 'reference'];
      const got: Record<string, number> = {};
      for (const label of order) got[label] = await run(label);
      out.mbit.reference.push(got.reference!);
      out.mbit.caps.push(got.caps!);
      out.ratios.push(got.caps! / got.reference!);
      log(`  caps round ${round}: reference ${got.reference!.toFixed(1)}, caps+quality ${got.caps!.toFixed(1)} Mbit/s`);
    }
  } finally {
    await (braid as BraidProxy | null)?.stop('SIGTERM', 5000);
    await topo.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  out.medianRatio = median(out.ratios);
  const line = (label: string, value: string): void => log(`${label.padEnd(64)}  ${value.padStart(13)}`);
  log('');
  line(`caps and quality, shaped 2 x ${RATE_MBIT} Mbit/s, both links use, median`, 'throughput');
  line('braid up, no caps, paths.quality off', `${median(out.mbit.reference).toFixed(1)} Mbit/s`);
  line('braid up, a cap on each link, paths.quality on', `${median(out.mbit.caps).toFixed(1)} Mbit/s`);
  line('ratio caps / reference, median of pairs (target >= 0.98)', out.medianRatio.toFixed(3));
  line('  range over the pairs', `${Math.min(...out.ratios).toFixed(3)}-${Math.max(...out.ratios).toFixed(3)}`);
  const file = path.resolve(DIST, '..', 'test-artifacts', 'caps-bench.json');
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify({ when: new Date().toISOString(), ...out }, null, 2) + '\n');
  log(`wrote ${file}`);
  return out;
}

if (require.main === module) {
  const skip = skipUnlessRoot() ?? missingPrerequisite();
  if (skip) {
    process.stderr.write(`caps bench: cannot run: ${skip}\n`);
    process.exit(2);
  }
  capsBench().catch((err) => {
    process.stderr.write(`caps bench failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  });
}
