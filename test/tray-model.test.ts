/**
 * The tray menu model (pure, no Electron): the status line with human rates, toggles that show the
 * real state and ask for the opposite, the per-interface policy submenu, disabled states.
 */
import assert from 'node:assert/strict';
import { describe, mock, test } from 'node:test';
import type { InterfaceView, PathSample, StatsTick, StatusView } from '../electron/core/contract';
import { formatRate, wrapText } from '../electron/core/desktop/format';
import { toMenuTemplate } from '../electron/core/desktop/menu-template';
import { throttle } from '../electron/core/desktop/throttle';
import { findItem, statusLine, trayModel, type MenuAction, type MenuItemModel } from '../electron/core/desktop/tray-model';

const NOW = 1_700_000_000_000;

function iface(name: string, over: Partial<InterfaceView> = {}): InterfaceView {
  return {
    name, kind: 'wifi', up: true, addresses: [{ address: '192.168.1.20', family: 4, prefixlen: 24 }], defaultRoute: false, ssid: null, signal: null,
    policy: 'use', policyExplicit: false, effective: over.effective ?? over.policy ?? 'use', demotion: null, state: 'active', endpoints: [], note: null, ...over,
  };
}

function status(over: { running?: boolean; dial?: 'mptcp' | 'tcp'; managed?: boolean; reason?: string | null; interfaces?: InterfaceView[]; sp?: Partial<StatusView['systemProxy']>; relay?: StatusView['relay']; tp?: Partial<StatusView['transparent']> } = {}): StatusView {
  const running = over.running ?? true;
  return {
    version: '0.1.0',
    pid: 1,
    proxy: { running, listen: running ? '127.0.0.1:1080' : null, dial: over.dial ?? 'mptcp', mptcp: { supported: true, reason: null } },
    relay: over.relay ?? null,
    paths: { managed: over.managed ?? true, reason: over.reason ?? null, manager: 'userspace', managerNote: null, rules: [], interfaces: over.interfaces ?? [iface('wlan0'), iface('wwan0', { kind: 'cellular', policy: 'backup', state: 'backup' })], foreign: [], limits: null },
    connections: { active: 0, total: 0 },
    systemProxy: { enabled: false, backend: 'gnome', error: null, ...over.sp },
    systemChanges: [],
    transparent: { enabled: false, active: false, via: null, listen: null, bypass: [], blockQuic: true, scopes: 0, error: null, ...over.tp },
  };
}

function sample(path: string, upBps: number, downBps: number, subflows = 1): PathSample {
  return { path, upBps, downBps, rttUs: 20_000, totalUp: 0, totalDown: 0, subflows };
}

function tick(paths: PathSample[], t = NOW - 500): StatsTick {
  return { t, paths, connections: 1, totalUp: 0, totalDown: 0, system: { mptcpSockets: null } };
}

const item = (items: MenuItemModel[], id: string): MenuItemModel => {
  const it = findItem(items, id);
  assert.ok(it, `menu item ${id}`);
  return it;
};

describe('rates', () => {
  test('bytes per second are shown as bits per second with SI prefixes and three figures at most', () => {
    assert.equal(formatRate(0), '0 bit/s');
    assert.equal(formatRate(100), '800 bit/s');
    assert.equal(formatRate(125), '1.0 kbit/s');
    assert.equal(formatRate(1_537_500), '12.3 Mbit/s');
    assert.equal(formatRate(512_500), '4.1 Mbit/s');
    assert.equal(formatRate(15_000_000), '120 Mbit/s');
    assert.equal(formatRate(1.5e9), '12.0 Gbit/s');
  });

  test('a value that rounds up to 1000 moves to the next unit instead of showing "1000"', () => {
    assert.equal(formatRate(124_999), '1.0 Mbit/s');
    assert.equal(formatRate(124.99), '1.0 kbit/s');
  });

  test('nonsense (negative, NaN, infinite) shows as zero rather than as garbage', () => {
    assert.equal(formatRate(-5), '0 bit/s');
    assert.equal(formatRate(Number.NaN), '0 bit/s');
    assert.equal(formatRate(Number.POSITIVE_INFINITY), '0 bit/s');
  });

  test('long reasons are wrapped for menu lines, with an ellipsis past the last line', () => {
    const lines = wrapText('path management needs CAP_NET_ADMIN: run braid paths daemon as root or give the binary the capability with setcap', 30, 3);
    assert.equal(lines.length, 3);
    for (const l of lines) assert.ok(l.length <= 30, l);
    assert.ok(lines[2].endsWith('…'));
    assert.deepEqual(wrapText('short', 30, 3), ['short']);
  });
});

describe('status line', () => {
  test('on, with the active paths and their rates, fastest first', () => {
    const t = tick([sample('wwan0', 12_500, 500_000), sample('wlan0', 37_500, 1_500_000), sample('eth0', 0, 0, 0)]);
    assert.equal(statusLine(status(), t, { now: NOW }), 'Braid on — wlan0 12.3 Mbit/s · wwan0 4.1 Mbit/s');
  });

  test('off when the proxy is not running, whatever the last tick says', () => {
    assert.equal(statusLine(status({ running: false }), tick([sample('wlan0', 1000, 1000)]), { now: NOW }), 'Braid off');
  });

  test('idle with no tick, a stale tick, or no path carrying anything', () => {
    assert.equal(statusLine(status(), null, { now: NOW }), 'Braid on — idle');
    assert.equal(statusLine(status(), tick([sample('wlan0', 1000, 1000)], NOW - 60_000), { now: NOW }), 'Braid on — idle');
    assert.equal(statusLine(status(), tick([sample('wlan0', 0, 0, 0)]), { now: NOW }), 'Braid on — idle');
  });

  test('a path that holds subflows but is quiet this second still counts as active', () => {
    assert.equal(statusLine(status(), tick([sample('eth0', 0, 0, 2)]), { now: NOW }), 'Braid on — eth0 0 bit/s');
  });

  test('more paths than fit are summarised', () => {
    const t = tick([sample('a0', 4000, 0), sample('b0', 3000, 0), sample('c0', 2000, 0), sample('d0', 1000, 0)]);
    assert.equal(statusLine(status(), t, { now: NOW, maxPaths: 2 }), 'Braid on — a0 32.0 kbit/s · b0 24.0 kbit/s · +2 more');
  });

  test('says so when connections go out as plain TCP', () => {
    assert.equal(statusLine(status({ dial: 'tcp' }), null, { now: NOW }), 'Braid on (plain TCP) — idle');
  });
});

describe('tray model', () => {
  test('the first item opens the window (a left click on many StatusNotifier hosts only opens the menu)', () => {
    for (const s of [status(), status({ running: false }), status({ relay: { host: 'r', port: 1, name: null, pin: 'x', state: 'error', error: 'e' } })]) {
      const first = trayModel(s, null, { now: NOW, busy: true, launchAtLogin: true }).items[0];
      assert.deepEqual([first.id, first.label, first.type, first.enabled, first.action], ['open-window', 'Open Braid', 'normal', true, 'open-window']);
    }
    const ran: MenuAction[] = [];
    toMenuTemplate(trayModel(status(), null), (a) => ran.push(a))[0].click!();
    assert.deepEqual(ran, ['open-window']);
  });

  test('then the status, not clickable, which is also the tooltip', () => {
    const m = trayModel(status(), tick([sample('wlan0', 37_500, 1_500_000)]), { now: NOW });
    assert.equal(m.items[1].id, 'status');
    assert.equal(m.items[1].enabled, false);
    assert.equal(m.items[1].label, 'Braid on — wlan0 12.3 Mbit/s');
    assert.equal(m.tooltip, m.items[1].label);
    assert.equal(m.icon, 'on');
    assert.deepEqual(m.problems, []);
    assert.equal(item(m.items, 'status.listen').label, 'SOCKS5 + HTTP on 127.0.0.1:1080');
  });

  test('the proxy toggle shows the real state and asks for the opposite', () => {
    const on = item(trayModel(status({ running: true }), null, { now: NOW }).items, 'proxy');
    assert.equal(on.type, 'checkbox');
    assert.equal(on.checked, true);
    assert.deepEqual(on.action, { command: 'proxy.stop', params: {} });
    const offModel = trayModel(status({ running: false }), null, { now: NOW });
    const off = item(offModel.items, 'proxy');
    assert.equal(off.checked, false);
    assert.deepEqual(off.action, { command: 'proxy.start', params: {} });
    assert.equal(offModel.icon, 'off');
    assert.equal(findItem(offModel.items, 'status.listen'), null);
  });

  test('the system proxy toggle shows the real state and asks for the opposite', () => {
    const off = item(trayModel(status(), null).items, 'system-proxy');
    assert.equal(off.checked, false);
    assert.equal(off.enabled, true);
    assert.deepEqual(off.action, { command: 'systemProxy.set', params: { enabled: true } });
    const on = item(trayModel(status({ sp: { enabled: true } }), null).items, 'system-proxy');
    assert.equal(on.checked, true);
    assert.deepEqual(on.action, { command: 'systemProxy.set', params: { enabled: false } });
  });

  test('"All apps" shows whether transparent mode is in effect, asks for the opposite, and shows why it is not', () => {
    const off = item(trayModel(status(), null).items, 'all-apps');
    assert.equal(off.label, 'All apps');
    assert.equal(off.checked, false);
    assert.deepEqual(off.action, { command: 'transparent.set', params: { enabled: true } });
    const on = item(trayModel(status({ tp: { enabled: true, active: true } }), null).items, 'all-apps');
    assert.equal(on.checked, true);
    assert.deepEqual(on.action, { command: 'transparent.set', params: { enabled: false } });
    // Asked for but not in effect (no privileges): not shown as on, and the reason is there.
    const m = trayModel(status({ tp: { enabled: true, active: false, error: 'transparent mode needs CAP_NET_ADMIN' } }), null);
    assert.equal(item(m.items, 'all-apps').checked, false);
    assert.match(item(m.items, 'all-apps.error.0').label, /needs CAP_NET_ADMIN/);
    assert.equal(item(trayModel(status({ running: false }), null).items, 'all-apps').enabled, false, 'not while the proxy is off');
  });

  test('no system proxy backend: the toggle is disabled and the reason is shown', () => {
    const m = trayModel(status({ sp: { backend: null, error: 'no way to set the system proxy on this desktop (tried gnome, kde)' } }), null);
    const sp = item(m.items, 'system-proxy');
    assert.equal(sp.enabled, false);
    assert.match(sp.label, /not available/);
    assert.match(item(m.items, 'system-proxy.error.0').label, /no way to set the system proxy/);
    assert.equal(m.icon, 'on', 'a desktop without a backend is not a warning state');
  });

  test('a failed system proxy change shows its error and a warning icon', () => {
    const m = trayModel(status({ sp: { enabled: false, backend: 'gnome', error: 'gsettings failed: exit 1' } }), null);
    assert.equal(item(m.items, 'system-proxy').enabled, true);
    assert.equal(item(m.items, 'system-proxy.error.0').label, 'gsettings failed: exit 1');
    assert.equal(m.icon, 'warning');
  });

  test('the policy submenu has one radio group per interface with the current policy checked', () => {
    const m = trayModel(status({ interfaces: [iface('wlan0', { ssid: 'Home' }), iface('wwan0', { kind: 'cellular', policy: 'backup', state: 'backup' })] }), null);
    const paths = item(m.items, 'paths');
    assert.equal(paths.type, 'submenu');
    assert.equal(paths.label, 'Paths');
    const wlan = item(paths.submenu!, 'paths.wlan0');
    assert.equal(wlan.label, 'wlan0 (wifi “Home”) — in use');
    assert.deepEqual(wlan.submenu!.map((i) => [i.type, i.checked, i.enabled]), [['radio', true, true], ['radio', false, true], ['radio', false, true], ['radio', false, true]]);
    assert.deepEqual(item(m.items, 'paths.wlan0.secondary').action, { command: 'paths.setPolicy', params: { interface: 'wlan0', policy: 'secondary' } });
    const wwan = item(paths.submenu!, 'paths.wwan0');
    assert.deepEqual(wwan.submenu!.filter((i) => i.checked).map((i) => i.id), ['paths.wwan0.backup']);
    assert.deepEqual(item(m.items, 'paths.wwan0.off').action, { command: 'paths.setPolicy', params: { interface: 'wwan0', policy: 'off' } });
  });

  test('without path management the policies are disabled and the reason is given in short lines', () => {
    const reason = 'path management needs CAP_NET_ADMIN (run `braid paths daemon` as root, or setcap cap_net_admin+ep on the binary) and it was not granted';
    const m = trayModel(status({ managed: false, reason }), null);
    const paths = item(m.items, 'paths');
    assert.equal(paths.label, 'Paths (not managed)');
    const reasonLines = paths.submenu!.filter((i) => i.id.startsWith('paths.reason.') && i.type === 'normal');
    assert.ok(reasonLines.length >= 2);
    for (const l of reasonLines) {
      assert.equal(l.enabled, false);
      assert.ok(l.label.length <= 60, l.label);
    }
    assert.match(reasonLines.map((l) => l.label).join(' '), /CAP_NET_ADMIN/);
    for (const r of item(m.items, 'paths.wlan0').submenu!) assert.equal(r.enabled, false, r.id);
  });

  test('path management off entirely (no interfaces): only the reason', () => {
    const m = trayModel(status({ managed: false, reason: 'path management is off (braid up --paths off, or no native addon)', interfaces: [] }), null);
    const sub = item(m.items, 'paths').submenu!;
    assert.ok(sub.every((i) => i.enabled === false));
    assert.match(sub[0].label, /path management is off/);
  });

  test('an interface whose endpoints belong to another program cannot be changed', () => {
    const m = trayModel(status({ interfaces: [iface('eth0', { kind: 'ethernet', state: 'managed-elsewhere' })] }), null);
    const sub = item(m.items, 'paths.eth0').submenu!;
    assert.match(sub[0].label, /another program/);
    for (const r of sub.filter((i) => i.type === 'radio')) assert.equal(r.enabled, false);
  });

  test('while a toggle is under way the toggles and policies are disabled; open and quit stay', () => {
    const m = trayModel(status(), null, { busy: true });
    assert.equal(item(m.items, 'proxy').enabled, false);
    assert.equal(item(m.items, 'system-proxy').enabled, false);
    assert.equal(item(m.items, 'paths.wlan0.use').enabled, false);
    assert.equal(item(m.items, 'open-window').enabled, true);
    assert.equal(item(m.items, 'quit').enabled, true);
  });

  test('launch at login appears only where supported, checked as set', () => {
    assert.equal(findItem(trayModel(status(), null, { launchAtLogin: null }).items, 'launch-at-login'), null);
    const on = item(trayModel(status(), null, { launchAtLogin: true }).items, 'launch-at-login');
    assert.equal(on.checked, true);
    assert.deepEqual(on.action, { setting: 'launchAtLogin', value: false });
  });

  test('quit is the last item, open the first, each once', () => {
    const items = trayModel(status(), null).items;
    assert.deepEqual(items.slice(-1).map((i) => [i.id, i.action]), [['quit', 'quit']]);
    assert.equal(items.filter((i) => i.action === 'open-window').length, 1);
  });

  test('a relay in error is shown under the status and turns the icon to the problem one', () => {
    const m = trayModel(status({ relay: { host: 'relay.example', port: 8443, name: null, pin: 'x', state: 'error', error: 'TLS pin mismatch' } }), null);
    assert.equal(item(m.items, 'status.problem.0.0').label, '⚠ Relay relay.example: TLS pin mismatch');
    assert.equal(item(m.items, 'status.problem.0.0').enabled, false);
    assert.equal(m.icon, 'warning');
    assert.match(m.tooltip, /\n⚠ Relay relay\.example: TLS pin mismatch$/);
  });

  test('ids are unique across the whole tree (Electron looks items up by id)', () => {
    const ids: string[] = [];
    const walk = (items: MenuItemModel[]): void => items.forEach((i) => (ids.push(i.id), i.submenu && walk(i.submenu)));
    walk(trayModel(status({ managed: false, reason: 'x', sp: { error: 'y' } }), null, { launchAtLogin: false }).items);
    assert.equal(new Set(ids).size, ids.length);
  });
});

describe('tray icon: on, off, problem', () => {
  const relayError: StatusView['relay'] = { host: 'relay.example', port: 8443, name: null, pin: 'x', state: 'error', error: 'unreachable' };
  const cases: { what: string; s: StatusView; icon: 'on' | 'off' | 'warning'; problem?: RegExp }[] = [
    { what: 'running, nothing wrong', s: status(), icon: 'on' },
    { what: 'stopped', s: status({ running: false }), icon: 'off' },
    { what: 'stopped, whatever else is wrong', s: status({ running: false, relay: relayError, sp: { error: 'x' } }), icon: 'off' },
    { what: 'relay unreachable', s: status({ relay: relayError }), icon: 'warning', problem: /^Relay relay\.example: unreachable$/ },
    { what: 'system proxy change failed', s: status({ sp: { error: 'gsettings failed' } }), icon: 'warning', problem: /^System proxy: gsettings failed$/ },
    { what: 'no desktop backend (not a problem)', s: status({ sp: { backend: null, error: 'no way to set the system proxy' } }), icon: 'on' },
    {
      what: 'no MPTCP in this kernel',
      s: { ...status(), proxy: { running: true, listen: '127.0.0.1:1080', dial: 'tcp', mptcp: { supported: false, reason: 'net.mptcp.enabled is 0' } } },
      icon: 'warning', problem: /^No multipath: net\.mptcp\.enabled is 0; one path, plain TCP$/,
    },
    {
      what: 'every link down or without an address',
      s: status({ interfaces: [iface('wlan0', { up: false, state: 'down' }), iface('eth0', { kind: 'ethernet', addresses: [], state: 'no-address' })] }),
      icon: 'warning', problem: /^No network link is up$/,
    },
    { what: 'one link down, another up', s: status({ interfaces: [iface('wlan0', { up: false, state: 'down' }), iface('eth0', { kind: 'ethernet' })] }), icon: 'on' },
  ];
  for (const c of cases) {
    test(c.what, () => {
      const m = trayModel(c.s, null, { now: NOW });
      assert.equal(m.icon, c.icon);
      if (c.problem) {
        assert.equal(m.problems.length, 1, m.problems.join(' | '));
        assert.match(m.problems[0], c.problem);
        assert.ok(m.tooltip.includes(`⚠ ${m.problems[0]}`), m.tooltip);
      } else assert.deepEqual(m.problems, []);
    });
  }
});

describe('menu template', () => {
  test('carries labels, types, checked state and clicks that run the item\'s action', () => {
    const model = trayModel(status(), null, { launchAtLogin: false });
    const ran: MenuAction[] = [];
    const tpl = toMenuTemplate(model, (a) => ran.push(a));
    assert.equal(tpl.length, model.items.length);
    const proxy = tpl.find((i) => i.id === 'proxy')!;
    assert.equal(proxy.type, 'checkbox');
    assert.equal(proxy.checked, true);
    proxy.click!();
    const sep = tpl.find((i) => i.type === 'separator')!;
    assert.equal(sep.label, undefined);
    assert.equal(sep.click, undefined);
    const radio = tpl.find((i) => i.id === 'paths')!.submenu!.find((i) => i.id === 'paths.wlan0')!.submenu!.find((i) => i.id === 'paths.wlan0.backup')!;
    radio.click!();
    assert.equal(tpl.find((i) => i.id === 'status')!.click, undefined);
    assert.deepEqual(ran, [{ command: 'proxy.stop', params: {} }, { command: 'paths.setPolicy', params: { interface: 'wlan0', policy: 'backup' } }]);
  });
});

describe('throttle', () => {
  test('runs at once, then at most once per interval with one trailing call', () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    try {
      let now = 0;
      let calls = 0;
      const t = throttle(() => calls++, 1000, { now: () => now });
      t();
      assert.equal(calls, 1);
      for (let i = 0; i < 10; i++) t();
      assert.equal(calls, 1);
      now = 999;
      mock.timers.tick(999);
      assert.equal(calls, 1);
      now = 1000;
      mock.timers.tick(1);
      assert.equal(calls, 2);
      now = 5000;
      t();
      assert.equal(calls, 3);
      t();
      t.cancel();
      mock.timers.tick(2000);
      assert.equal(calls, 3, 'cancel drops the pending trailing call');
    } finally {
      mock.timers.reset();
    }
  });
});
