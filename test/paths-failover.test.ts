// Backup paths end to end: a client and a server namespace joined by two 20 Mbit/s links; `braid up`
// in the client manages the endpoints with link1 `use` and link2 `backup`. A download through the
// proxy runs on link1 alone, link1 is unplugged (both ends down) mid-transfer, and the download must
// finish on link2 with the content intact. The kernel's MPTCP events for a connection through the
// proxy (braid up -v prints them) must name the addresses the connection and its subflow really use.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { skipUnlessRoot, type NsProcess } from './helpers/netns';
import { startBraid, type BraidProxy } from './helpers/proc';
import { missingPrerequisite, nextReport, startByteServer } from './helpers/multipath-harness';
import { expectedSha256 } from './helpers/byte-stream';
import { createPathsTopology, flagsOf, ipEndpoints, killOnSignal, scratchDir, until, type PathsTopology } from './helpers/paths-harness';
import type { ResponseReport } from './helpers/mptcp-server';
import { requireFor } from './helpers/prerequisites';

const skip = requireFor('backup path and MPTCP events through braid up (paths-failover.test.ts)', skipUnlessRoot() ?? missingPrerequisite());
const RATE_MBIT = 20;
const SERVER_PORT = 8080;
const BYTES = 12_000_000;                 // ~5 s at 20 Mbit/s: time to act in the middle
const DOWN_AT = 3_000_000;                // unplug link1 once this much arrived
const PROGRESS = 500_000;
const FETCH_TIMEOUT_MS = 40_000;
// Not a speed claim: a stall this long means the connection did not fail over (an application on
// plain TCP would see a hang), whatever the machine's load.
const STALL_LIMIT_MS = 5_000;
const SOCKS_FETCH = path.join(__dirname, 'helpers', 'socks-fetch.js');

interface FetchResult { status: number; bytes: number; sha256: string; seconds: number; bodySeconds: number; maxGapMs: number; maxGapAtBytes: number }

describe('backup path and MPTCP events through braid up', { skip, timeout: 80_000 }, () => {
  let topo: PathsTopology;
  let server: NsProcess;
  let braid: BraidProxy;
  const files = scratchDir('failover');

  before(async () => {
    topo = await createPathsTopology({ rateMbit: RATE_MBIT });
    server = await startByteServer(topo.server, { port: SERVER_PORT });
    // The kernel path manager's endpoints (paths-policy.test.ts covers the same failover with Braid's own).
    files.write({ paths: { manager: 'kernel', interfaces: { link1: 'use', link2: 'backup' } } });
    braid = killOnSignal(await startBraid(['up', '-v', '--port', '0', '--config', files.config, '--state-dir', files.state],
      { prefix: ['ip', 'netns', 'exec', topo.client.name], timeoutMs: 15_000 }));
    // the endpoints Braid made: link1's addresses plain subflow, link2's flagged backup
    await until(async () => {
      const eps = await ipEndpoints(topo.client);
      const of = (dev: string): string[] => eps.filter((e) => e.dev === dev).map((e) => flagsOf(e).join(','));
      return of('link1').join() === 'subflow,subflow' && of('link2').join(' ') === 'subflow,backup subflow,backup' ? eps : undefined;
    }, 3000, 'endpoints on link1 (use) and link2 (backup)');
  });

  after(async () => {
    await braid?.stop('SIGTERM', 3000);
    await topo?.destroy();
  });

  const fetch = (bytes: number): NsProcess => topo.client.spawn([process.execPath, SOCKS_FETCH, '--proxy-port', String(braid.port),
    '--address', topo.l1.b.ipv4, '--port', String(SERVER_PORT), '--bytes', String(bytes), '--progress', String(PROGRESS),
    '--timeout-ms', String(FETCH_TIMEOUT_MS)], { label: 'socks-fetch' });
  const result = async (p: NsProcess): Promise<FetchResult> =>
    JSON.parse((await p.waitForLine(/^\{/, FETCH_TIMEOUT_MS + 5000)).line) as FetchResult;
  const rxBytes = async (dev: string): Promise<number> =>
    Number((await topo.client.exec(['cat', `/sys/class/net/${dev}/statistics/rx_bytes`])).stdout.trim());

  test('a connection through the proxy: created, established, sub_established name the right addresses', async () => {
    const from = braid.stderr().length;
    const r = await result(fetch(100_000));
    assert.equal(r.status, 200);
    const c = topo.l1.a.ipv4.replace(/\./g, '\\.');
    const s = topo.l1.b.ipv4.replace(/\./g, '\\.');
    const c2 = topo.l2.a.ipv4.replace(/\./g, '\\.');
    const log = (): string => braid.stderr().slice(from);
    // events arrive asynchronously to the transfer; wait (bounded) for the subflow one
    await until(async () => (/mptcp sub_established /.test(log()) ? true : undefined), 3000, 'sub_established in the log');
    const created = new RegExp(`mptcp created token (\\d+) ${c}:(\\d+) -> ${s}:${SERVER_PORT}\\b`).exec(log());
    assert.ok(created, `no created event from ${topo.l1.a.ipv4} to ${topo.l1.b.ipv4}:${SERVER_PORT} in:\n${log()}`);
    const [, token, sport] = created;
    assert.match(log(), new RegExp(`mptcp established token ${token} ${c}:${sport} -> ${s}:${SERVER_PORT}\\b`));
    // the extra subflow leaves from link2's address toward the address the connection was opened to
    assert.match(log(), new RegExp(`mptcp sub_established token ${token} ${c2}:\\d+ -> ${s}:${SERVER_PORT} dev link2\\b`));
    await until(async () => (new RegExp(`mptcp closed token ${token}\\b`).test(log()) ? true : undefined), 3000, 'closed event');
  });

  test('link1 (use) goes down mid-transfer: the transfer finishes on link2 (backup), content intact', async (t) => {
    const serverFrom = server.lines.length;
    const rx2Start = await rxBytes('link2');
    const p = fetch(BYTES);
    await p.waitForLine((l) => l.startsWith('progress ') && Number(l.split(' ')[1]) >= DOWN_AT, FETCH_TIMEOUT_MS);
    const receivedAtDown = Math.max(...p.lines.filter((l) => l.startsWith('progress ')).map((l) => Number(l.split(' ')[1])));
    const rx2AtDown = (await rxBytes('link2')) - rx2Start;
    await topo.l1.setDown();
    const r = await result(p);
    const rx2Total = (await rxBytes('link2')) - rx2Start;
    const report: ResponseReport = await nextReport(server, serverFrom, 10_000);
    const subflows = report.info?.subflows ?? [];
    const onLink2 = subflows.filter((sf) => sf.remoteAddress.replace(/^::ffff:/, '') === topo.l2.a.ipv4);
    const summary = `${(r.bytes / 1e6).toFixed(1)} MB in ${r.seconds.toFixed(2)} s (${((r.bytes * 8) / r.bodySeconds / 1e6).toFixed(1)} Mbit/s), ` +
      `link1 down at ${(receivedAtDown / 1e6).toFixed(2)} MB; longest stall ${r.maxGapMs.toFixed(0)} ms at ${(r.maxGapAtBytes / 1e6).toFixed(2)} MB; ` +
      `link2 received ${(rx2AtDown / 1e3).toFixed(1)} kB before the failure, ${(rx2Total / 1e6).toFixed(2)} MB in all; ` +
      `server subflows ${subflows.map((sf) => `${sf.remoteAddress}${sf.backup ? ' (backup)' : ''} ${(sf.bytesAcked / 1e6).toFixed(2)} MB`).join(', ')}`;
    t.diagnostic(summary);

    assert.equal(r.status, 200);
    assert.equal(r.bytes, BYTES);
    assert.equal(r.sha256, expectedSha256(BYTES), 'content differs from what the server sent');
    // before the failure only link1 carried data: link2 saw handshakes and ACK-sized traffic only
    assert.ok(rx2AtDown < receivedAtDown * 0.02, `link2 received ${rx2AtDown} bytes while ${receivedAtDown} arrived: the backup carried data`);
    // after it, the rest came over link2
    assert.ok(rx2Total >= (BYTES - receivedAtDown) * 0.9, `link2 received only ${rx2Total} bytes of the ${BYTES - receivedAtDown} left at the failure`);
    assert.equal(report.info?.mptcp, true);
    assert.equal(onLink2.length, 1, `expected one subflow from ${topo.l2.a.ipv4}: ${JSON.stringify(subflows)}`);
    assert.equal(onLink2[0]!.backup, true, 'the server does not see the link2 subflow as backup');
    assert.ok(r.maxGapMs < STALL_LIMIT_MS, `longest stall ${r.maxGapMs.toFixed(0)} ms`);
    // Braid saw link1 go and took its endpoints away
    await until(async () => ((await ipEndpoints(topo.client)).some((e) => e.dev === 'link1') ? undefined : true), 3000, 'link1 endpoints removed');
  });
});
