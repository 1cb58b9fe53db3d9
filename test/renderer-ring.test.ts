/**
 * The dashboard chart's memory (renderer/src/lib/ring.ts): an hour of ticks, with paths coming and
 * going, must leave it holding one window of samples and only the paths seen in that window.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { PathSample, StatsTick } from '../electron/core/contract';
import { MAX_PATHS, OTHER, StatsRing } from '../renderer/src/lib/ring';

const sample = (path: string, downBps: number, upBps = 0): PathSample =>
  ({ path, downBps, upBps, rttUs: null, totalUp: 0, totalDown: 0, subflows: downBps > 0 ? 1 : 0 });
const tick = (t: number, paths: PathSample[]): StatsTick =>
  ({ t, paths, connections: 1, totalUp: 0, totalDown: 0, system: { mptcpSockets: null } });

test('an hour of ticks keeps one window of samples, in order', () => {
  const ring = new StatsRing(600);
  const t0 = 1_700_000_000_000;
  for (let i = 0; i < 7200; i++) ring.push(tick(t0 + i * 500, [sample('eth0', i), sample('wlan0', 2 * i, 1)]));
  assert.equal(ring.length, 600);
  const v = ring.view();
  assert.equal(v.t.length, 600);
  assert.equal(v.t[0], (t0 + 6600 * 500) / 1000, 'oldest kept sample is not the 600th from the end');
  assert.equal(v.t[599], (t0 + 7199 * 500) / 1000);
  for (let i = 1; i < v.t.length; i++) assert.ok(v.t[i]! > v.t[i - 1]!, 'time goes backwards in the view');
  const eth = v.series.find((s) => s.path === 'eth0')!;
  assert.equal(eth.down[0], 6600);
  assert.equal(eth.down[599], 7199);
  assert.deepEqual(v.series.map((s) => s.path), ['eth0', 'wlan0']);
});

test('paths idle for a whole window are forgotten; at most MAX_PATHS apart, the rest summed', () => {
  const ring = new StatsRing(100);
  let t = 1_700_000_000_000;
  // A new path every tick for a long time: a dashboard open while interfaces churn.
  for (let i = 0; i < 5000; i++) {
    t += 500;
    ring.push(tick(t, [sample('eth0', 100), sample(`veth${i}`, 10)]));
    assert.ok(ring.pathCount <= MAX_PATHS + 1, `${ring.pathCount} series kept at tick ${i}`);
  }
  const v = ring.view();
  assert.ok(v.series.some((s) => s.path === OTHER), 'overflow paths are not summed into one series');
  assert.equal(v.series[v.series.length - 1]!.path, OTHER, `${OTHER} is not last`);
  // Everything stops: after one window nothing is left.
  for (let i = 0; i < 101; i++) ring.push(tick((t += 500), [sample('eth0', 0)]));
  assert.equal(ring.pathCount, 0);
  assert.equal(ring.length, 100);
});

test('history overlapping live ticks (after a reconnect) is not counted twice', () => {
  const ring = new StatsRing(10);
  ring.push(tick(1000, [sample('eth0', 1)]));
  ring.push(tick(1500, [sample('eth0', 2)]));
  ring.push(tick(1500, [sample('eth0', 2)]));
  ring.push(tick(1000, [sample('eth0', 1)]));
  assert.equal(ring.length, 2);
});
