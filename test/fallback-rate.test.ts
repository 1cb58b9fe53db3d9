/**
 * Downloads from a plain-TCP server through `braid up --dial mptcp` at 1 Gbit/s.
 *
 * On kernel 6.18 an MPTCP socket that fell back to TCP drops in-order data at the MPTCP level
 * (MPTcpExtNoDSSInWindow) under load, and the download stalls for good or ends early. It happens
 * with the kernel alone (`mptcpize run curl`; README), in about one 1 GB download in three here.
 * Braid dials such destinations again as plain TCP and remembers them (proxy/fallback-memory.ts),
 * so every download here must complete. Three in a row without the fix fail with high odds; the
 * MPTCP counters show the fallback really happened, once.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createTwoLinkTopology, skipUnlessRoot, type TwoLinkTopology } from './helpers/netns';
import { counterDelta, curlDownload, missingPrerequisite, startByteServer, startProxy } from './helpers/multipath-harness';
import type { NsProcess } from './helpers/netns';
import { requireFor } from './helpers/prerequisites';

const RATE_MBIT = 1000;
const BYTES = 1000 * 1000 * 1000;
const DOWNLOADS = 3;
const TCP_PORT = 8082;
const PROXY_PORT = 1080;
const MAX_SECONDS = 40;

const skip = requireFor('fallback at 1 Gbit/s (fallback-rate.test.ts)', skipUnlessRoot() ?? missingPrerequisite());

describe('braid up --dial mptcp to a plain-TCP server at 1 Gbit/s', { skip, timeout: 300_000 }, () => {
  let topo: TwoLinkTopology;
  let proxy: NsProcess;

  before(async () => {
    topo = await createTwoLinkTopology({ rateMbit: RATE_MBIT });
    await startByteServer(topo.server, { port: TCP_PORT, tcp: true });
    proxy = await startProxy(topo.client, { port: PROXY_PORT, dial: 'mptcp' });
  });

  after(async () => {
    await proxy?.stop();
    await topo?.destroy();
  });

  test(`${DOWNLOADS} downloads of 1 GB complete: no stall, no early end`, { timeout: 240_000 }, async (t) => {
    const url = `http://${topo.serverAddress(1)}:${TCP_PORT}/bytes/${BYTES}`;
    const start = await topo.client.mptcpCounters();
    for (let i = 1; i <= DOWNLOADS; i++) {
      const c0 = await topo.client.mptcpCounters();
      const r = await curlDownload(topo.client, url, { socksPort: PROXY_PORT, maxSeconds: MAX_SECONDS }).catch((err: Error) => {
        throw new Error(`download ${i} failed: ${err.message.split('\n')[0]}`);
      });
      const c1 = await topo.client.mptcpCounters();
      t.diagnostic(`download ${i}: ${(r.mbit / 1000).toFixed(2)} Gbit/s, NoDSSInWindow +${counterDelta(c0, c1, 'NoDSSInWindow')}`);
      assert.equal(r.httpCode, 200);
      assert.equal(r.bytes, BYTES, `download ${i} ended early`);
      assert.equal(counterDelta(c0, c1, 'NoDSSInWindow'), 0, `download ${i}: the MPTCP level dropped data: it went over a fallen-back MPTCP socket`);
    }
    const end = await topo.client.mptcpCounters();
    assert.equal(counterDelta(start, end, 'MPCapableSYNTX'), 1, 'only the first connection should have tried MPTCP');
    assert.equal(counterDelta(start, end, 'MPCapableFallbackSYNACK'), 1, 'the server answered the MPTCP SYN with plain TCP once');
  });
});
