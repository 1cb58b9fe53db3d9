/** Notifications from two snapshots of the paths: down, back, new, and what is not worth one. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { InterfaceView, PathsView } from '../electron/core/contract';
import { PathNotifier, pathNotifications } from '../electron/core/desktop/path-notifier';

function iface(name: string, over: Partial<InterfaceView> = {}): InterfaceView {
  return {
    name, kind: 'ethernet', up: true, addresses: [{ address: '10.0.0.2', family: 4, prefixlen: 24 }], defaultRoute: false, ssid: null, signal: null,
    policy: 'use', policyExplicit: false, effective: over.effective ?? over.policy ?? 'use', demotion: null, state: 'active', endpoints: [], note: null, ...over,
  };
}

const view = (...interfaces: InterfaceView[]): PathsView => ({ managed: true, reason: null, manager: 'userspace', managerNote: null, rules: [], interfaces, foreign: [], limits: null });

const wlan = (over: Partial<InterfaceView> = {}): InterfaceView =>
  iface('wlan0', { kind: 'wifi', ssid: 'Home', addresses: [{ address: 'fe80::1', family: 6, prefixlen: 64 }, { address: '192.168.1.20', family: 4, prefixlen: 24 }], ...over });
const wwan = (over: Partial<InterfaceView> = {}): InterfaceView =>
  iface('wwan0', { kind: 'cellular', policy: 'backup', state: 'backup', addresses: [{ address: '10.64.1.7', family: 4, prefixlen: 30 }], ...over });

describe('path notifications', () => {
  test('the first snapshot says nothing (everything is new at start)', () => {
    assert.deepEqual(pathNotifications(null, view(wlan(), wwan())), []);
  });

  test('nothing changed, nothing to say', () => {
    assert.deepEqual(pathNotifications(view(wlan(), wwan()), view(wlan(), wwan())), []);
  });

  test('an interface going down names the paths that remain', () => {
    const n = pathNotifications(view(wlan(), wwan()), view(wlan({ up: false, state: 'down' }), wwan()));
    assert.equal(n.length, 1);
    assert.equal(n[0].change, 'down');
    assert.equal(n[0].interface, 'wlan0');
    assert.equal(n[0].title, 'wlan0 is down');
    assert.equal(n[0].body, 'Wi-Fi “Home” path lost. Traffic continues over wwan0.');
  });

  test('losing its address counts as down; with nothing left it says so', () => {
    const n = pathNotifications(view(wlan()), view(wlan({ addresses: [], state: 'no-address' })));
    assert.equal(n.length, 1);
    assert.equal(n[0].body, 'Wi-Fi “Home” path lost. No other path is available.');
  });

  test('an interface that disappears altogether is down', () => {
    const n = pathNotifications(view(wlan(), wwan()), view(wlan()));
    assert.deepEqual(n.map((x) => [x.interface, x.change, x.title]), [['wwan0', 'down', 'wwan0 is down']]);
    assert.match(n[0].body, /^cellular path lost\. Traffic continues over wlan0\.$/);
  });

  test('coming back (up with an address) names the IPv4 address and a backup role', () => {
    const n = pathNotifications(view(wlan(), wwan({ up: false, addresses: [] })), view(wlan(), wwan()));
    assert.equal(n.length, 1);
    assert.equal(n[0].change, 'up');
    assert.equal(n[0].title, 'wwan0 is back');
    assert.equal(n[0].body, 'cellular (10.64.1.7) is available again as a backup path.');
    const w = pathNotifications(view(wlan({ up: false })), view(wlan()));
    assert.equal(w[0].body, 'Wi-Fi “Home” (192.168.1.20) is available again.', 'the IPv4 address is preferred over link-local IPv6');
  });

  test('up but still without an address is not back yet', () => {
    assert.deepEqual(pathNotifications(view(wlan({ up: false, addresses: [] })), view(wlan({ up: true, addresses: [] }))), []);
  });

  test('a new interface that arrives usable is "up"', () => {
    const n = pathNotifications(view(wlan()), view(wlan(), iface('usb0', { addresses: [{ address: '172.20.10.2', family: 4, prefixlen: 28 }] })));
    assert.deepEqual(n.map((x) => [x.title, x.change]), [['usb0 is up', 'up']]);
  });

  test('interfaces with policy off are not Braid paths and never notify', () => {
    const veth = (up: boolean): InterfaceView => iface('veth3', { kind: 'other', policy: 'off', state: 'off', up });
    assert.deepEqual(pathNotifications(view(wlan(), veth(true)), view(wlan(), veth(false))), []);
    assert.deepEqual(pathNotifications(view(wlan(), veth(false)), view(wlan(), veth(true))), []);
    assert.deepEqual(pathNotifications(view(wlan()), view(wlan(), veth(true))), []);
  });

  test('several changes at once give one notification each, in name order', () => {
    const n = pathNotifications(view(wlan(), wwan({ up: false })), view(wlan({ up: false }), wwan()));
    assert.deepEqual(n.map((x) => `${x.interface}:${x.change}`), ['wlan0:down', 'wwan0:up']);
    assert.match(n[0].body, /continues over wwan0/);
  });

  test('PathNotifier remembers the previous snapshot between events', () => {
    const p = new PathNotifier(view(wlan(), wwan()));
    assert.deepEqual(p.update(view(wlan(), wwan())), []);
    assert.deepEqual(p.update(view(wlan({ up: false }), wwan())).map((x) => x.title), ['wlan0 is down']);
    assert.deepEqual(p.update(view(wlan({ up: false }), wwan())), [], 'still down: no repeat');
    assert.deepEqual(p.update(view(wlan(), wwan())).map((x) => x.title), ['wlan0 is back']);
    assert.deepEqual(new PathNotifier().update(view(wlan())), [], 'no initial snapshot: the first update is the baseline');
  });
});
