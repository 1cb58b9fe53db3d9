/**
 * Multipath end to end: a client and a server namespace joined by two 20 Mbit/s veth links.
 * Evidence comes from three independent places: the sender's per-subflow byte counts (our addon in
 * the server), the client namespace's MPTcpExt MIB counters (the kernel, no addon involved), and
 * the throughput curl sees.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createTwoLinkTopology, skipUnlessRoot, type TwoLinkTopology, type NsProcess } from './helpers/netns';
import { expectedSha256 } from './helpers/byte-stream';
import {
  missingPrerequisite, startByteServer, startProxy, curlDownload, rawDownload, nextReport,
  splitByLink, counterDelta, fmtSplit,
} from './helpers/multipath-harness';
import { requireFor } from './helpers/prerequisites';

const RATE_MBIT = 20;
const BYTES = 16 * 1000 * 1000;
const FALLBACK_BYTES = 4 * 1000 * 1000;
const MPTCP_PORT = 8080;
const TCP_PORT = 8081;
const PROXY_PORT = 1080;
const MIN_SHARE = 0.2;
const MULTIPATH_MIN_MBIT = 1.4 * RATE_MBIT;
const SINGLE_PATH_MAX_MBIT = 1.1 * RATE_MBIT;
const DOWNLOAD_MAX_SECONDS = 60;

const skip = requireFor('multipath over two shaped links (multipath.test.ts)', skipUnlessRoot() ?? missingPrerequisite());

describe('multipath over two shaped links', { skip, timeout: 300_000 }, () => {
  let topo: TwoLinkTopology;
  let mptcpServer: NsProcess;
  let tcpServer: NsProcess;
  const expected = expectedSha256(BYTES);

  before(async () => {
    topo = await createTwoLinkTopology({ rateMbit: RATE_MBIT });
    mptcpServer = await startByteServer(topo.server, { port: MPTCP_PORT });
    tcpServer = await startByteServer(topo.server, { port: TCP_PORT, tcp: true });
  });

  after(async () => {
    await topo?.destroy();
  });

  const url = (port: number, bytes: number): string => `http://${topo.serverAddress(1)}:${port}/bytes/${bytes}`;

  test('raw kernel MPTCP (no proxy) uses both links', { timeout: 90_000 }, async (t) => {
    const from = mptcpServer.lines.length;
    const counters0 = await topo.client.mptcpCounters();
    const r = await rawDownload(topo.client, { address: topo.serverAddress(1), port: MPTCP_PORT, bytes: BYTES, maxSeconds: DOWNLOAD_MAX_SECONDS });
    const counters1 = await topo.client.mptcpCounters();
    const split = splitByLink(await nextReport(mptcpServer, from), topo);
    t.diagnostic(`raw MPTCP ${r.mbit.toFixed(1)} Mbit/s, sender split ${fmtSplit(split)}`);

    assert.equal(r.status, 200);
    assert.equal(r.bytes, BYTES);
    assert.equal(r.sha256, expected, 'content differs from what the server sent');
    assert.equal(r.info?.mptcp, true, 'client socket is not MPTCP');
    assert.equal(r.info?.fallback, false, 'client socket fell back to TCP');
    assert.ok(counterDelta(counters0, counters1, 'MPJoinSynAckRx') >= 1, 'kernel counted no MP_JOIN SYN-ACK in the client namespace');
    assert.equal(split.unmatched, 0, 'a subflow carried data outside the two links');
    for (const link of [1, 2]) {
      assert.ok(split.shareByLink[link]! >= MIN_SHARE, `link ${link} carried only ${(split.shareByLink[link]! * 100).toFixed(1)}% (want >= ${MIN_SHARE * 100}%)`);
    }
    assert.ok(r.mbit > MULTIPATH_MIN_MBIT, `${r.mbit.toFixed(1)} Mbit/s is not above ${MULTIPATH_MIN_MBIT} (1.4 x one link)`);
  });

  test('through braid up --dial mptcp: both links, faster than one', { timeout: 90_000 }, async (t) => {
    const proxy = await startProxy(topo.client, { port: PROXY_PORT, dial: 'mptcp' });
    try {
      const from = mptcpServer.lines.length;
      const counters0 = await topo.client.mptcpCounters();
      const r = await curlDownload(topo.client, url(MPTCP_PORT, BYTES), { socksPort: PROXY_PORT, hash: true, maxSeconds: DOWNLOAD_MAX_SECONDS });
      const counters1 = await topo.client.mptcpCounters();
      const report = await nextReport(mptcpServer, from);
      const split = splitByLink(report, topo);
      t.diagnostic(`proxy/MPTCP ${r.mbit.toFixed(1)} Mbit/s, sender split ${fmtSplit(split)}`);

      assert.equal(r.httpCode, 200);
      assert.equal(r.bytes, BYTES);
      assert.equal(r.sha256, expected, 'content differs from what the server sent');
      assert.equal(report.info?.mptcp, true, 'server saw a non-MPTCP connection from the proxy');
      assert.ok(counterDelta(counters0, counters1, 'MPCapableSYNACKRX') >= 1, 'kernel counted no MP_CAPABLE SYN-ACK in the client namespace');
      assert.ok(counterDelta(counters0, counters1, 'MPJoinSynAckRx') >= 1, 'kernel counted no MP_JOIN SYN-ACK in the client namespace');
      assert.equal(split.unmatched, 0, 'a subflow carried data outside the two links');
      for (const link of [1, 2]) {
        assert.ok(split.shareByLink[link]! >= MIN_SHARE, `link ${link} carried only ${(split.shareByLink[link]! * 100).toFixed(1)}% (want >= ${MIN_SHARE * 100}%)`);
      }
      assert.ok(r.mbit > MULTIPATH_MIN_MBIT, `${r.mbit.toFixed(1)} Mbit/s through the proxy is not above ${MULTIPATH_MIN_MBIT} (1.4 x one link)`);
    } finally {
      await proxy.stop();
    }
  });

  test('through braid up --dial tcp: one path, one link\'s speed', { timeout: 90_000 }, async (t) => {
    const proxy = await startProxy(topo.client, { port: PROXY_PORT, dial: 'tcp' });
    try {
      const from = mptcpServer.lines.length;
      const counters0 = await topo.client.mptcpCounters();
      const r = await curlDownload(topo.client, url(MPTCP_PORT, BYTES), { socksPort: PROXY_PORT, hash: true, maxSeconds: DOWNLOAD_MAX_SECONDS });
      const counters1 = await topo.client.mptcpCounters();
      const split = splitByLink(await nextReport(mptcpServer, from), topo);
      t.diagnostic(`proxy/TCP ${r.mbit.toFixed(1)} Mbit/s, sender split ${fmtSplit(split)}`);

      assert.equal(r.httpCode, 200);
      assert.equal(r.bytes, BYTES);
      assert.equal(r.sha256, expected, 'content differs from what the server sent');
      assert.equal(counterDelta(counters0, counters1, 'MPCapableSYNTX'), 0, 'an MPTCP SYN left the client namespace with --dial tcp');
      assert.equal(counterDelta(counters0, counters1, 'MPJoinSynTx'), 0, 'an MP_JOIN left the client namespace with --dial tcp');
      assert.equal(split.subflowsWithData, 1, `${split.subflowsWithData} paths carried data`);
      assert.ok(split.shareByLink[1]! > 0.99, 'the single path is not link 1');
      assert.ok(r.mbit <= SINGLE_PATH_MAX_MBIT, `${r.mbit.toFixed(1)} Mbit/s over one ${RATE_MBIT} Mbit/s link is implausible (> ${SINGLE_PATH_MAX_MBIT})`);
    } finally {
      await proxy.stop();
    }
  });

  test('through braid up --dial mptcp to a plain-TCP server: falls back to a plain TCP socket, content intact, remembered', { timeout: 90_000 }, async (t) => {
    const proxy = await startProxy(topo.client, { port: PROXY_PORT, dial: 'mptcp' });
    try {
      const from = tcpServer.lines.length;
      const counters0 = await topo.client.mptcpCounters();
      const r = await curlDownload(topo.client, url(TCP_PORT, FALLBACK_BYTES), { socksPort: PROXY_PORT, hash: true, maxSeconds: DOWNLOAD_MAX_SECONDS });
      const counters1 = await topo.client.mptcpCounters();
      const report = await nextReport(tcpServer, from);
      const split = splitByLink(report, topo);
      t.diagnostic(`fallback ${r.mbit.toFixed(1)} Mbit/s, sender split ${fmtSplit(split)}`);

      assert.equal(r.httpCode, 200);
      assert.equal(r.bytes, FALLBACK_BYTES);
      assert.equal(r.sha256, expectedSha256(FALLBACK_BYTES), 'content differs from what the server sent');
      // The proxy really tried MPTCP and the kernel really fell back: counted in the client namespace.
      assert.ok(counterDelta(counters0, counters1, 'MPCapableSYNTX') >= 1, 'the proxy did not send an MPTCP SYN');
      assert.ok(counterDelta(counters0, counters1, 'MPCapableFallbackSYNACK') >= 1, 'the kernel did not record a fallback on SYN-ACK');
      assert.ok(report.info !== null, `server could not read socket info: ${report.infoError}`);
      // The far end really is plain TCP (the kernel, not our flag, says so: SO_PROTOCOL of the
      // accepted socket), so the MPTCP counters above record a fallback, not an MPTCP connection.
      assert.equal(report.info.mptcp, false, 'the plain-TCP server accepted an MPTCP socket: the fallback was not exercised');
      assert.equal(report.info.subflows.length, 1);
      assert.equal(split.subflowsWithData, 1, `${split.subflowsWithData} paths carried data`);

      // The destination is remembered: the next connection to it is plain TCP from its first SYN.
      const again0 = await topo.client.mptcpCounters();
      const again = await curlDownload(topo.client, url(TCP_PORT, FALLBACK_BYTES), { socksPort: PROXY_PORT, hash: true, maxSeconds: DOWNLOAD_MAX_SECONDS });
      const again1 = await topo.client.mptcpCounters();
      assert.equal(again.sha256, expectedSha256(FALLBACK_BYTES), 'content differs from what the server sent');
      assert.equal(counterDelta(again0, again1, 'MPCapableSYNTX'), 0, 'a destination known not to speak MPTCP was sent an MPTCP SYN again');
    } finally {
      await proxy.stop();
    }
  });
});
