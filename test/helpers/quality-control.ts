/**
 * The path-quality end-to-end suites' shared set-up and readings: quality-topology.ts (WiFi and
 * cellular, both `use`), a byte server, `braid up` in the client namespace with its control API on,
 * and the control API and link counters as the tests read them.
 */
import assert from 'node:assert/strict';
import { after, before, type TestContext } from 'node:test';
import type { InterfaceView, PathsView } from '../../electron/core/contract';
import { startByteServer } from './multipath-harness';
import { killOnSignal, scratchDir, until } from './paths-harness';
import { startBraid, type BraidProxy } from './proc';
import { createQualityTopology, type QualityTopology } from './quality-topology';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export const mbit = (bps: number): string => `${((bps * 8) / 1e6).toFixed(1)} Mbit/s`;

/** `topo` is a getter: the topology is made in the suite's before(). */
export function qualityControl(topo: () => QualityTopology, port: number, token: string) {
  const api = async <T>(command: string, params: unknown = {}): Promise<T> => {
    const r = await topo().client.exec(['curl', '-sS', '--max-time', '5', '-H', `Authorization: Bearer ${token}`, '-X', 'POST', '--data', JSON.stringify(params), `http://127.0.0.1:${port}/api/${command}`]);
    const body = JSON.parse(r.stdout) as { ok: boolean; result: T; error?: { message: string } };
    assert.ok(body.ok, body.error?.message);
    return body.result;
  };
  const wwan = async (): Promise<InterfaceView> => (await api<PathsView>('paths.list')).interfaces.find((i) => i.name === 'wwan0')!;
  /** Bytes each link received over `ms`, per second. */
  const rates = async (ms: number): Promise<{ wlan0: number; wwan0: number }> => {
    const t = topo();
    const a = [await t.rx('wlan0'), await t.rx('wwan0')];
    await sleep(ms);
    const b = [await t.rx('wlan0'), await t.rx('wwan0')];
    return { wlan0: ((b[0]! - a[0]!) * 1000) / ms, wwan0: ((b[1]! - a[1]!) * 1000) / ms };
  };
  /**
   * Takes the delay off wwan0 and waits until its demotion ends, which must be within 15 s; then,
   * 1.5 s later, what each link received over 2 s.
   */
  const restore = async (t: TestContext): Promise<{ wlan0: number; wwan0: number }> => {
    const t1 = Date.now();
    await topo().clearDelay();
    await until(async () => ((await wwan()).demotion === null ? true : undefined), 16_000, 'wwan0 restored', 100);
    const restoredMs = Date.now() - t1;
    t.diagnostic(`restored ${restoredMs} ms after the delay went`);
    assert.ok(restoredMs <= 15_000, `restored only after ${restoredMs} ms`);
    await sleep(1500);
    return rates(2000);
  };
  return { api, wwan, rates, restore };
}

export interface QualityRig extends ReturnType<typeof qualityControl> {
  topo(): QualityTopology;
  braid(): BraidProxy;
  /** The config file and state directory `braid up` runs with. */
  files: ReturnType<typeof scratchDir>;
}

/**
 * Registers the suite's before() and after() (call it inside describe()): the topology at 20 Mbit/s
 * per link, a byte server on `bytesPort` in the server namespace, and `braid up -v` with both paths
 * `use` and the control API on `controlPort`. `cellFirst`: cellular's default route has the lower
 * metric, so first subflows open on wwan0.
 */
export function qualityRig(opts: { tag: string; bytesPort: number; controlPort: number; cellFirst?: boolean }): QualityRig {
  let topo: QualityTopology | null = null;
  let braid: BraidProxy | null = null;
  const token = `${opts.tag}-${process.pid}`;
  const files = scratchDir(opts.tag);
  before(async () => {
    topo = await createQualityTopology({ rateMbit: 20, cellFirst: opts.cellFirst });
    await startByteServer(topo.server, { port: opts.bytesPort });
    files.write({ paths: { interfaces: { wlan0: 'use', wwan0: 'use' } }, control: { host: '127.0.0.1', port: opts.controlPort, token } });
    braid = killOnSignal(await startBraid(['up', '-v', '--port', '0', '--config', files.config, '--state-dir', files.state],
      { prefix: ['ip', 'netns', 'exec', topo.client.name], timeoutMs: 15_000 }));
  });
  after(async () => {
    await braid?.stop('SIGTERM', 5000);
    await topo?.destroy();
  });
  const getTopo = (): QualityTopology => {
    if (!topo) throw new Error('the quality topology is made in before()');
    return topo;
  };
  const getBraid = (): BraidProxy => {
    if (!braid) throw new Error('braid up is started in before()');
    return braid;
  };
  return { ...qualityControl(getTopo, opts.controlPort, token), topo: getTopo, braid: getBraid, files };
}
