// The path policy without a kernel: per-destination rules (validation, matching), effective
// policies with demotions, the per-connection subflow plan of Braid's path manager, the first
// subflow's choice from routes, the dialer's attempt order, the secondary controller's decisions on
// a fake clock, the path manager's event handling against a stand-in kernel, and the
// net.mptcp.path_manager switch against a stand-in /proc/sys directory.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { validateConfig, ConfigError } from '../electron/core/config/schema';
import { PolicyBoard } from '../electron/core/paths/effective';
import { defaultPathsConfig, type PathsConfig } from '../electron/core/paths/policy';
import { matchRule, RuleError, ruleAllows, validateRule } from '../electron/core/paths/rules';
import { planConnection, type ConnState, type ConnWish, type PathInfo, type SubflowState } from '../electron/core/paths/subflow-plan';
import { RouteChooser } from '../electron/core/paths/route-choice';
import { PathMeter } from '../electron/core/paths/path-meter';
import type { InterfaceState } from '../electron/core/paths/inventory';
import type { RouteInfo } from '../electron/core/native/netlink';
import { planAttempts } from '../electron/core/proxy/dialer';
import { SECONDARY, SecondaryController } from '../electron/core/paths/secondary';
import { ConnectionTracker, type TrackedConnection } from '../electron/core/proxy/tracker';
import { UserspacePm, type SubflowApi } from '../electron/core/paths/userspace-pm';
import { PathManagerSysctl, currentPathManager } from '../electron/core/paths/pm-sysctl';
import type { PmEvent } from '../electron/core/native/netlink';
import { desiredEndpoints } from '../electron/core/paths/reconcile';

const cfg = (over: Partial<PathsConfig> = {}): PathsConfig => ({ ...defaultPathsConfig(), ...over });

describe('rules', () => {
  test('a bad rule is refused naming its field', () => {
    const bad: [unknown, RegExp][] = [
      [{ match: { host: 'zoom.us' } }, /^paths must be a non-empty list/],
      [{ match: {}, paths: ['wifi'] }, /^match must name a host, a cidr or a port/],
      [{ match: { host: 'a b' }, paths: ['wifi'] }, /^match.host must be a host name/],
      [{ match: { cidr: '10.0.0.0/40' }, paths: ['wifi'] }, /^match.cidr prefix must be at most 32/],
      [{ match: { port: [9, 3] }, paths: ['wifi'] }, /^match.port must be a port/],
      [{ match: { port: 22 }, paths: ['wifi', 'a/b'] }, /^paths\[1\] must be an interface name/],
      [{ match: { port: 22 }, paths: ['wifi'], via: 'x' }, /^via is not a known setting/],
    ];
    for (const [r, re] of bad) {
      assert.throws(() => validateRule(r), (e: unknown) => e instanceof RuleError && re.test(e.message), JSON.stringify(r));
    }
  });

  test('in the config, the error names the rule by its place', () => {
    assert.throws(() => validateConfig({ paths: { rules: [{ match: { port: 1 }, paths: ['*'] }, { match: { cidr: 'x' }, paths: ['wifi'] }] } }),
      (e: unknown) => e instanceof ConfigError && e.field === 'paths.rules[1].match.cidr');
    assert.throws(() => validateConfig({ paths: { manager: 'mptcpd' } }), (e: unknown) => e instanceof ConfigError && e.field === 'paths.manager');
    assert.equal(validateConfig({}).paths.manager, 'userspace');
    assert.equal(validateConfig({ paths: { interfaces: { wwan0: 'secondary' } } }).paths.interfaces.wwan0, 'secondary');
  });

  test('host suffixes, address ranges and ports; the first rule that matches wins', () => {
    const rules = [
      validateRule({ name: 'calls', match: { host: '*.Zoom.US.' }, paths: ['wifi'], backup: ['cellular'] }),
      validateRule({ match: { cidr: '203.0.113.0/24', port: [27000, 27100] }, paths: ['*'] }),
      validateRule({ match: { cidr: '2001:db8::/32' }, paths: ['eth0'] }),
      validateRule({ match: { port: 443 }, paths: ['ethernet'] }),
    ];
    assert.equal(matchRule(rules, { host: 'us02web.zoom.us', address: '1.2.3.4', port: 443 })?.label, 'calls');
    assert.equal(matchRule(rules, { host: 'zoom.us', address: null, port: 80 })?.label, 'calls');
    assert.equal(matchRule(rules, { host: 'notzoom.us', address: null, port: 80 }), null, 'a suffix matches whole labels only');
    assert.equal(matchRule(rules, { host: null, address: '203.0.113.9', port: 27050 })?.label, 'rule 2');
    assert.equal(matchRule(rules, { host: null, address: '::ffff:203.0.113.9', port: 27050 })?.label, 'rule 2', 'an IPv4-mapped address is its IPv4 address');
    assert.equal(matchRule(rules, { host: null, address: '203.0.113.9', port: 26999 }), null);
    assert.equal(matchRule(rules, { host: '2001:db8::7', address: null, port: 80 })?.label, 'rule 3', 'a numeric host is an address');
    assert.equal(matchRule(rules, { host: 'example.org', address: '198.51.100.1', port: 443 })?.label, 'rule 4');
    const r = rules[0]!;
    assert.equal(ruleAllows(r, { name: 'wlan0', kind: 'wifi' }), 'allowed');
    assert.equal(ruleAllows(r, { name: 'wwan0', kind: 'cellular' }), 'backup');
    assert.equal(ruleAllows(r, { name: 'eth0', kind: 'ethernet' }), 'no');
    assert.equal(ruleAllows(rules[1]!, { name: 'tun0', kind: 'other' }), 'allowed');
  });
});

describe('effective policy', () => {
  test('demotions only lower; the lowest wins and says why; lifting one restores the next', () => {
    const c = cfg({ interfaces: { wwan0: 'secondary' } });
    const board = new PolicyBoard(() => c);
    let changes = 0;
    board.on('changed', () => changes++);
    const wlan = { name: 'wlan0', kind: 'wifi' as const };
    const wwan = { name: 'wwan0', kind: 'cellular' as const };
    assert.deepEqual(board.policyOf(wwan), { policy: 'secondary', configured: 'secondary', explicit: true, managed: true, demotion: null });
    board.demote('quality', 'wlan0', { to: 'backup', reason: 'RTT 850 ms' });
    board.demote('cap', 'wlan0', { to: 'off', reason: 'cap reached' });
    board.demote('cap', 'wlan0', { to: 'off', reason: 'cap reached' });
    assert.equal(changes, 2, 'an unchanged demotion is no change');
    assert.deepEqual(board.policyOf(wlan).demotion, { to: 'off', reason: 'cap reached', source: 'cap' });
    board.demote('cap', 'wlan0', null);
    assert.equal(board.policyOf(wlan).policy, 'backup');
    board.demote('quality', 'wwan0', { to: 'secondary', reason: 'not lower' });
    assert.equal(board.policyOf(wwan).demotion, null, 'a "demotion" to the same level changes nothing');
    board.demote('x', 'wwan0', { to: 'backup', reason: 'r' });
    assert.equal(board.policyOf(wwan).policy, 'backup');
    assert.equal(board.list().length, 3);
  });

  test('with the kernel path manager a secondary path is a backup endpoint on every connection; a demoted one follows its demotion', () => {
    const c = cfg({ interfaces: { wlan0: 'use', wwan0: 'secondary' } });
    const board = new PolicyBoard(() => c);
    const ifs = [iface('wlan0', 2, 'wifi', '10.0.1.1'), iface('wwan0', 3, 'cellular', '10.0.2.1')];
    const of = (i: InterfaceState) => board.policyOf(i).policy;
    assert.deepEqual(desiredEndpoints(ifs, c, of).map((d) => `${d.ifname}${d.backup ? ' backup' : ''}`), ['wlan0', 'wwan0 backup']);
    board.demote('cap', 'wlan0', { to: 'off', reason: 'cap' });
    assert.deepEqual(desiredEndpoints(ifs, c, of).map((d) => d.ifname), ['wwan0']);
  });

  test('an unconfigured virtual link takes its policy from another program\'s endpoint only while adopted', () => {
    const board = new PolicyBoard(() => cfg());
    const veth = { name: 'link2', kind: 'other' as const };
    assert.deepEqual([board.policyOf(veth).policy, board.policyOf(veth).managed], ['off', false]);
    board.setAdoption((i) => (i.name === 'link2' ? 'use' : null));
    assert.deepEqual([board.policyOf(veth).policy, board.policyOf(veth).managed], ['use', true]);
    assert.equal(board.policyOf({ name: 'wwan0', kind: 'cellular' }).policy, 'backup', 'a known kind keeps Braid\'s default');
  });
});

// ---- the per-connection plan ------------------------------------------------------------------

const P = (name: string, policy: PathInfo['policy'], n: number, over: Partial<PathInfo> = {}): PathInfo => ({
  name, ifindex: n, kind: name.startsWith('w') && name.includes('lan') ? 'wifi' : 'cellular', up: true,
  addresses: [{ address: `10.0.${n}.1`, family: 4 }], policy, managed: true, ...over,
});
const sub = (iface: string, n: number, over: Partial<SubflowState> = {}): SubflowState => ({
  localAddress: `10.0.${n}.1`, localPort: 40000 + n, remoteAddress: '192.0.2.1', remotePort: 8080, iface, backup: false, initial: false, ...over,
});
const conn = (...subflows: SubflowState[]): ConnState => ({ token: 7, family: 4, remoteAddress: '192.0.2.1', remotePort: 8080, subflows, announced: [] });
const wish = (over: Partial<ConnWish> = {}): ConnWish => ({ allowed: null, secondary: 'idle', rule: null, ...over });
const opts = { maxSubflows: 8, hold: new Set<string>() };
const ops = (a: ReturnType<typeof planConnection>): string[] =>
  a.map((x) => (x.op === 'create' ? `create ${x.iface}${x.backup ? ' backup' : ''}` : x.op === 'destroy' ? `destroy ${x.subflow.iface}` : `${x.backup ? 'backup' : 'carry'} ${x.subflow.iface}`));

describe('subflow plan', () => {
  test('use: a carrying subflow; backup: a backup subflow; off: none', () => {
    const c = conn(sub('wlan0', 1, { initial: true }));
    assert.deepEqual(ops(planConnection(c, [P('wlan0', 'use', 1), P('wwan0', 'use', 2), P('eth9', 'off', 3)], null, opts)), ['create wwan0']);
    assert.deepEqual(ops(planConnection(c, [P('wlan0', 'use', 1), P('wwan0', 'backup', 2)], null, opts)), ['create wwan0 backup']);
  });

  test('secondary: nothing until needed; carrying while needed; backup on standby; gone when idle again', () => {
    const paths = [P('wlan0', 'use', 1), P('wwan0', 'secondary', 2)];
    const first = sub('wlan0', 1, { initial: true });
    assert.deepEqual(ops(planConnection(conn(first), paths, wish(), opts)), []);
    assert.deepEqual(ops(planConnection(conn(first), paths, wish({ secondary: 'active' }), opts)), ['create wwan0']);
    const joined = sub('wwan0', 2);
    assert.deepEqual(ops(planConnection(conn(first, joined), paths, wish({ secondary: 'standby' }), opts)), ['backup wwan0']);
    assert.deepEqual(ops(planConnection(conn(first), paths, wish({ secondary: 'standby' }), opts)), [], 'standby opens nothing new');
    assert.deepEqual(ops(planConnection(conn(first, { ...joined, backup: true }), paths, wish({ secondary: 'active' }), opts)), ['carry wwan0']);
    assert.deepEqual(ops(planConnection(conn(first, joined), paths, wish(), opts)), ['destroy wwan0']);
  });

  test('a secondary path stands in when no use path is left', () => {
    const paths = [P('wlan0', 'use', 1, { up: false }), P('wwan0', 'secondary', 2)];
    assert.deepEqual(ops(planConnection(conn(), paths, wish(), opts)), ['create wwan0']);
    const held = { maxSubflows: 8, hold: new Set(['wlan0|192.0.2.1']) };
    assert.deepEqual(ops(planConnection(conn(), [P('wlan0', 'use', 1), P('wwan0', 'secondary', 2)], wish(), held)), ['create wwan0'], 'a use path whose subflow keeps failing is not counted');
  });

  test('the first subflow on a path that should not carry is flagged backup once another carries; unsteered links are left alone', () => {
    const c = conn(sub('wlan0', 1, { initial: true }));
    assert.deepEqual(ops(planConnection(c, [P('wlan0', 'off', 1), P('wwan0', 'use', 2)], null, opts)), ['create wwan0', 'backup wlan0']);
    assert.deepEqual(ops(planConnection(c, [P('wlan0', 'backup', 1)], null, opts)), [], 'nothing else carries: it stays as it is');
    assert.deepEqual(ops(planConnection(c, [P('wlan0', 'off', 1, { managed: false }), P('wwan0', 'use', 2)], null, opts)), ['create wwan0']);
  });

  test('a rule: paths it does not name are closed, backup-only ones are flagged', () => {
    const paths = [P('wlan0', 'use', 1), P('wwan0', 'use', 2), P('wlan1', 'use', 3)];
    const c = conn(sub('wlan0', 1, { initial: true }), sub('wwan0', 2), sub('wlan1', 3));
    const w = wish({ allowed: new Map([['wlan0', 'allowed'], ['wwan0', 'backup']]), rule: 'calls' });
    assert.deepEqual(ops(planConnection(c, paths, w, opts)), ['backup wwan0', 'destroy wlan1']);
  });

  test('no subflow on a path that would route around the peer\'s more specific route (a VPN, a LAN)', () => {
    const c = conn(sub('tun0', 9, { initial: true }));
    const paths = [P('tun0', 'off', 9, { managed: false }), P('wlan0', 'use', 1), P('wwan0', 'use', 2)];
    assert.deepEqual(ops(planConnection(c, paths, null, { ...opts, reaches: () => new Set(['tun0']) })), []);
    assert.deepEqual(ops(planConnection(c, paths, null, { ...opts, reaches: () => new Set(['tun0', 'wwan0']) })), ['create wwan0']);
    assert.deepEqual(ops(planConnection(c, paths, null, { ...opts, reaches: () => null })), ['create wlan0', 'create wwan0'], 'no route known: nothing ruled out');
  });

  test('limits: at most maxSubflows extra, none where a create is pending or failed lately', () => {
    const paths = [P('wlan0', 'use', 1), P('wwan0', 'use', 2), P('wlan1', 'use', 3)];
    const c = conn(sub('wlan0', 1, { initial: true }));
    assert.deepEqual(ops(planConnection(c, paths, null, { maxSubflows: 1, hold: new Set() })), ['create wwan0']);
    assert.deepEqual(ops(planConnection(c, paths, null, { maxSubflows: 8, hold: new Set(['wwan0|192.0.2.1']) })), ['create wlan1']);
  });
});

// ---- the first subflow's path -----------------------------------------------------------------

const iface = (name: string, ifindex: number, kind: InterfaceState['kind'], address: string, up = true): InterfaceState => ({
  name, ifindex, kind, up, mac: null, linkKind: null, addresses: [{ address, family: 4, prefixlen: 24 }], defaultRoute: false, ssid: null, signal: null,
});
const route = (ifindex: number, dst: string | null, dstLen: number, priority: number): RouteInfo => ({
  kind: 'route', family: 4, dst, dstLen, isDefault: dst === null, gateway: null, prefsrc: null, ifindex, ifname: null,
  table: 254, protocol: 3, scope: 'global', type: 1, priority,
});

function chooser(c: PathsConfig, ifaces: InterfaceState[], routes: RouteInfo[], measure?: (n: string) => { rttUs: number | null; peakBps: number | null } | null): RouteChooser {
  return new RouteChooser({ board: new PolicyBoard(() => c), config: () => c, interfaces: () => ifaces, routes: () => routes, measure });
}

describe('first subflow', () => {
  const wlan = iface('wlan0', 2, 'wifi', '10.0.1.1');
  const wwan = iface('wwan0', 3, 'cellular', '10.0.2.1');
  const defaults = [route(2, null, 0, 100), route(3, null, 0, 200)];
  const target = { host: 'example.org', address: '192.0.2.1', port: 443 };

  test('the policy, not the routing table: an off or backup path holding the preferred default route is not first', () => {
    const off = chooser(cfg({ interfaces: { wlan0: 'off', wwan0: 'use' } }), [wlan, wwan], defaults).plan(target);
    assert.deepEqual(off.candidates?.map((c) => `${c.iface}:${c.tier}`), ['wwan0:use']);
    const backup = chooser(cfg({ interfaces: { wlan0: 'backup', wwan0: 'use' } }), [wlan, wwan], defaults).plan(target);
    assert.deepEqual(backup.candidates?.map((c) => `${c.iface}:${c.tier}`), ['wwan0:use', 'wlan0:backup']);
    assert.equal(backup.note, null);
  });

  test('only a backup path reaches it: used, and the connection says why; none does: ENOPATH naming each path', () => {
    const onlyWlan = [route(2, null, 0, 100), route(2, '192.0.2.0', 24, 100), route(3, null, 0, 200)];
    const p = chooser(cfg({ interfaces: { wlan0: 'backup', wwan0: 'use' } }), [wlan, wwan], onlyWlan).plan(target);
    assert.deepEqual(p.candidates?.map((c) => c.iface), ['wlan0']);
    assert.match(p.note ?? '', /no use path reaches example\.org \(192\.0\.2\.1\); first subflow on backup path wlan0/);
    const c = cfg({ interfaces: { wlan0: 'use', wwan0: 'off' }, rules: [validateRule({ name: 'cell only', match: { port: 443 }, paths: ['cellular'] })] });
    const none = chooser(c, [wlan, wwan], defaults).plan(target);
    assert.equal(none.error?.code, 'ENOPATH');
    assert.match(none.error!.message, /no allowed path reaches example\.org \(192\.0\.2\.1\): wlan0 is not allowed by rule "cell only"; wwan0 is off/);
  });

  test('a tunnel\'s more specific routes win and are left to the routing table; loopback too', () => {
    const tun = iface('tun0', 9, 'other', '10.8.0.2');
    const vpn = [...defaults, route(9, '0.0.0.0', 1, 0), route(9, '128.0.0.0', 1, 0)];
    assert.equal(chooser(cfg(), [wlan, wwan, tun], vpn).plan(target).candidates, null);
    assert.deepEqual([...chooser(cfg(), [wlan, wwan, tun], vpn).alternatives(target.address)!], ['tun0'], 'only the tunnel reaches it as well as its best route');
    assert.deepEqual([...chooser(cfg(), [wlan, wwan], defaults).alternatives(target.address)!].sort(), ['wlan0', 'wwan0']);
    assert.equal(chooser(cfg(), [wlan, wwan], defaults).plan({ ...target, address: '127.0.0.1' }).candidates, null);
  });

  test('use paths best first by measured RTT, then rate, then route metric; rules and secondary paths are carried for the path manager', () => {
    const c = cfg({ interfaces: { wlan0: 'use', wwan0: 'use', wlan1: 'secondary' } });
    const wlan1 = iface('wlan1', 4, 'wifi', '10.0.3.1');
    const routes = [...defaults, route(4, null, 0, 300)];
    const slowWlan = chooser(c, [wlan, wwan, wlan1], routes, (n) => ({ rttUs: n === 'wlan0' ? 90_000 : 30_000, peakBps: null })).plan(target);
    assert.deepEqual(slowWlan.candidates?.map((x) => x.iface), ['wwan0', 'wlan0', 'wlan1']);
    assert.deepEqual(slowWlan.secondary, ['wlan1']);
    assert.deepEqual(slowWlan.use.sort(), ['wlan0', 'wwan0']);
    const close = chooser(c, [wlan, wwan, wlan1], routes, () => ({ rttUs: 30_000, peakBps: null })).plan(target);
    assert.deepEqual(close.candidates?.map((x) => x.iface), ['wlan0', 'wwan0', 'wlan1'], 'RTTs within 20 % of each other: the metric decides');
  });

  test('the dialer tries use paths first, addresses interleaved, then lower tiers; none at all is the plan\'s error', () => {
    const c = cfg({ interfaces: { wlan0: 'use', wwan0: 'backup' } });
    const ch = chooser(c, [wlan, wwan], defaults);
    const routing = { plan: (t: Parameters<RouteChooser['plan']>[0]) => ch.plan({ ...t, address: t.address.startsWith('192') ? t.address : '192.0.2.9' }), attach: () => null };
    const attempts = planAttempts([{ address: '192.0.2.1', family: 4 }, { address: '192.0.2.2', family: 4 }], routing, { host: 'h', port: 443 });
    assert.deepEqual(attempts.map((a) => `${a.address}@${a.via?.iface}:${a.rank}`), ['192.0.2.1@wlan0:0', '192.0.2.2@wlan0:0', '192.0.2.1@wwan0:2', '192.0.2.2@wwan0:2']);
    const off = chooser(cfg({ interfaces: { wlan0: 'off', wwan0: 'off' } }), [wlan, wwan], defaults);
    assert.throws(() => planAttempts([{ address: '192.0.2.1', family: 4 }], { plan: (t) => off.plan(t), attach: () => null }, { host: 'h', port: 1 }), /ENOPATH|no allowed path/);
  });
});

// ---- secondary paths on a fake clock ----------------------------------------------------------

interface FakeConn {
  id: number; bytesUp: number; bytesDown: number; held: number; rwnd: number; fd: number; clientFd: number;
  route: { rule: null; via: string; note: null; secondary: string[]; use: string[]; token: number; state: 'idle' | 'trial' | 'active' | 'standby' | null };
  onWlan: number; onWwan: number;
}

function secondaryRig(peak: number | null) {
  const c: FakeConn = {
    id: 1, bytesUp: 0, bytesDown: 0, held: 0, rwnd: 0, fd: 10, clientFd: 11, onWlan: 0, onWwan: 0,
    route: { rule: null, via: 'wlan0', note: null, secondary: ['wwan0'], use: ['wlan0'], token: 99, state: 'idle' },
  };
  const tracked = { ...c, heldTime: () => c.held } as unknown as TrackedConnection;
  const live = () => Object.assign(tracked, { bytesUp: c.bytesUp, bytesDown: c.bytesDown, route: c.route, fd: c.fd, clientFd: c.clientFd, heldTime: () => c.held });
  const updates: string[] = [];
  let current = 0;
  const ctl = new SecondaryController({
    tracker: () => ({ withSecondaryPaths: () => [live()][Symbol.iterator]() }) as never,
    meter: { measure: () => (peak === null ? null : { rttUs: null, peakBps: peak }), current: () => current },
    sink: () => ({ register() {}, update: (_t, w) => void updates.push(w.secondary!) }),
    pathsOf: () => ['wlan0', 'wwan0'],
    read: () => ({ mptcp: true, fallback: false, token: 99, subflowsTotal: 2, bytesSent: 0, bytesReceived: 0, bytesAcked: 0, retransmits: 0, subflows: [
      { interface: 'wlan0', bytesReceived: c.onWlan, bytesAcked: 0 }, { interface: 'wwan0', bytesReceived: c.onWwan, bytesAcked: 0 },
    ] as never }),
    clientState: () => ({ queued: 0, rwndLimitedUs: c.rwnd * 1000, busyUs: 0 }),
  });
  // Runs `ms` of traffic at `bps` (share on the secondary `sec`), the client's socket waiting `wait` of the time.
  const run = (from: number, ms: number, bps: number, o: { sec?: number; wait?: number; held?: number; pathBps?: number } = {}): number => {
    let t = from;
    for (; t < from + ms; t += SECONDARY.tickMs) {
      const n = (bps * SECONDARY.tickMs) / 1000;
      c.bytesDown += n;
      c.onWwan += n * (o.sec ?? 0);
      c.onWlan += n * (1 - (o.sec ?? 0));
      c.rwnd += SECONDARY.tickMs * (o.wait ?? 0);
      c.held += SECONDARY.tickMs * (o.held ?? 0);
      current = o.pathBps ?? bps;
      ctl.tick(t);
    }
    return t;
  };
  return { c, ctl, updates, run };
}

describe('secondary controller', () => {
  test('bulk on a saturated use path: a trial, kept when the secondary carries; standby when the need ends, gone later', () => {
    const { c, updates, run } = secondaryRig(null);
    let t = run(0, 1500, 2_500_000);
    assert.equal(c.route.state, 'trial', 'joins within a second and a half of bulk');
    t = run(t, SECONDARY.trialMs, 4_700_000, { sec: 0.45 });
    assert.equal(c.route.state, 'active');
    t = run(t, 3000, 0);
    assert.equal(c.route.state, 'standby', 'need gone for two seconds: demoted to backup');
    run(t, SECONDARY.standbyMs + 500, 0);
    assert.equal(c.route.state, 'idle', 'and it leaves after a standby');
    assert.deepEqual(updates, ['active', 'active', 'standby', 'idle']);
  });

  test('a reader slower than the network (the client\'s window closed) never starts a trial', () => {
    const { c, updates, run } = secondaryRig(null);
    run(0, 20_000, 250_000, { wait: 0.8 });
    assert.equal(c.route.state, 'idle');
    assert.deepEqual(updates, []);
    const pump = secondaryRig(null);
    pump.run(0, 5000, 2_500_000, { held: 0.5 });
    assert.equal(pump.c.route.state, 'idle', 'Braid\'s pump holding the destination side counts too');
  });

  test('a trial in which the secondary carries almost nothing ends in standby, and is not retried for a minute', () => {
    const { c, updates, run } = secondaryRig(null);
    let t = run(0, 1500, 250_000);
    assert.equal(c.route.state, 'trial', 'no capacity known yet: a paced stream gets its trial');
    t = run(t, SECONDARY.trialMs, 250_000, { sec: 0.01 });
    assert.equal(c.route.state, 'standby');
    t = run(t, SECONDARY.retryMs - 5000, 250_000);
    assert.equal(c.route.state, 'standby');
    assert.deepEqual(updates, ['active', 'standby']);
  });

  test('a use path running well below the peak seen on it is not saturated', () => {
    const { c, run } = secondaryRig(2_500_000);
    run(0, 10_000, 250_000, { pathBps: 250_000 });
    assert.equal(c.route.state, 'idle');
  });

  test('it looks only at the connections whose route has secondary paths, and forgets them when they close', () => {
    const tracker = new ConnectionTracker(10);
    const route = (secondary: string[]) => ({ rule: null, via: 'wlan0', note: null, secondary, use: ['wlan0'], token: 1, state: null });
    const a = tracker.open({ address: '127.0.0.1', port: 1 })!;
    const b = tracker.open({ address: '127.0.0.1', port: 2 })!;
    tracker.open({ address: '127.0.0.1', port: 3 });
    const listed = (): number[] => [...tracker.withSecondaryPaths()].map((c) => c.id);
    a.route = route(['wwan0']);
    b.route = route([]);
    assert.deepEqual(listed(), [a.id]);
    b.route = route(['wwan0']);
    a.route = null;
    assert.deepEqual(listed(), [b.id]);
    b.close();
    assert.deepEqual(listed(), []);
    assert.equal(tracker.size, 2);
  });

  test('its timer runs only while some connection has secondary paths', () => {
    const tracker = new ConnectionTracker(10);
    const ctl = new SecondaryController({
      tracker: () => tracker, meter: { measure: () => null, current: () => 0 }, sink: () => null, pathsOf: () => [], read: () => null,
    });
    ctl.start();
    try {
      assert.equal(ctl.running, false, 'no connection with secondary paths: no timer');
      const a = tracker.open({ address: '127.0.0.1', port: 1 })!;
      a.route = { rule: null, via: 'wlan0', note: null, secondary: ['wwan0'], use: ['wlan0'], token: 1, state: 'idle' };
      assert.equal(ctl.running, true);
      a.close();
      assert.equal(ctl.running, false, 'the last one closed');
    } finally {
      ctl.stop();
    }
    assert.equal(tracker.listenerCount('secondary'), 0, 'stop() lets go of the tracker');
  });
});

// ---- Braid's path manager against a stand-in kernel -------------------------------------------

function pmRig() {
  const calls: string[] = [];
  let fail: { op: string; err: Error & { code?: string } } | null = null;
  const api: SubflowApi = {
    create: (o) => { if (fail?.op === 'create') throw fail.err; calls.push(`create ${o.localAddress} id ${o.localId}${o.backup ? ' backup' : ''}`); },
    destroy: (o) => void calls.push(`destroy ${o.localAddress}:${o.localPort}`),
    priority: (o) => void calls.push(`${o.backup ? 'backup' : 'carry'} ${o.localAddress}`),
  };
  let paths: PathInfo[] = [P('wlan0', 'use', 1), P('wwan0', 'use', 2)];
  const log = { info() {}, warn() {}, debug() {} };
  const pm = new UserspacePm({ api, paths: () => paths, maxSubflows: () => 8, log, foreignGraceMs: 20 });
  const ev = (e: Record<string, unknown>): void => pm.onEvent(e as unknown as PmEvent);
  const created = (token: number, over: Record<string, unknown> = {}): void =>
    ev({ type: 'created', token, family: 4, saddr: '10.0.1.1', sport: 40001, daddr: '192.0.2.1', dport: 8080, ...over });
  return { pm, calls, ev, created, setPaths: (p: PathInfo[]) => (paths = p), failNext: (op: string, code: string, message: string) => (fail = { op, err: Object.assign(new Error(message), { code }) }) };
}

describe('userspace path manager', () => {
  test('another program\'s connection gets the interface policies a moment after it is established; Braid\'s own at once', async () => {
    const { pm, calls, ev, created } = pmRig();
    created(1);
    ev({ type: 'established', token: 1, family: 4, saddr: '10.0.1.1', sport: 40001, daddr: '192.0.2.1', dport: 8080 });
    assert.deepEqual(calls, [], 'a foreign connection waits for a wish on its way');
    await new Promise((r) => setTimeout(r, 60));
    assert.deepEqual(calls, ['create 10.0.2.1 id 1']);
    pm.register(2, wish({ allowed: new Map([['wlan0', 'allowed']]) }));
    created(2);
    ev({ type: 'established', token: 2, family: 4, saddr: '10.0.1.1', sport: 40002, daddr: '192.0.2.1', dport: 8080 });
    assert.deepEqual(calls, ['create 10.0.2.1 id 1'], 'a rule allowing wlan0 only: nothing more');
  });

  test('a subflow that fails is not retried at once; one that comes up is recorded', () => {
    const { calls, ev, created, pm } = pmRig();
    pm.register(3, wish());
    created(3);
    ev({ type: 'established', token: 3, family: 4, saddr: '10.0.1.1', sport: 40001, daddr: '192.0.2.1', dport: 8080 });
    ev({ type: 'sub_closed', token: 3, family: 4, saddr: '10.0.2.1', sport: 0, daddr: '192.0.2.1', dport: 8080, ifname: 'wwan0', error: 111 });
    assert.deepEqual(calls, ['create 10.0.2.1 id 1']);
    pm.refresh();
    assert.deepEqual(calls, ['create 10.0.2.1 id 1'], 'backing off');
    assert.equal(pm.view(3)?.subflows.length, 1);
  });

  test('a connection the kernel path manager owns (created before the switch) is given up on, quietly', () => {
    const { calls, ev, created, pm, failNext } = pmRig();
    failNext('create', 'EINVAL', 'mptcp_pm.subflow_create EINVAL: userspace PM not selected');
    pm.register(4, wish());
    created(4);
    ev({ type: 'established', token: 4, family: 4, saddr: '10.0.1.1', sport: 40001, daddr: '192.0.2.1', dport: 8080 });
    assert.match(pm.view(4)?.unmanageable ?? '', /not selected/);
    pm.refresh();
    assert.deepEqual(calls, []);
  });

  test('connections this host accepted open nothing', () => {
    const { calls, ev, created } = pmRig();
    created(5, { serverSide: true });
    ev({ type: 'established', token: 5, family: 4, saddr: '10.0.1.1', sport: 8080, daddr: '192.0.2.1', dport: 40000, serverSide: true });
    assert.deepEqual(calls, []);
  });
});

describe('net.mptcp.path_manager', () => {
  const fakeSysctl = (value: string, avail = 'kernel userspace'): string => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-pmsysctl-'));
    fs.writeFileSync(path.join(dir, 'path_manager'), value);
    fs.writeFileSync(path.join(dir, 'available_path_managers'), avail);
    return dir;
  };

  test('taken with a record written first; put back on release; an administrator\'s or mptcpd\'s choice is left alone', () => {
    const dir = fakeSysctl('kernel');
    const state = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-pmstate-'));
    const file = path.join(state, 'guardian', 'mptcp-path-manager-test.json');
    const s = new PathManagerSysctl(file, { dir });
    s.take();
    assert.equal(currentPathManager(dir), 'userspace');
    const rec = JSON.parse(fs.readFileSync(file, 'utf8')) as { kind: string; original: string; set: string; pid: number };
    assert.deepEqual([rec.kind, rec.original, rec.set, rec.pid], ['mptcp-path-manager', 'kernel', 'userspace', process.pid]);
    s.release();
    assert.equal(currentPathManager(dir), 'kernel');
    assert.equal(fs.existsSync(file), false);

    const other = fakeSysctl('userspace');
    assert.throws(() => new PathManagerSysctl(path.join(state, 'x.json'), { dir: other }).take(), (e: { code?: string }) => e.code === 'EEXIST');
    assert.equal(currentPathManager(other), 'userspace');
    const old = fakeSysctl('kernel', 'kernel');
    assert.throws(() => new PathManagerSysctl(null, { dir: old }).take(), (e: { code?: string; message: string }) => e.code === 'ENOTSUP' && /only the path managers 'kernel'/.test(e.message));

    // Changed by someone else meanwhile: noticed, and not overwritten on release.
    const s2 = new PathManagerSysctl(path.join(state, 'y.json'), { dir });
    s2.take();
    fs.writeFileSync(path.join(dir, 'path_manager'), 'kernel');
    assert.equal(s2.stillOurs(), false);
    fs.writeFileSync(path.join(dir, 'path_manager'), 'userspace');
    s2.forget();
    assert.equal(currentPathManager(dir), 'userspace');
  });
});

test('path meter: a peak decays by time, the same whether ticks come every 0.5 s or every 2 s (an idle engine)', () => {
  const tickAt = (t: number, bps: number) => ({ t, paths: [{ path: 'wlan0', upBps: 0, downBps: bps, rttUs: null, totalUp: 0, totalDown: 0, subflows: 0 }], connections: 0, totalUp: 0, totalDown: 0, system: { mptcpSockets: null, sampleUs: 0 } });
  const peakAfter = (spacingMs: number): number => {
    const m = new PathMeter();
    m.feed(tickAt(0, 1_000_000));
    for (let t = spacingMs; t <= 300_000; t += spacingMs) m.feed(tickAt(t, 0));
    return m.measure('wlan0')!.peakBps!;
  };
  const fast = peakAfter(500);
  const slow = peakAfter(2000);
  assert.ok(fast > 450_000 && fast < 550_000, `about halved in 5 minutes: ${fast}`);
  assert.ok(Math.abs(slow - fast) / fast < 0.001, `2 s ticks ${slow} vs 0.5 s ticks ${fast}`);
});
