// A quality demotion of the path that holds a connection's FIRST subflow, without a kernel: the
// plan closes that subflow too (as it does the path's other carrying subflows; an MP_PRIO would
// leave what the peer had queued on it behind the slow path), only once another subflow carries the
// connection, and never for a path lowered for another reason; Braid's path manager then resets the
// subflow's socket (the kernel keeps a first subflow half open, and the peer would go on sending its
// queue there) and reopens the path as backup at once. And the judge compares with the other path's
// lowest RTT of the last seconds: the slow path holding the connection back inflates the fast one's
// receiver-side RTT. The kernel side is measured end to end in paths-quality-first.test.ts.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { planConnection } from '../electron/core/paths/subflow-plan';
import { conn, P, planOpts, sub, ops as opsOf } from './helpers/subflow-plan-fixtures';
import { UserspacePm, type SubflowApi } from '../electron/core/paths/userspace-pm';
import type { PmEvent } from '../electron/core/native/netlink';
import type { SubflowInfo } from '../electron/core/native/mptcp';
import { PolicyBoard } from '../electron/core/paths/effective';
import { defaultPathsConfig, type PathsConfig } from '../electron/core/paths/policy';
import { QualityJudge } from '../electron/core/paths/quality';

const ops = (a: Parameters<typeof opsOf>[0]): string[] => opsOf(a, true);
const opts = planOpts;

describe('subflow plan: the first subflow on a path demoted for its quality', () => {
  const first = sub('wwan0', 2, { initial: true });
  const slow = [P('wlan0', 'use', 1), P('wwan0', 'backup', 2, { slow: true })];

  test('is closed when another subflow carries the connection; the next plan reopens the path as backup', () => {
    assert.deepEqual(ops(planConnection(conn(first, sub('wlan0', 1)), slow, null, opts)), ['destroy wwan0 (first)']);
    assert.deepEqual(ops(planConnection(conn(sub('wlan0', 1)), slow, null, opts)), ['create wwan0 backup']);
  });

  test('is closed even when it was already flagged backup (it cannot be reopened as one)', () => {
    assert.deepEqual(ops(planConnection(conn({ ...first, backup: true }, sub('wlan0', 1)), slow, null, opts)), ['destroy wwan0 (first)']);
  });

  test('no other subflow yet: only flagged, once another one is on its way', () => {
    assert.deepEqual(ops(planConnection(conn(first), slow, null, opts)), ['create wlan0', 'backup wwan0 (first)']);
    assert.deepEqual(ops(planConnection(conn(first, sub('wlan0', 1, { backup: true })), slow, null, opts)), ['carry wlan0', 'destroy wwan0 (first)'],
      'a backup subflow on a use path is flagged to carry, and carries in its place');
  });

  test('nothing else can carry it: left alone', () => {
    assert.deepEqual(ops(planConnection(conn(first), [P('wlan0', 'use', 1, { up: false }), P('wwan0', 'backup', 2, { slow: true })], null, opts)), []);
  });

  test('a path lowered for another reason (a cap) only has its first subflow flagged', () => {
    assert.deepEqual(ops(planConnection(conn(first, sub('wlan0', 1)), [P('wlan0', 'use', 1), P('wwan0', 'backup', 2)], null, opts)), ['backup wwan0 (first)']);
  });
});

describe('Braid\'s path manager, the first subflow\'s path demoted, against a stand-in kernel', () => {
  const setup = (abort: SubflowApi['abort']) => {
    const calls: string[] = [];
    const api: SubflowApi = {
      create: (o) => void calls.push(`create ${o.localAddress}${o.backup ? ' backup' : ''}`),
      destroy: (o) => void calls.push(`destroy ${o.localAddress}:${o.localPort}`),
      priority: (o) => void calls.push(`${o.backup ? 'backup' : 'carry'} ${o.localAddress}`),
      abort: (o) => {
        calls.push(`abort ${o.localAddress}:${o.localPort} -> ${o.remoteAddress}:${o.remotePort} if ${o.ifindex}`);
        return abort!(o);
      },
    };
    const state = { paths: [P('wlan0', 'use', 1), P('wwan0', 'use', 2)] };
    const debug: string[] = [];
    const pm = new UserspacePm({ api, paths: () => state.paths, maxSubflows: () => 8, log: { info() {}, warn() {}, debug: (m: string) => void debug.push(m) } });
    const ev = (e: Record<string, unknown>): void => pm.onEvent(e as unknown as PmEvent);
    const at = { token: 9, family: 4, daddr: '192.0.2.1', dport: 8080 };
    pm.register(9, { allowed: null, secondary: 'idle', rule: null });
    ev({ type: 'created', ...at, saddr: '10.0.2.1', sport: 40002 });
    ev({ type: 'established', ...at, saddr: '10.0.2.1', sport: 40002 });
    ev({ type: 'sub_established', ...at, saddr: '10.0.1.1', sport: 40001, ifname: 'wlan0' });
    assert.deepEqual(calls.splice(0), ['create 10.0.1.1']);
    return { calls, state, ev, at, pm, debug };
  };

  test('destroyed, its socket reset (with its device), reopened as backup at once; restored, it carries again', () => {
    const { calls, state, ev, at, pm } = setup(() => true);
    state.paths = [P('wlan0', 'use', 1), P('wwan0', 'backup', 2, { slow: true })];
    pm.refresh();
    assert.deepEqual(calls.splice(0), ['destroy 10.0.2.1:40002', 'abort 10.0.2.1:40002 -> 192.0.2.1:8080 if 3']);
    ev({ type: 'sub_closed', ...at, saddr: '10.0.2.1', sport: 40002, ifname: 'wwan0' });
    assert.deepEqual(calls.splice(0), ['create 10.0.2.1 backup'], 'reopened as backup on its close event, no failure hold-off');
    ev({ type: 'sub_established', ...at, saddr: '10.0.2.1', sport: 40003, ifname: 'wwan0', backup: true });
    pm.refresh();
    assert.deepEqual(calls.splice(0), [], 'the backup subflow is left alone while the path is slow');

    state.paths = [P('wlan0', 'use', 1), P('wwan0', 'use', 2)];
    pm.refresh();
    assert.deepEqual(calls.splice(0), ['carry 10.0.2.1']);
  });

  test('a reset that fails (or finds no socket) changes nothing else', () => {
    for (const abort of [() => { throw new Error('EPERM'); }, () => false]) {
      const { calls, state, ev, at, pm, debug } = setup(abort);
      state.paths = [P('wlan0', 'use', 1), P('wwan0', 'backup', 2, { slow: true })];
      pm.refresh();
      assert.deepEqual(calls.splice(0), ['destroy 10.0.2.1:40002', 'abort 10.0.2.1:40002 -> 192.0.2.1:8080 if 3']);
      assert.equal(debug.filter((m) => /resetting its first subflow failed|first subflow's socket was already gone/.test(m)).length, 1, 'said once, at debug level');
      ev({ type: 'sub_closed', ...at, saddr: '10.0.2.1', sport: 40002, ifname: 'wwan0' });
      assert.deepEqual(calls.splice(0), ['create 10.0.2.1 backup']);
    }
  });

  test('an extra subflow closed for quality is not reset (the kernel disposes of it)', () => {
    const { calls, state, ev, at, pm } = setup(() => true);
    state.paths = [P('wlan0', 'backup', 1, { slow: true }), P('wwan0', 'use', 2)];
    pm.refresh();
    assert.deepEqual(calls.splice(0), ['destroy 10.0.1.1:40001']);
    ev({ type: 'sub_closed', ...at, saddr: '10.0.1.1', sport: 40001, ifname: 'wlan0' });
    assert.deepEqual(calls.splice(0), ['create 10.0.1.1 backup']);
  });
});

describe('the quality judge while the slow path holds the connection back', () => {
  test('the other path is taken at its lowest RTT of the last 3 s, not at what the stall makes of it', () => {
    const clock = { now: 1_000_000 };
    const cfg: PathsConfig = { ...defaultPathsConfig(), interfaces: { wlan0: 'use', wwan0: 'use' } };
    const board = new PolicyBoard(() => cfg);
    const judge = new QualityJudge({ board, config: () => cfg.quality, isUse: () => true, now: () => clock.now });
    const sf = (p: string, n: number, rttMs: number): SubflowInfo => ({
      id: n, localAddress: `10.0.${n}.1`, localPort: 40000 + n, remoteAddress: '192.0.2.1', remotePort: 443, family: 4, interface: p,
      bytesSent: 0, bytesAcked: 0, bytesReceived: 0, rttUs: 5000, rttVarUs: 2000, rcvRttUs: rttMs * 1000, bytesRetrans: 0,
      backup: false, backupKnown: false, state: 1,
    });
    const tick = (wlan0: number, wwan0: number): void => {
      judge.subflow('wlan0', sf('wlan0', 1, wlan0), 0, 1_000_000);
      judge.subflow('wwan0', sf('wwan0', 2, wwan0), 0, 1_000_000);
      judge.tick();
      clock.now += 500;
    };
    const policy = (): string => board.policyOf({ name: 'wwan0', kind: 'cellular' }).policy;
    for (let i = 0; i < 4; i++) tick(13, 14);
    // What paths-quality-first.test.ts saw: wwan0's RTT climbs to 200 ms while wlan0's estimate, waiting on the connection, follows it up.
    tick(34, 190);
    assert.equal(policy(), 'use', 'one bad tick is not enough');
    tick(64, 196);
    assert.equal(policy(), 'backup');
    assert.equal(board.policyOf({ name: 'wwan0', kind: 'cellular' }).demotion!.reason, 'wwan0 demoted: RTT 196 ms (best other path 13 ms)');

    // A path that stays slower for longer is compared with what the other measures now.
    const later = new QualityJudge({ board: new PolicyBoard(() => cfg), config: () => cfg.quality, isUse: () => true, now: () => clock.now });
    for (let i = 0; i < 4; i++) (later.subflow('wlan0', sf('wlan0', 1, 13), 0, 1e6), later.subflow('wwan0', sf('wwan0', 2, 14), 0, 1e6), later.tick(), (clock.now += 500));
    for (let i = 0; i < 8; i++) (later.subflow('wlan0', sf('wlan0', 1, 100), 0, 1e6), later.tick(), (clock.now += 500));
    for (let i = 0; i < 3; i++) (later.subflow('wlan0', sf('wlan0', 1, 100), 0, 1e6), later.subflow('wwan0', sf('wwan0', 2, 200), 0, 1e6), later.tick(), (clock.now += 500));
    assert.equal(later.of('wwan0')!.demoted, false, '200 ms against 100 ms lasting 4 s is within the threshold');
  });
});
