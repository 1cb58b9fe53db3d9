// Path management without a kernel: the reconciler's pure plan(), interface classification from
// sysfs facts, the Reconciler against an in-memory endpoint table (limits, crash recovery, a step
// the kernel refuses), and `braid paths set` input validation (it only writes a config file).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { classify, type SysfsFacts } from '../electron/core/paths/kinds';
import { plan, Reconciler, type DesiredEndpoint, type EndpointApi, type OwnedEndpoint } from '../electron/core/paths/reconcile';
import { defaultPathsConfig, type PathsConfig } from '../electron/core/paths/policy';
import type { InterfaceState } from '../electron/core/paths/inventory';
import { ENDPOINT_FLAGS, flagNames, type PmEndpoint, type PmLimits } from '../electron/core/native/netlink';
import { runBraid } from './helpers/proc';
import { PathManager } from '../electron/core/paths/manager';

const ep = (id: number, address: string, ifindex: number, flags: ('subflow' | 'backup' | 'signal')[] = ['subflow']): PmEndpoint => {
  const bits = flags.reduce((b, f) => b | ENDPOINT_FLAGS[f], 0);
  return { id, family: address.includes(':') ? 6 : 4, address, port: 0, flags: bits, flagNames: flagNames(bits), ifindex, ifname: null };
};
const want = (address: string, ifindex: number, backup = false): DesiredEndpoint => ({ address, ifindex, ifname: `if${ifindex}`, backup });
const owned = (...list: OwnedEndpoint[]): Map<string, OwnedEndpoint> => new Map(list.map((o) => [o.address, o]));

describe('plan()', () => {
  test('a new address is added; an owned one that still fits is left alone', () => {
    const o = { id: 1, address: '10.0.0.1', ifindex: 2, backup: false };
    const p = plan([want('10.0.0.1', 2), want('10.0.1.1', 3, true)], [ep(1, '10.0.0.1', 2)], owned(o));
    assert.deepEqual(p.steps, [{ op: 'add', want: want('10.0.1.1', 3, true) }]);
    assert.deepEqual(p.forget, []);
    assert.deepEqual(p.elsewhere, []);
  });

  test('a foreign endpoint on a wanted address: reported elsewhere, nothing added or removed', () => {
    const foreign = ep(7, '10.0.0.1', 2, ['signal']);
    const p = plan([want('10.0.0.1', 2)], [foreign], owned());
    assert.deepEqual(p.steps, []);
    assert.deepEqual(p.elsewhere, [foreign]);
  });

  test('a foreign endpoint on an address we do not want is not touched', () => {
    const p = plan([], [ep(7, '10.9.9.9', 4)], owned());
    assert.deepEqual(p, { steps: [], forget: [], elsewhere: [] });
  });

  test('an address that moved to another interface: remove, then add on the new one', () => {
    const o = { id: 3, address: '10.0.0.1', ifindex: 2, backup: false };
    const p = plan([want('10.0.0.1', 5)], [ep(3, '10.0.0.1', 2)], owned(o));
    assert.equal(p.steps.length, 2, JSON.stringify(p.steps));
    assert.deepEqual(p.steps[0], { op: 'remove', owned: o, why: 'address moved to another interface' });
    assert.deepEqual(p.steps[1], { op: 'add', want: want('10.0.0.1', 5) });
    assert.deepEqual(p.elsewhere, []);
  });

  test('policy use <-> backup: set-backup in place, no remove/add', () => {
    const o = { id: 4, address: 'fd00::1', ifindex: 2, backup: false };
    const p = plan([want('fd00::1', 2, true)], [ep(4, 'fd00::1', 2)], owned(o));
    assert.deepEqual(p.steps, [{ op: 'set-backup', owned: o, backup: true }]);
    const back = plan([want('fd00::1', 2, false)], [ep(4, 'fd00::1', 2, ['subflow', 'backup'])], owned({ ...o, backup: true }));
    assert.deepEqual(back.steps, [{ op: 'set-backup', owned: { ...o, backup: true }, backup: false }]);
  });

  test('an owned endpoint removed by someone else is forgotten, not removed again', () => {
    const o = { id: 5, address: '10.0.0.1', ifindex: 2, backup: false };
    const p = plan([], [], owned(o));
    assert.deepEqual(p.forget, [o]);
    assert.deepEqual(p.steps, []);
    // the kernel reused the id for someone else's address: still not ours
    const reused = ep(5, '10.0.0.99', 3);
    const p2 = plan([], [reused], owned(o));
    assert.deepEqual(p2.forget, [o]);
    assert.deepEqual(p2.steps, []);
  });

  test('address gone or policy off: the owned endpoint is removed', () => {
    const o = { id: 6, address: '10.0.0.1', ifindex: 2, backup: true };
    const p = plan([], [ep(6, '10.0.0.1', 2, ['subflow', 'backup'])], owned(o));
    assert.deepEqual(p.steps, [{ op: 'remove', owned: o, why: 'address gone or policy off' }]);
  });
});

describe('classify()', () => {
  const facts = (f: Partial<SysfsFacts> = {}): SysfsFacts => ({ devtype: null, wireless: false, hasDevice: false, usbDriver: false, ...f });
  const cases: Array<[string, SysfsFacts, string]> = [
    ['wlp2s0', facts({ devtype: 'wlan', hasDevice: true }), 'wifi'],
    ['foo0', facts({ devtype: 'wlan' }), 'wifi'],                          // DEVTYPE decides, not the name
    ['wlan0', facts({ wireless: true, hasDevice: true }), 'wifi'],
    ['wwan0', facts({ devtype: 'wwan', hasDevice: true }), 'cellular'],
    ['wwan0', facts({ hasDevice: true }), 'cellular'],
    ['rmnet_data0', facts(), 'cellular'],
    ['usb0', facts({ hasDevice: true, usbDriver: true }), 'cellular'],
    ['enx0a1b2c3d4e5f', facts({ hasDevice: true, usbDriver: true }), 'cellular'],
    ['enx0a1b2c3d4e5f', facts({ hasDevice: true }), 'ethernet'],          // not behind USB: a plain NIC
    ['eth0', facts({ hasDevice: true }), 'ethernet'],
    ['enp3s0', facts({ hasDevice: true }), 'ethernet'],
    ['veth1a2b', facts({ devtype: null }), 'other'],
    ['link1', facts(), 'other'],
    ['br0', facts({ devtype: 'bridge' }), 'other'],
    ['eth0', facts({ devtype: 'vlan' }), 'other'],                        // a VLAN named eth0, no device
  ];
  for (const [name, f, kind] of cases) {
    test(`${name} ${JSON.stringify(f)} -> ${kind}`, () => assert.equal(classify(name, f), kind));
  }
});

/** An in-memory mptcp_pm: ids from 1, duplicate addresses refused like the kernel. */
class FakeKernel implements EndpointApi {
  endpoints: PmEndpoint[] = [];
  limits: PmLimits = { subflows: 2, addAddrAccepted: 0 };
  private nextId = 1;
  failAdd = new Set<string>();
  calls: string[] = [];
  listEndpoints(): PmEndpoint[] { return this.endpoints.map((e) => ({ ...e })); }
  addEndpoint(o: { address: string; flags: ('subflow' | 'backup')[]; ifindex: number }): number {
    this.calls.push(`add ${o.address}`);
    if (this.failAdd.has(o.address)) throw Object.assign(new Error(`refused ${o.address}`), { code: 'EINVAL' });
    if (this.endpoints.some((e) => e.address === o.address)) throw Object.assign(new Error('exists'), { code: 'EEXIST' });
    const id = this.nextId++;
    this.endpoints.push(ep(id, o.address, o.ifindex, o.flags));
    return id;
  }
  removeEndpoint(s: { id: number; address: string }): void {
    this.calls.push(`remove ${s.address}`);
    const i = this.endpoints.findIndex((e) => e.id === s.id);
    if (i < 0) throw Object.assign(new Error('no such endpoint'), { code: 'ENOENT' });
    this.endpoints.splice(i, 1);
  }
  setEndpointFlags(s: { id: number; address: string }, flags: ('subflow' | 'backup')[]): void {
    this.calls.push(`flags ${s.address} ${flags.join(',')}`);
    const e = this.endpoints.find((x) => x.id === s.id)!;
    Object.assign(e, ep(e.id, e.address, e.ifindex, flags));
  }
  getLimits(): PmLimits { return { ...this.limits }; }
  setLimits(l: Partial<PmLimits>): PmLimits {
    this.calls.push(`limits ${JSON.stringify(l)}`);
    this.limits = { ...this.limits, ...l };
    return { ...this.limits };
  }
}

const iface = (name: string, ifindex: number, addresses: string[], up = true): InterfaceState => ({
  name, ifindex, kind: 'other', up, mac: null, linkKind: 'veth', defaultRoute: false, ssid: null, signal: null,
  addresses: addresses.map((a) => ({ address: a, family: a.includes(':') ? 6 : 4, prefixlen: 24 })),
});
const cfgWith = (interfaces: PathsConfig['interfaces']): PathsConfig => ({ ...defaultPathsConfig(), interfaces });

describe('Reconciler against an in-memory kernel', () => {
  const stateFile = (): string => path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'braid-rec-')), 'paths-owned.json');

  test('limits are raised to the number of subflow endpoints and put back at cleanup', () => {
    const k = new FakeKernel();
    const r = new Reconciler(k, null);
    const rep = r.apply([iface('a', 2, ['10.0.0.1']), iface('b', 3, ['10.0.1.1', '10.0.2.1'])], cfgWith({ a: 'use', b: 'backup' }));
    assert.equal(rep.error, null);
    assert.deepEqual(k.limits, { subflows: 3, addAddrAccepted: 3 });
    assert.deepEqual(rep.limits, { subflows: 3, addAddrAccepted: 3 });
    r.cleanup();
    assert.deepEqual(k.endpoints, []);
    assert.deepEqual(k.limits, { subflows: 2, addAddrAccepted: 0 });
  });

  test('limits already high enough are left alone; limits someone changed meanwhile are not undone', () => {
    const k = new FakeKernel();
    k.limits = { subflows: 8, addAddrAccepted: 8 };
    const r = new Reconciler(k, null);
    r.apply([iface('a', 2, ['10.0.0.1'])], cfgWith({ a: 'use' }));
    assert.ok(!k.calls.some((c) => c.startsWith('limits')), k.calls.join('; '));
    r.cleanup();
    assert.deepEqual(k.limits, { subflows: 8, addAddrAccepted: 8 });

    const k2 = new FakeKernel();
    const r2 = new Reconciler(k2, null);
    r2.apply([iface('a', 2, ['10.0.0.1', '10.0.1.1', '10.0.2.1'])], cfgWith({ a: 'use' }));
    k2.limits = { subflows: 6, addAddrAccepted: 5 };  // an admin's `ip mptcp limits set`
    r2.cleanup();
    assert.deepEqual(k2.limits, { subflows: 6, addAddrAccepted: 5 });
  });

  test('maxSubflows caps what is asked of the kernel', () => {
    const k = new FakeKernel();
    const r = new Reconciler(k, null);
    r.apply([iface('a', 2, ['10.0.0.1', '10.0.1.1', '10.0.2.1', '10.0.3.1'])], { ...cfgWith({ a: 'use' }), maxSubflows: 3 });
    assert.deepEqual(k.limits, { subflows: 3, addAddrAccepted: 3 });
  });

  test('after a crash the next run adopts its endpoints and limits from the state file, never foreign ones', () => {
    const file = stateFile();
    const k = new FakeKernel();
    k.endpoints.push(ep(200, '10.9.9.9', 9, ['signal']));
    const first = new Reconciler(k, file);
    first.apply([iface('a', 2, ['10.0.0.1', '10.0.1.1', '10.0.2.1'])], cfgWith({ a: 'use' }));
    assert.deepEqual(k.limits, { subflows: 3, addAddrAccepted: 3 });   // the foreign one is 'signal' only
    // (first is never cleaned up: the process died)
    const second = new Reconciler(k, file);
    assert.deepEqual([...second.owned.keys()].sort(), ['10.0.0.1', '10.0.1.1', '10.0.2.1']);
    const rep = second.apply([iface('a', 2, ['10.0.0.1', '10.0.1.1', '10.0.2.1'])], cfgWith({ a: 'use' }));
    assert.deepEqual(rep.added, [], 'adopted endpoints were added again');
    second.cleanup();
    assert.deepEqual(k.endpoints.map((e) => e.id), [200]);
    assert.deepEqual(k.limits, { subflows: 2, addAddrAccepted: 0 });
    // Nothing of ours is left: the record goes too (a stale one would make a guardian act).
    assert.equal(fs.existsSync(file), false);
  });

  test('a record whose id now holds another address is not adopted', () => {
    const file = stateFile();
    fs.writeFileSync(file, JSON.stringify({ owned: [{ id: 1, address: '10.0.0.1', ifindex: 2, backup: false }], originalLimits: null, raisedTo: null }));
    const k = new FakeKernel();
    k.endpoints.push(ep(1, '10.0.0.77', 2));
    const r = new Reconciler(k, file);
    assert.equal(r.owned.size, 0);
    r.cleanup();
    assert.deepEqual(k.endpoints.map((e) => e.address), ['10.0.0.77']);
  });

  test('one address the kernel refuses does not hold back the others', () => {
    const k = new FakeKernel();
    k.failAdd.add('10.0.0.1');
    const r = new Reconciler(k, null);
    const rep = r.apply([iface('a', 2, ['10.0.0.1', '10.0.1.1'])], cfgWith({ a: 'use' }));
    assert.equal(rep.error?.code, 'EINVAL');
    assert.deepEqual(k.endpoints.map((e) => e.address), ['10.0.1.1']);
    assert.deepEqual(rep.added.map((o) => o.address), ['10.0.1.1']);
  });
});

describe('braid paths set', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-paths-set-'));
  process.once('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'config.json');

  test('a bad policy: exit 2, the message names it and the choices, the file is untouched', async () => {
    fs.writeFileSync(file, JSON.stringify({ paths: { interfaces: { wlan0: 'use' } } }));
    const before = fs.readFileSync(file, 'utf8');
    const r = await runBraid(['paths', 'set', 'wlan0', 'sometimes', '--config', file], { timeoutMs: 15_000 });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /'sometimes'/);
    assert.match(r.stderr, /use, secondary, backup, off/);
    assert.equal(fs.readFileSync(file, 'utf8'), before);
  });

  test('missing arguments and a bad interface name: exit 2 with a reason', async () => {
    const r = await runBraid(['paths', 'set', 'wlan0', '--config', file], { timeoutMs: 15_000 });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /usage: braid paths set IFACE use\|secondary\|backup\|off/);
    const bad = await runBraid(['paths', 'set', 'not/an/iface', 'use', '--config', file], { timeoutMs: 15_000 });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /paths\.interfaces\.not\/an\/iface/);
  });

  test('a good policy is saved next to the rest of the file', async () => {
    fs.writeFileSync(file, JSON.stringify({ proxy: { port: 1234 }, paths: { interfaces: { wlan0: 'use' } } }));
    const r = await runBraid(['paths', 'set', 'wwan0', 'backup', '--config', file], { timeoutMs: 15_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(fs.readFileSync(file, 'utf8')), { proxy: { port: 1234 }, paths: { interfaces: { wlan0: 'use', wwan0: 'backup' } } });
  });
});

describe('PathManager after stop()', () => {
  test('a late policy change or reconcile adds nothing after the cleanup (it once re-added endpoints during shutdown)', async () => {
    const k = new FakeKernel();
    const log = { info() {}, warn() {}, debug() {} };
    // A policy that wants an endpoint on every interface this host has, loopback aside.
    const m = new PathManager({ config: () => ({ ...defaultPathsConfig(), enabled: true }), api: k, log, stateDir: null, debounceMs: 10 });
    m.start();
    m.stop();
    assert.deepEqual(k.endpoints, [], 'stop() removes what start() added');
    const before = k.calls.length;
    m.board.emit('changed');
    assert.equal(m.reconcileNow(), null);
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(k.calls.slice(before), [], 'nothing touched the endpoints after stop()');
    assert.deepEqual(k.endpoints, []);
  });
});
