/**
 * The shape the policy and caps bench parts share: two configurations of `braid up` in one
 * two-link topology (20 Mbit/s each), one download each per round, alternating which goes first so
 * neither always runs on a warmer path, and the ratio taken per round (median of pairs), so drift
 * over the run affects both alike. Results go to stdout and to test-artifacts/NAME-bench.json.
 */
import fs from 'node:fs';
import path from 'node:path';
import { createTwoLinkTopology, skipUnlessRoot } from '../helpers/netns';
import { curlDownload, DIST, missingPrerequisite, startByteServer } from '../helpers/multipath-harness';
import { startBraid, type BraidProxy } from '../helpers/proc';
import { median, range } from './figures';

const RATE_MBIT = 20;
const BYTES = 32 * 1000 * 1000;
const ROUNDS = 7;
const PORT = 8080;
const MAX_SECONDS = 30;

/** One side of the comparison: how `braid up` is started. */
export interface Variant {
  key: string;                 // its key in the result's `mbit`
  label: string;               // what the table calls it
  args: string[];              // extra `braid up` arguments
  config: unknown;             // the config file's contents
}

export interface PairedBenchResult {
  rateMbitPerLink: number;
  bytes: number;
  rounds: number;
  mbit: Record<string, number[]>;
  ratios: number[];
  medianRatio: number;
}

export async function pairedBraidBench(part: { name: string; title: string; ratioLabel: string; reference: Variant; candidate: Variant }, log: (s: string) => void): Promise<PairedBenchResult> {
  const { reference, candidate } = part;
  const topo = await createTwoLinkTopology({ rateMbit: RATE_MBIT });
  const dir = fs.mkdtempSync(path.join('/tmp', `braid-${part.name}-bench-`));
  const out: PairedBenchResult = { rateMbitPerLink: RATE_MBIT, bytes: BYTES, rounds: ROUNDS, mbit: { [reference.key]: [], [candidate.key]: [] }, ratios: [], medianRatio: 0 };
  let braid: BraidProxy | null = null;
  try {
    await startByteServer(topo.server, { port: PORT });
    const url = `http://${topo.serverAddress(1)}:${PORT}/bytes/${BYTES}`;
    const run = async (v: Variant): Promise<number> => {
      const file = path.join(dir, 'config.json');
      fs.writeFileSync(file, JSON.stringify(v.config));
      braid = await startBraid(['up', '--port', '0', '--control', 'off', '--config', file, '--state-dir', path.join(dir, 'state'), ...v.args],
        { prefix: ['ip', 'netns', 'exec', topo.client.name], timeoutMs: 15_000 });
      try {
        const r = await curlDownload(topo.client, url, { socksPort: braid.port, maxSeconds: MAX_SECONDS });
        if (r.bytes !== BYTES) throw new Error(`${v.key}: downloaded ${r.bytes} bytes, expected ${BYTES}`);
        return r.mbit;
      } finally {
        await braid.stop('SIGTERM', 5000);
        braid = null;
      }
    };
    for (let round = 1; round <= ROUNDS; round++) {
      const order = round % 2 ? [reference, candidate] : [candidate, reference];
      const got = new Map<Variant, number>();
      for (const v of order) got.set(v, await run(v));
      const [r, c] = [got.get(reference)!, got.get(candidate)!];
      out.mbit[reference.key]!.push(r);
      out.mbit[candidate.key]!.push(c);
      out.ratios.push(c / r);
      log(`  ${part.name} round ${round}: ${reference.key} ${r.toFixed(1)}, ${candidate.key} ${c.toFixed(1)} Mbit/s`);
    }
  } finally {
    await (braid as BraidProxy | null)?.stop('SIGTERM', 5000);
    await topo.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  out.medianRatio = median(out.ratios);
  const line = (label: string, value: string): void => log(`${label.padEnd(64)}  ${value.padStart(13)}`);
  log('');
  line(`${part.title}, shaped 2 x ${RATE_MBIT} Mbit/s, both links use, median`, 'throughput');
  line(reference.label, `${median(out.mbit[reference.key]!).toFixed(1)} Mbit/s`);
  line(candidate.label, `${median(out.mbit[candidate.key]!).toFixed(1)} Mbit/s`);
  line(`ratio ${part.ratioLabel}, median of pairs (target >= 0.98)`, out.medianRatio.toFixed(3));
  line('  range over the pairs', range(out.ratios, 3));
  const file = path.resolve(DIST, '..', 'test-artifacts', `${part.name}-bench.json`);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify({ when: new Date().toISOString(), ...out }, null, 2) + '\n');
  log(`wrote ${file}`);
  return out;
}

/** Runs a bench part when its file is run directly: exit 2 when it cannot run here, 1 when it failed. */
export function runAlone(name: string, part: (log: (s: string) => void) => Promise<unknown>): void {
  const skip = skipUnlessRoot() ?? missingPrerequisite();
  if (skip) {
    process.stderr.write(`${name} bench: cannot run: ${skip}\n`);
    process.exit(2);
  }
  part((s) => void process.stdout.write(s + '\n')).catch((err) => {
    process.stderr.write(`${name} bench failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  });
}
