// What a quality demotion does to each connection's subflows, without a kernel: the plan closes a
// slow path's carrying subflow (so that the peer reinjects what it had queued on it; an MP_PRIO
// only steers new data) and reopens it as backup, and Braid's path manager does that at once,
// without the hold-off a failed subflow gets. The kernel side (the peer resending over the other
// link, the download moving) is measured end to end in paths-quality.test.ts.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { PolicyBoard } from '../electron/core/paths/effective';
import { defaultPathsConfig, type PathsConfig } from '../electron/core/paths/policy';
import { QUALITY_SOURCE } from '../electron/core/paths/quality';
import { RouteChooser } from '../electron/core/paths/route-choice';
import { planConnection, type PathInfo } from '../electron/core/paths/subflow-plan';
import { conn, P, planOpts, sub, ops } from './helpers/subflow-plan-fixtures';
import { UserspacePm, type SubflowApi } from '../electron/core/paths/userspace-pm';
import type { InterfaceState } from '../electron/core/paths/inventory';
import type { PmEvent } from '../electron/core/native/netlink';

const opts = planOpts;

describe('subflow plan for a path demoted for its quality', () => {
  const first = sub('wlan0', 1, { initial: true });
  const slow = [P('wlan0', 'use', 1), P('wwan0', 'backup', 2, { slow: true })];

  test('its carrying subflow is closed, not flagged; the next plan reopens it as backup', () => {
    assert.deepEqual(ops(planConnection(conn(first, sub('wwan0', 2)), slow, null, opts)), ['destroy wwan0']);
    assert.deepEqual(ops(planConnection(conn(first), slow, null, opts)), ['create wwan0 backup']);
    assert.deepEqual(ops(planConnection(conn(first, sub('wwan0', 2, { backup: true })), slow, null, opts)), [], 'a backup subflow there stays');
  });

  test('a path lowered to backup for another reason (a cap) only has its subflow flagged', () => {
    assert.deepEqual(ops(planConnection(conn(first, sub('wwan0', 2)), [P('wlan0', 'use', 1), P('wwan0', 'backup', 2)], null, opts)), ['backup wwan0']);
  });

  test('nothing else carrying the connection: flagged backup, never closed', () => {
    const down = [P('wlan0', 'use', 1, { up: false }), P('wwan0', 'backup', 2, { slow: true })];
    assert.deepEqual(ops(planConnection(conn(first, sub('wwan0', 2)), down, null, opts)), ['backup wwan0']);
  });

  test('restored: the backup subflow carries again', () => {
    assert.deepEqual(ops(planConnection(conn(first, sub('wwan0', 2, { backup: true })), [P('wlan0', 'use', 1), P('wwan0', 'use', 2)], null, opts)), ['carry wwan0']);
  });
});

describe('quality demotions reach the plan', () => {
  const iface = (name: string, ifindex: number, kind: InterfaceState['kind'], address: string): InterfaceState => ({
    name, ifindex, kind, up: true, mac: null, linkKind: null, addresses: [{ address, family: 4, prefixlen: 24 }], defaultRoute: false, ssid: null, signal: null,
  });

  test('a path demoted by the quality judge is slow; one lowered by a cap is not', () => {
    const c: PathsConfig = { ...defaultPathsConfig(), interfaces: { wlan0: 'use', wwan0: 'use', wlan1: 'use' } };
    const board = new PolicyBoard(() => c);
    const chooser = new RouteChooser({ board, config: () => c, interfaces: () => [iface('wlan0', 2, 'wifi', '10.0.1.1'), iface('wwan0', 3, 'cellular', '10.0.2.1'), iface('wlan1', 4, 'wifi', '10.0.3.1')], routes: () => [] });
    board.demote(QUALITY_SOURCE, 'wwan0', { to: 'backup', reason: 'wwan0 demoted: RTT 200 ms' });
    board.demote('cap', 'wlan1', { to: 'backup', reason: 'cap reached' });
    const got = Object.fromEntries(chooser.paths().map((p) => [p.name, `${p.policy}${p.slow ? ' slow' : ''}`]));
    assert.deepEqual(got, { wlan0: 'use', wwan0: 'backup slow', wlan1: 'backup' });
  });
});

describe('Braid\'s path manager, a quality demotion against a stand-in kernel', () => {
  test('the slow subflow is destroyed and reopened as backup at once (no failure hold-off); restored, it carries again', () => {
    const calls: string[] = [];
    const api: SubflowApi = {
      create: (o) => void calls.push(`create ${o.localAddress}${o.backup ? ' backup' : ''}`),
      destroy: (o) => void calls.push(`destroy ${o.localAddress}:${o.localPort}`),
      priority: (o) => void calls.push(`${o.backup ? 'backup' : 'carry'} ${o.localAddress}`),
    };
    let paths: PathInfo[] = [P('wlan0', 'use', 1), P('wwan0', 'use', 2)];
    const pm = new UserspacePm({ api, paths: () => paths, maxSubflows: () => 8, log: { info() {}, warn() {}, debug() {} } });
    const ev = (e: Record<string, unknown>): void => pm.onEvent(e as unknown as PmEvent);
    const at = { token: 9, family: 4, daddr: '192.0.2.1', dport: 8080 };
    pm.register(9, { allowed: null, secondary: 'idle', rule: null });
    ev({ type: 'created', ...at, saddr: '10.0.1.1', sport: 40001 });
    ev({ type: 'established', ...at, saddr: '10.0.1.1', sport: 40001 });
    ev({ type: 'sub_established', ...at, saddr: '10.0.2.1', sport: 40002, ifname: 'wwan0' });
    assert.deepEqual(calls.splice(0), ['create 10.0.2.1']);

    paths = [P('wlan0', 'use', 1), P('wwan0', 'backup', 2, { slow: true })];
    pm.refresh();
    assert.deepEqual(calls.splice(0), ['destroy 10.0.2.1:40002']);
    ev({ type: 'sub_closed', ...at, saddr: '10.0.2.1', sport: 40002, ifname: 'wwan0' });
    assert.deepEqual(calls.splice(0), ['create 10.0.2.1 backup'], 'reopened as backup on its close event');
    ev({ type: 'sub_established', ...at, saddr: '10.0.2.1', sport: 40003, ifname: 'wwan0', backup: true });
    pm.refresh();
    assert.deepEqual(calls.splice(0), [], 'the backup subflow is left alone while the path is slow');

    paths = [P('wlan0', 'use', 1), P('wwan0', 'use', 2)];
    pm.refresh();
    assert.deepEqual(calls.splice(0), ['carry 10.0.2.1']);
  });

  test('a subflow that closed by itself is still held off', () => {
    const calls: string[] = [];
    const api: SubflowApi = { create: (o) => void calls.push(`create ${o.localAddress}`), destroy: () => {}, priority: () => {} };
    const pm = new UserspacePm({ api, paths: () => [P('wlan0', 'use', 1), P('wwan0', 'use', 2)], maxSubflows: () => 8, log: { info() {}, warn() {}, debug() {} } });
    const ev = (e: Record<string, unknown>): void => pm.onEvent(e as unknown as PmEvent);
    const at = { token: 10, family: 4, daddr: '192.0.2.1', dport: 8080 };
    pm.register(10, { allowed: null, secondary: 'idle', rule: null });
    ev({ type: 'created', ...at, saddr: '10.0.1.1', sport: 40001 });
    ev({ type: 'established', ...at, saddr: '10.0.1.1', sport: 40001 });
    ev({ type: 'sub_established', ...at, saddr: '10.0.2.1', sport: 40002, ifname: 'wwan0' });
    ev({ type: 'sub_closed', ...at, saddr: '10.0.2.1', sport: 40002, ifname: 'wwan0' });
    assert.deepEqual(calls, ['create 10.0.2.1'], 'no new create right after a close Braid did not ask for');
  });
});
