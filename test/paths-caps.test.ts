// Data caps end to end: `braid up` in the client namespace of the WiFi + cellular topology (two
// links shaped to 20 Mbit/s, each with its own default route), both paths `use`, a cap of 10 MB/day
// on wwan0, real curl through the SOCKS port. What each link carried is counted outside Braid: by
// payload-count.py (TCP payload of every frame on each interface, an AF_PACKET tap like tcpdump's)
// and by the interfaces' own counters.
//
// - the 60 MB download completes intact (SHA-256), wwan0 carries at most 10.5 MB of payload and is
//   demoted to off with the reason; Braid's count of each interface is within 2 % of its payload;
// - after a restart of braid up the count is the same and wwan0 stays off (carries < 1 % of 10 MB);
// - a new day on the test clock (BRAID_TEST_CLOCK_FILE) lifts the cap and wwan0 carries again;
// - bytes per program per path (stats.programs, braid status --json): curl's 60 MB, split as the
//   links carried them;
// - `braid paths cap` / `braid paths usage` from the CLI: a cap set with --at-cap backup demotes to
//   backup in the running braid, `none` lifts it, usage --json is the running braid's count.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { NsProcess } from './helpers/netns';
import { skipUnlessRoot } from './helpers/netns';
import { runProcess, startBraid, type BraidProxy } from './helpers/proc';
import { BRAID_CLI, curlDownload, missingPrerequisite, startByteServer } from './helpers/multipath-harness';
import { expectedSha256 } from './helpers/byte-stream';
import { killOnSignal, scratchDir, until } from './helpers/paths-harness';
import { createPolicyTopology, type PolicyTopology } from './helpers/policy-topology';
import { requireFor } from './helpers/prerequisites';
import type { ConfigInput } from '../electron/core/config/schema';
import type { PathsView, ProgramPathView, UsageView } from '../electron/core/contract';

const skip = requireFor('data caps end to end (paths-caps.test.ts)', skipUnlessRoot() ?? missingPrerequisite());
const RATE_MBIT = 20;
const PORT = 8080;
const CONTROL_PORT = 9797;
const TOKEN = `caps-${process.pid}`;
const MB = 1_000_000;
const CAP = 10 * MB;
/** test/helpers/payload-count.py in the source tree (dist/test -> test) */
export const PAYLOAD_COUNT = path.resolve(__dirname, '..', '..', 'test', 'helpers', 'payload-count.py');

interface Payload { rx: number; tx: number; rxPackets: number; txPackets: number; drops: number }

describe('data caps per interface', { skip, timeout: 300_000 }, () => {
  let topo: PolicyTopology;
  let braid: BraidProxy | null = null;
  const files = scratchDir('caps');
  const clock = path.join(files.dir, 'clock');
  let firstCount = 0;
  let firstFrom = '';

  const up = async (paths?: NonNullable<ConfigInput['paths']>): Promise<BraidProxy> => {
    await braid?.stop('SIGTERM', 5000);
    if (paths) files.write({ paths, control: { host: '127.0.0.1', port: CONTROL_PORT, token: TOKEN } });
    braid = killOnSignal(await startBraid(['up', '-v', '--port', '0', '--config', files.config, '--state-dir', files.state],
      { prefix: ['ip', 'netns', 'exec', topo.client.name], timeoutMs: 15_000, env: { ...process.env, BRAID_TEST_CLOCK_FILE: clock } }));
    return braid;
  };
  const api = async <T>(command: string, params: unknown = {}): Promise<T> => {
    const r = await topo.client.exec(['curl', '-sS', '--max-time', '5', '-H', `Authorization: Bearer ${TOKEN}`, '-X', 'POST', '--data', JSON.stringify(params), `http://127.0.0.1:${CONTROL_PORT}/api/${command}`]);
    const body = JSON.parse(r.stdout) as { ok: boolean; result: T; error?: { message: string } };
    assert.ok(body.ok, body.error?.message);
    return body.result;
  };
  const cli = async (...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> => {
    const r = await runProcess(process.execPath, [BRAID_CLI, ...args, '--config', files.config, '--state-dir', files.state], { prefix: ['ip', 'netns', 'exec', topo.client.name], timeoutMs: 20_000 });
    return { code: r.code, stdout: r.stdout.toString(), stderr: r.stderr };
  };
  const socksGet = (bytes: number) => curlDownload(topo.client, `http://${topo.dest}:${PORT}/bytes/${bytes}`, { socksPort: braid!.port, hash: true, maxSeconds: 120 });
  const usageOf = async (name: string) => (await api<UsageView>('paths.usage')).interfaces.find((i) => i.name === name)!;
  const wwan = async () => (await api<PathsView>('paths.list')).interfaces.find((i) => i.name === 'wwan0')!;
  /** TCP payload on each link while `fn` runs, counted outside Braid. */
  const payload = async <T>(fn: () => Promise<T>): Promise<{ result: T; wlan0: Payload; wwan0: Payload }> => {
    const tap: NsProcess = topo.client.spawn(['python3', PAYLOAD_COUNT, 'wlan0', 'wwan0'], { label: 'payload count' });
    await tap.waitForLine(/^ready$/, 10_000);
    const result = await fn();
    await tap.stop(5000);
    const counts = JSON.parse(tap.lines.find((l) => l.startsWith('{'))!) as { wlan0: Payload; wwan0: Payload };
    assert.equal(counts.wlan0.drops + counts.wwan0.drops, 0, 'the tap lost frames: its count would be short');
    return { result, ...counts };
  };
  const sysCounter = async (dev: string, what: string): Promise<number> => Number((await topo.client.exec(['cat', `/sys/class/net/${dev}/statistics/${what}`])).stdout.trim());

  before(async () => {
    fs.writeFileSync(clock, '0');
    topo = await createPolicyTopology({ rateMbit: RATE_MBIT });
    await startByteServer(topo.server, { port: PORT });
  });

  after(async () => {
    await braid?.stop('SIGTERM', 5000);
    await topo?.destroy();
  });

  test('a 10 MB/day cap on a use path: 60 MB arrive intact, the capped path carries at most 10.5 MB, and the count matches the wire within 2 %', async (t) => {
    await up({ interfaces: { wlan0: 'use', wwan0: 'use' }, caps: { wwan0: { bytes: CAP, period: 'day', resetDay: 1, atCap: 'off' } } });
    const rx0 = await sysCounter('wwan0', 'rx_bytes');
    const pk0 = await sysCounter('wwan0', 'rx_packets');
    const c = await payload(async () => {
      const r = await socksGet(60 * MB);
      await new Promise((res) => setTimeout(res, 1500)); // the last tick's counts, and the closed connection's rest
      return r;
    });
    const rxBytes = (await sysCounter('wwan0', 'rx_bytes')) - rx0;
    const rxPackets = (await sysCounter('wwan0', 'rx_packets')) - pk0;
    const w = await usageOf('wwan0');
    const l = await usageOf('wlan0');
    const braidW = w.today.up + w.today.down;
    const braidL = l.today.up + l.today.down;
    const wireW = c.wwan0.rx + c.wwan0.tx;
    const wireL = c.wlan0.rx + c.wlan0.tx;
    firstCount = braidW;
    firstFrom = w.from;
    const err = (a: number, b: number): number => Math.abs(a - b) / b;
    t.diagnostic(`wwan0 payload ${wireW} B (rx ${c.wwan0.rx} in ${c.wwan0.rxPackets} frames; interface rx_bytes ${rxBytes} in ${rxPackets} packets), Braid counted ${braidW} B (${(100 * err(braidW, wireW)).toFixed(2)} % off)`);
    t.diagnostic(`wlan0 payload ${wireL} B, Braid counted ${braidL} B (${(100 * err(braidL, wireL)).toFixed(2)} % off); ${c.result.mbit.toFixed(1)} Mbit/s`);
    assert.equal(c.result.sha256, expectedSha256(60 * MB));
    assert.ok(wireW <= 10.5 * MB, `the capped path carried ${wireW} bytes of payload`);
    // The interface's own count, headers and all, bounds the payload from above: it agrees.
    assert.ok(wireW <= rxBytes + (await sysCounter('wwan0', 'tx_bytes')), 'the tap counted more than the interface moved');
    assert.ok(wireW >= 5 * MB, `the capped path was used for only ${wireW} bytes before its cap`);
    assert.ok(err(braidW, wireW) <= 0.02, `Braid counted ${braidW} B on wwan0, the wire carried ${wireW} B`);
    assert.ok(err(braidL, wireL) <= 0.02, `Braid counted ${braidL} B on wlan0, the wire carried ${wireL} B`);
    const v = (await until(async () => { const x = await wwan(); return x.effective === 'off' ? x : undefined; }, 3000, 'wwan0 off after draining')).value;
    assert.equal(v.demotion?.source, 'cap');
    assert.match(v.demotion!.reason, /^wwan0 reached its cap 10 MB\/day/);
    assert.equal(w.reached, true);

    // Bytes per program per path: curl's connection, split as the links carried it.
    const rows = await api<ProgramPathView[]>('stats.programs');
    const curl = rows.filter((r) => r.program === 'curl');
    const on = (p: string): number => curl.find((r) => r.path === p)?.down ?? 0;
    t.diagnostic(`by program: ${JSON.stringify(rows)}`);
    assert.ok(Math.abs(on('wlan0') + on('wwan0') - 60 * MB) < 0.001 * 60 * MB, `curl's bytes: ${on('wlan0')} + ${on('wwan0')}`);
    // Per program counts what the program got (60 MB, split by where it came from); the links also
    // carried data twice (reinjected from wwan0 on wlan0 when its cap took it out): at most that apart.
    const twice = braidW + braidL - 60 * MB;
    assert.ok(Math.abs(on('wwan0') - w.today.down) <= twice + 0.01 * w.today.down, `curl on wwan0 ${on('wwan0')} B, the link ${w.today.down} B, ${twice} B carried twice`);
    const status = await runProcess(process.execPath, [BRAID_CLI, 'status', '--json', '--state-dir', files.state], { prefix: ['ip', 'netns', 'exec', topo.client.name], timeoutMs: 20_000 });
    assert.deepEqual((JSON.parse(status.stdout.toString()) as { byProgram: ProgramPathView[] }).byProgram.filter((r) => r.program === 'curl').map((r) => r.path).sort(), ['wlan0', 'wwan0']);
  });

  test('the count survives a restart of braid up, and the capped path stays off', async (t) => {
    await up();
    const w = await usageOf('wwan0');
    t.diagnostic(`after the restart: wwan0 ${w.used} B used (before: ${firstCount} B)`);
    assert.equal(w.today.up + w.today.down, firstCount);
    const v = await until(async () => ((await wwan()).demotion?.source === 'cap' ? true : undefined), 5000, 'wwan0 demoted by its cap after the restart');
    t.diagnostic(`demoted ${v.ms} ms after the restart`);
    const c = await payload(() => socksGet(10 * MB));
    t.diagnostic(`10 MB more: wwan0 ${c.wwan0.rx + c.wwan0.tx} B, wlan0 ${c.wlan0.rx + c.wlan0.tx} B`);
    assert.equal(c.result.sha256, expectedSha256(10 * MB));
    assert.ok(c.wwan0.rx + c.wwan0.tx < 0.01 * 10 * MB, `wwan0 is at its cap yet carried ${c.wwan0.rx + c.wwan0.tx} bytes`);
  });

  test('a new day on the test clock lifts the cap, and the path carries again', async (t) => {
    const now = new Date();
    const nextMidnight = new Date(now.getFullYear(), now.getMonth(), now.getDate() + 1).getTime();
    fs.writeFileSync(clock, String(nextMidnight - now.getTime() + 60_000));
    const lifted = await until(async () => ((await wwan()).demotion === null ? true : undefined), 5000, 'the cap lifted on a new day');
    const w = await usageOf('wwan0');
    t.diagnostic(`lifted ${lifted.ms} ms after the clock moved; the new period starts ${w.from} with ${w.used} B`);
    assert.ok(w.from > firstFrom, `a new period: ${w.from} after ${firstFrom}`);
    assert.equal(w.used, 0);
    assert.equal(w.reached, false);
    const c = await payload(() => socksGet(20 * MB));
    t.diagnostic(`20 MB: wwan0 ${c.wwan0.rx + c.wwan0.tx} B, wlan0 ${c.wlan0.rx + c.wlan0.tx} B`);
    assert.equal(c.result.sha256, expectedSha256(20 * MB));
    assert.ok(c.wwan0.rx + c.wwan0.tx > 2 * MB, `wwan0 carried only ${c.wwan0.rx + c.wwan0.tx} bytes after its cap lifted`);
  });

  test('braid paths cap and usage from the CLI reach the running braid', async (t) => {
    const set = await cli('paths', 'cap', 'wwan0', '1MB/day', '--at-cap', 'backup');
    assert.equal(set.code, 0, set.stderr);
    assert.match(set.stdout, /wwan0 cap 1 MB\/day, backup at the cap saved/);
    const demoted = await until(async () => {
      const v = await wwan();
      return v.demotion?.source === 'cap' && /cap 1 MB\/day/.test(v.demotion.reason) ? v : undefined;
    }, 5000, 'wwan0 demoted to backup by the new cap');
    assert.match(demoted.value.demotion!.reason, /wwan0 reached its cap 1 MB\/day \(backup until/);
    assert.equal(demoted.value.effective, 'backup');
    const u = await cli('paths', 'usage', '--json');
    assert.equal(u.code, 0, u.stderr);
    const view = JSON.parse(u.stdout) as UsageView & { live: boolean };
    const mine = view.interfaces.find((i) => i.name === 'wwan0')!;
    t.diagnostic(`braid paths usage: wwan0 ${mine.used} B of ${mine.cap?.bytes} (${mine.reached ? 'reached' : 'under'})`);
    assert.equal(view.live, true);
    assert.deepEqual(mine.cap, { bytes: MB, period: 'day', resetDay: 1, atCap: 'backup' });
    assert.equal(mine.reached, true);
    const text = await cli('paths', 'usage');
    assert.match(text.stdout, /wwan0 .*1 MB\/day.*then backup.*REACHED/);
    const bad = await cli('paths', 'cap', 'wwan0', '10 parsecs/day');
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /is not a size/);
    const none = await cli('paths', 'cap', 'wwan0', 'none');
    assert.equal(none.code, 0, none.stderr);
    await until(async () => ((await wwan()).demotion === null ? true : undefined), 5000, 'the cap removed');
  });
});
