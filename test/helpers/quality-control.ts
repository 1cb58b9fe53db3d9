/** The control API and link counters as the path-quality end-to-end tests read them. */
import assert from 'node:assert/strict';
import type { InterfaceView, PathsView } from '../../electron/core/contract';
import type { QualityTopology } from './quality-topology';

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
  return { api, wwan, rates };
}
