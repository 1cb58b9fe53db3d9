// Path quality end to end: `braid up` in the client namespace of quality-topology.ts (WiFi and
// cellular, 20 Mbit/s each, both `use`, each with its own default route), a long download through
// it with curl. While it runs, the cellular link's round trip grows by 200 ms (the delay line
// replaces the kernel bridge in the middle namespace), and later goes back to normal.
//
// - the delayed path is demoted (to backup, source 'quality', the reason naming its RTT) within 5 s;
// - its traffic moves: over 2 s from 1 s after, it receives under 15 % of what it did before, and
//   wlan0 more than twice that and at least 85 % of its own rate before (not stalled behind what the
//   server had queued on the delayed subflow: MPTCP delivers in order; see subflow-plan.ts);
// - within 15 s after the delay goes it is restored, and carries again;
// - `braid paths --json` and `braid status` show each path's RTT, and status the reason.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { skipUnlessRoot } from './helpers/netns';
import { runProcess } from './helpers/proc';
import { BRAID_CLI, missingPrerequisite } from './helpers/multipath-harness';
import { until } from './helpers/paths-harness';
import { mbit, qualityRig } from './helpers/quality-control';
import { requireFor, missingPython } from './helpers/prerequisites';
import type { InterfaceView } from '../electron/core/contract';

const skip = requireFor('path quality end to end (paths-quality.test.ts)', skipUnlessRoot() ?? missingPrerequisite() ?? missingPython());
const PORT = 8080;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('path quality', { skip, timeout: 240_000 }, () => {
  const rig = qualityRig({ tag: 'quality', bytesPort: PORT, controlPort: 9797 });
  const { wwan, rates, restore, files } = rig;

  test('a path whose RTT grows by 200 ms is demoted within 5 s, its traffic moves, and it is restored within 15 s after', async (t) => {
    const topo = rig.topo();
    const braid = rig.braid();
    const dl = topo.client.spawn(['curl', '-sS', '--max-time', '90', '--socks5-hostname', `127.0.0.1:${braid.port}`, '-o', '/dev/null',
      `http://${topo.dest}:${PORT}/bytes/400000000`], { label: 'long download' });
    try {
      await sleep(4000);
      const before = await rates(2000);
      const q0 = await wwan();
      t.diagnostic(`before: wlan0 ${mbit(before.wlan0)}, wwan0 ${mbit(before.wwan0)}; wwan0 RTT ${q0.quality?.rttMs} ms`);
      assert.ok(before.wwan0 > 1e6, `wwan0 carried only ${mbit(before.wwan0)} before the delay`);
      assert.equal(q0.demotion, null);

      const t0 = Date.now();
      await topo.addDelay(100);
      const demoted = await until(async () => {
        const v = await wwan();
        return v.demotion?.source === 'quality' ? v : undefined;
      }, 8000, 'wwan0 demoted for its RTT', 100);
      const demotedMs = Date.now() - t0;
      t.diagnostic(`demoted ${demotedMs} ms after the delay began: ${demoted.value.demotion!.reason}`);
      assert.ok(demotedMs <= 5000, `demoted only after ${demotedMs} ms`);
      assert.equal(demoted.value.effective, 'backup');
      assert.match(demoted.value.demotion!.reason, /^wwan0 demoted: RTT \d+ ms/);
      const status = await runProcess(process.execPath, [BRAID_CLI, 'status', '--state-dir', files.state], { prefix: ['ip', 'netns', 'exec', topo.client.name], timeoutMs: 15_000 });
      assert.match(status.stdout.toString(), /wwan0 .*policy use → backup \(wwan0 demoted: RTT \d+ ms/);
      assert.match(status.stdout.toString(), /wlan0 .*\n\s+RTT [\d.]+ ms/);

      await sleep(1000); // the subflow's close on its way to the server (a delayed trip), and the server's resending
      const during = await rates(2000);
      t.diagnostic(`demoted: wlan0 ${mbit(during.wlan0)}, wwan0 ${mbit(during.wwan0)}`);
      assert.ok(during.wwan0 < 0.15 * before.wwan0, `wwan0 still received ${mbit(during.wwan0)} (before: ${mbit(before.wwan0)})`);
      assert.ok(during.wlan0 > 2 * during.wwan0 && during.wlan0 > 0.25e6, 'the traffic did not move to wlan0');
      assert.ok(during.wlan0 >= 0.85 * before.wlan0, `wlan0 received only ${mbit(during.wlan0)} (before: ${mbit(before.wlan0)}): stalled behind the delayed path`);

      const afterwards = await restore(t);
      const q = await wwan();
      t.diagnostic(`after: wlan0 ${mbit(afterwards.wlan0)}, wwan0 ${mbit(afterwards.wwan0)}; wwan0 RTT ${q.quality?.rttMs} ms, still ${q.demotion ? 'demoted' : 'restored'}`);
      assert.equal(q.demotion, null, `demoted again: ${q.demotion?.reason}`);
      assert.ok(afterwards.wwan0 > 0.3 * before.wwan0, `wwan0 carries only ${mbit(afterwards.wwan0)} after its restoration`);

      const listed = await runProcess(process.execPath, [BRAID_CLI, 'paths', '--json', '--config', files.config, '--state-dir', files.state], { prefix: ['ip', 'netns', 'exec', topo.client.name], timeoutMs: 15_000 });
      const json = JSON.parse(listed.stdout.toString()) as { interfaces: (InterfaceView & { quality: { rttMs: number | null } | null })[] };
      const wl = json.interfaces.find((i) => i.name === 'wlan0')!;
      t.diagnostic(`braid paths --json: wlan0 quality ${JSON.stringify(wl.quality)}`);
      assert.ok(wl.quality && wl.quality.rttMs !== null && wl.quality.rttMs > 0, 'braid paths --json shows the RTT');
    } finally {
      await dl.stop(2000);
      await topo.clearDelay().catch(() => {});
    }
  });
});
