/**
 * The userspace delay line (test/helpers/delay-line.py) that the bench's time-to-first-byte figures
 * in round trips rest on: in the bench's own topology (createDelayedRelayTopology), a TCP connect
 * from the client to the relay host takes one round trip, so it must take at least twice the
 * one-way delay, not much more, and grow by exactly the added delay when the setting grows.
 *
 * The bench's delayed two-link scenario (createRelayTopology with oneWayMs) rests on it too: each
 * shaped link must have that round trip and carry its own subflow of one MPTCP download.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { missingPrerequisite, startByteServer } from './helpers/multipath-harness';
import { skipUnlessRoot, type Namespace } from './helpers/netns';
import { requireFor, missingPython } from './helpers/prerequisites';
import { createDelayedRelayTopology, createRelayTopology, relayTxBytes } from './helpers/relay-topology';

const skip = requireFor('the delay line adds its delay (delay-line.test.ts)', skipUnlessRoot() ?? missingPrerequisite() ?? missingPython());
const PORT = 8080;
const SAMPLES = 9;

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Median TCP connect time (ms) from the client to one of the relay's addresses, as curl measures it. */
async function connectTo(client: Namespace, address: string): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < SAMPLES; i++) {
    const { stdout } = await client.exec(['curl', '-sS', '--fail', '--max-time', '5', '-o', '/dev/null', '-w', '%{time_connect}',
      `http://${address}:${PORT}/bytes/1`], { timeoutMs: 10_000 });
    samples.push(Number(stdout) * 1000);
  }
  return median(samples);
}

async function measure(oneWayMs: number): Promise<number> {
  const topo = await createDelayedRelayTopology(oneWayMs);
  try {
    await startByteServer(topo.relay, { port: PORT, tcp: true });
    await connectTo(topo.client, topo.relayAddress(1)); // first use: ARP/neighbour discovery through the line, not a round trip to count
    return await connectTo(topo.client, topo.relayAddress(1));
  } finally {
    await topo.destroy();
  }
}

describe('the delay line', { skip, timeout: 120_000 }, () => {
  test('a TCP connect through it takes the round trip it is set to, and follows the setting', async (t) => {
    const short = await measure(10);
    const long = await measure(30);
    t.diagnostic(`TCP connect through the delay line: ${short.toFixed(2)} ms at 2 x 10 ms, ${long.toFixed(2)} ms at 2 x 30 ms`);
    // Never shorter than the delay (each frame waits its one-way time in each direction) ...
    assert.ok(short >= 20, `${short.toFixed(2)} ms at 2 x 10 ms`);
    assert.ok(long >= 60, `${long.toFixed(2)} ms at 2 x 30 ms`);
    // ... and not applied twice: under 1.5 x the setting (a frame delayed at both ends would double it).
    assert.ok(short < 30, `${short.toFixed(2)} ms at 2 x 10 ms`);
    assert.ok(long < 90, `${long.toFixed(2)} ms at 2 x 30 ms`);
    // 20 ms more on the setting, 40 ms more per round trip: what the line adds is what it is told.
    assert.ok(Math.abs(long - short - 40) < 8, `the round trip grew by ${(long - short).toFixed(2)} ms for 40 ms more delay`);
  });

  test("the bench's delayed two-link topology: both shaped links have the round trip, and each carries a subflow", async (t) => {
    const BYTES = 8_000_000;
    const topo = await createRelayTopology({ rateMbit: 20, oneWayMs: 10 });
    try {
      await startByteServer(topo.relay, { port: PORT });
      const rtt: number[] = [];
      for (const link of [1, 2] as const) {
        assert.equal(topo.linkOf(topo.relayAddress(link)), link);
        await connectTo(topo.client, topo.relayAddress(link)); // neighbour discovery first
        rtt.push(await connectTo(topo.client, topo.relayAddress(link)));
      }
      const before = await relayTxBytes(topo);
      const { stdout } = await topo.client.exec(['mptcpize', 'run', 'curl', '-sS', '--fail', '--max-time', '30', '-o', '/dev/null', '-w', '%{size_download}',
        `http://${topo.relayAddress(1)}:${PORT}/bytes/${BYTES}`], { timeoutMs: 40_000 });
      const after = await relayTxBytes(topo);
      const sent = [after[0] - before[0], after[1] - before[1]];
      t.diagnostic(`TCP connect: ${rtt.map((x) => x.toFixed(1)).join(' / ')} ms; the relay sent ${sent.map((x) => (x / 1e6).toFixed(2)).join(' / ')} MB on links 1 / 2`);
      assert.equal(Number(stdout), BYTES);
      for (const [i, ms] of rtt.entries()) assert.ok(ms >= 20 && ms < 30, `link ${i + 1}: TCP connect ${ms.toFixed(2)} ms, not one 20 ms round trip`);
      // Two equal links: each carries a good part of the download, so the second subflow found its way.
      for (const [i, b] of sent.entries()) assert.ok(b > 0.25 * BYTES, `link ${i + 1} carried ${b} of ${BYTES} bytes`);
    } finally {
      await topo.destroy();
    }
  });
});
