// Path quality end to end when the delayed path holds the download's FIRST subflow: the set-up of
// paths-quality.test.ts (WiFi and cellular, 20 Mbit/s each, both `use`), but cellular's default
// route has the lower metric, so the dialer opens the connection on wwan0 and wlan0 joins it. While
// the download runs, wwan0's round trip grows by 200 ms, and later goes back to normal.
//
// - the connection's first subflow is on wwan0 (the connections list's route.via);
// - wwan0 is demoted within 5 s; its traffic moves: over 2 s from 1 s after, it receives under 2 %
//   of what it did before (the server's queue on the old first subflow does not trickle in), and
//   wlan0 at least 85 % of its own rate before (not stalled behind that queue: MPTCP delivers in
//   order; see subflow-plan.ts);
// - within 15 s after the delay goes wwan0 is restored and carries the same connection again;
// - the download completes, the byte count and SHA-256 of what the server sent.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { skipUnlessRoot } from './helpers/netns';
import { curlDownload, missingPrerequisite, type CurlResult } from './helpers/multipath-harness';
import { until } from './helpers/paths-harness';
import { mbit, qualityRig } from './helpers/quality-control';
import { requireFor, missingPython } from './helpers/prerequisites';
import { expectedSha256 } from './helpers/byte-stream';
import type { ConnectionView, PathsView } from '../electron/core/contract';

const skip = requireFor('path quality, first subflow on the slow path (paths-quality-first.test.ts)', skipUnlessRoot() ?? missingPrerequisite() ?? missingPython());
const PORT = 8080;
const BYTES = 200 * 1024 * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('path quality, first subflow on the delayed path', { skip, timeout: 240_000 }, () => {
  const rig = qualityRig({ tag: 'quality-first', bytesPort: PORT, controlPort: 9798, cellFirst: true });
  const { api, rates, restore } = rig;
  const download = async (): Promise<ConnectionView | undefined> => (await api<ConnectionView[]>('connections.list')).find((c) => c.destination?.endsWith(`:${PORT}`));
  const subflows = (c: ConnectionView): string => c.subflows.map((s) => `${s.interface}${s.backup ? ' (backup)' : ''}`).join(', ');

  test('demoted while it holds the first subflow: the traffic moves, the connection lives on intact, the path is restored', async (t) => {
    const topo = rig.topo();
    const braid = rig.braid();
    let result: CurlResult | null = null;
    let failure: unknown = null;
    const dl = curlDownload(topo.client, `http://${topo.dest}:${PORT}/bytes/${BYTES}`, { socksPort: braid.port, hash: true, maxSeconds: 150 })
      .then((r) => { result = r; }, (err: unknown) => { failure = err; });
    try {
      await sleep(4000);
      const conn = (await until(async () => download(), 5000, 'the download in the connections list', 100)).value;
      t.diagnostic(`connection ${conn.id}: first subflow via ${conn.route?.via}; subflows ${subflows(conn)}`);
      assert.equal(conn.route?.via, 'wwan0', 'the connection was not opened on wwan0');
      const before = await rates(2000);
      t.diagnostic(`before: wlan0 ${mbit(before.wlan0)}, wwan0 ${mbit(before.wwan0)}`);
      assert.ok(before.wwan0 > 1e6 && before.wlan0 > 1e6, 'both links should carry the download before the delay');

      const t0 = Date.now();
      await topo.addDelay(100);
      const trace: string[] = [];
      const demoted = await until(async () => {
        const all = (await api<PathsView>('paths.list')).interfaces;
        const v = all.find((i) => i.name === 'wwan0')!;
        trace.push(`${Date.now() - t0}: ${all.map((i) => `${i.name} ${i.quality?.rttMs}@${i.quality?.sampledAt ? Date.now() - i.quality.sampledAt : '-'}`).join(' ')}`);
        return v.demotion?.source === 'quality' ? v : undefined;
      }, 8000, 'wwan0 demoted for its RTT', 100).catch((err: unknown) => { t.diagnostic(trace.join('\n')); throw err; });
      const demotedMs = Date.now() - t0;
      t.diagnostic(`demoted ${demotedMs} ms after the delay began: ${demoted.value.demotion!.reason}`);
      if (demotedMs > 5000) t.diagnostic(trace.join('\n'));
      assert.ok(demotedMs <= 5000, `demoted only after ${demotedMs} ms`);

      await sleep(1000); // the subflow's close on its way to the server (a delayed trip), and the server's resending
      const during = await rates(2000);
      const mid = await download();
      t.diagnostic(`demoted: wlan0 ${mbit(during.wlan0)}, wwan0 ${mbit(during.wwan0)}; subflows ${mid ? subflows(mid) : 'gone'}`);
      assert.equal(mid?.id, conn.id, 'the download connection went away');
      assert.ok(during.wwan0 < 0.15 * before.wwan0, `wwan0 still received ${mbit(during.wwan0)} (before: ${mbit(before.wwan0)})`);
      // Nor does what the server had queued on the old first subflow trickle in at the slow rate (it
      // did at 0.4-2.6 Mbit/s when that subflow was only flagged backup, or closed but not reset).
      assert.ok(during.wwan0 < 0.02 * before.wwan0, `wwan0 still received ${mbit(during.wwan0)}: the old first subflow's queue`);
      assert.ok(during.wlan0 >= 0.85 * before.wlan0, `wlan0 received only ${mbit(during.wlan0)} (before: ${mbit(before.wlan0)}): stalled behind the delayed first subflow`);

      const afterwards = await restore(t);
      const late = await download();
      t.diagnostic(`after: wlan0 ${mbit(afterwards.wlan0)}, wwan0 ${mbit(afterwards.wwan0)}; subflows ${late ? subflows(late) : 'gone'}`);
      assert.equal(late?.id, conn.id, 'the download connection went away');
      assert.ok(afterwards.wwan0 > 0.3 * before.wwan0, `wwan0 carries only ${mbit(afterwards.wwan0)} after its restoration`);

      await dl;
      if (failure) throw failure;
      const r = result as CurlResult | null;
      t.diagnostic(`download: ${r?.bytes} bytes, ${r?.mbit.toFixed(1)} Mbit/s overall`);
      assert.equal(r?.httpCode, 200);
      assert.equal(r?.bytes, BYTES);
      assert.equal(r?.sha256, expectedSha256(BYTES), 'content differs from what the server sent');
    } finally {
      // A failed assertion leaves curl running: braid's stop (after) ends it.
      await topo.clearDelay().catch(() => {});
    }
  });
});
