// A download through `braid relay` from a destination that speaks MPTCP, with a client slower than
// the destination (so the relay's reads of the destination pause, as they do whenever its TLS side
// to braid up is the bottleneck).
//
// On this kernel (6.18) an MPTCP socket whose reader pauses stalls the sender: while the receive
// window is closing the destination's TCP probes with one-MSS slices of a DSS mapping; the rest of
// that mapping, sent once the window reopens, is TCP-acknowledged but never reaches the MPTCP
// level (the DATA_ACK stays at the end of the slices, everything behind it waits in the subflow),
// until the destination's MPTCP retransmission timer fires 200 ms later (MPTcpExtMPTCPRetrans at
// the destination, DuplicateData at the relay). Nothing in userspace can make the relay's kernel
// send the missing DATA_ACK, so the relay dials destinations over plain TCP by default
// (RELAY_DEFAULT_DIAL): its one link to a destination gains nothing from MPTCP.
//
// Checked by the destination namespace's own MIB counters, not by timing: no MPTCP connection and
// no MPTCP-level retransmission there, every byte intact; `--dial mptcp` still speaks MPTCP.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { skipUnlessRoot } from './helpers/netns';
import { missingPrerequisite, startByteServer } from './helpers/multipath-harness';
import { createRelayTopology, startRelay, startRelayClient, tempRelayDir, type RelayTopology } from './helpers/relay-topology';
import { expectedSha256 } from './helpers/byte-stream';

const DEST_PORT = 8080;   // MPTCP-speaking byte server
const BYTES = 48 * 1000 * 1000;
// Well under what the relay moves unshaped here, so that braid up and the relay hold back reads.
const CLIENT_RATE = '40M';

describe('relay to an MPTCP-speaking destination, slow client', { skip: skipUnlessRoot() ?? missingPrerequisite(), timeout: 120_000 }, () => {
  let topo: RelayTopology;
  const dirs: string[] = [];

  before(async () => {
    topo = await createRelayTopology({ rateMbit: null });
    await startByteServer(topo.dest, { port: DEST_PORT });
  });

  after(async () => {
    await topo?.destroy();
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  /** One slow download through a relay started with `extra`; the destination's MPTcpExt deltas. */
  async function download(relayPort: number, socksPort: number, extra: string[]): Promise<{ counters: Record<string, number>; sha: string; expected: string }> {
    const dir = tempRelayDir();
    dirs.push(dir);
    const relay = await startRelay(topo, { port: relayPort, dir, extra });
    await startRelayClient(topo.client, { port: socksPort, link: relay.link });
    const url = `http://${topo.destAddress(4)}:${DEST_PORT}/bytes/${BYTES}`;
    const before = await topo.dest.mptcpCounters();
    const { stdout } = await topo.client.exec(['bash', '-c',
      `set -o pipefail; curl -sS --fail --max-time 60 --limit-rate ${CLIENT_RATE} --socks5-hostname 127.0.0.1:${socksPort} '${url}' | sha256sum`],
    { timeoutMs: 90_000 });
    const after = await topo.dest.mptcpCounters();
    const counters: Record<string, number> = {};
    for (const k of Object.keys(after)) counters[k] = after[k]! - (before[k] ?? 0);
    return { counters, sha: stdout.trim().split(/\s+/)[0]!, expected: expectedSha256(BYTES) };
  }

  test('by default the relay dials it over TCP: no MPTCP-level retransmission, every byte intact', async () => {
    const r = await download(8443, 1080, []);
    assert.equal(r.sha, r.expected, 'the body arrived intact');
    assert.equal(r.counters.MPTCPRetrans, 0, `the destination retransmitted ${r.counters.MPTCPRetrans} times at the MPTCP level (MPCapableSYNRX ${r.counters.MPCapableSYNRX})`);
    assert.equal(r.counters.MPCapableSYNRX, 0, 'the relay opened an MPTCP connection to the destination');
  });

  test('--dial mptcp still speaks MPTCP to it (the counters can tell the two apart)', async () => {
    const r = await download(8444, 1081, ['--dial', 'mptcp']);
    assert.equal(r.sha, r.expected, 'the body arrived intact');
    assert.ok(r.counters.MPCapableSYNRX! >= 1, 'no MPTCP SYN reached the destination');
  });
});
