/**
 * The doctor's reasoning without a network: how findings are drawn from probe results (a path's
 * fault told from the relay's, joins only blamed where they were really tested), the live
 * connections, the kernel's limits, the probe budget that never trips the kernel's blackhole
 * detection, the speed summary, the text report, the tray, and the command line's usage errors.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { describe, test } from 'node:test';
import { validateConfig } from '../electron/core/config/schema';
import { COMMANDS, type ConnectionView, type DoctorReport, type StatusView, type SubflowView } from '../electron/core/contract';
import { trayModel } from '../electron/core/desktop/tray-model';
import { exitStatus, Findings, reportOk, summarize } from '../electron/core/doctor/findings';
import { formatReport, groupFindings } from '../electron/core/doctor/format';
import type { PathCandidate, Target } from '../electron/core/doctor/interfaces';
import { kernelFindings, mptcpProbeBudgetMs, type KernelReadings } from '../electron/core/doctor/kernel';
import { liveFindings } from '../electron/core/doctor/live';
import { pathFindings } from '../electron/core/doctor/path-findings';
import type { PathProbe } from '../electron/core/doctor/probe';
import { parseTarget } from '../electron/core/doctor/run';
import { speedSummary } from '../electron/core/doctor/speed';
import type { PmEndpoint } from '../electron/core/native/netlink';

const CLI = path.resolve(__dirname, '..', 'electron', 'core', 'cli', 'main.js');
const TARGET: Target = { host: '203.0.113.5', port: 8443, addresses: ['203.0.113.5'], label: 'the relay 203.0.113.5:8443', isRelay: true };

function endpoint(id: number, address: string, ifindex: number, flags: string[] = ['subflow']): PmEndpoint {
  return { id, family: 4, address, port: 0, flags: 0, flagNames: flags as PmEndpoint['flagNames'], ifindex, ifname: null };
}

function cand(name: string, ifindex: number, over: Partial<PathCandidate> = {}): PathCandidate {
  const address = `192.168.${ifindex}.2`;
  return {
    iface: { name, ifindex, kind: 'ethernet', up: true, mac: null, linkKind: null, addresses: [{ address, family: 4, prefixlen: 24 }], defaultRoute: false, ssid: null, signal: null },
    policy: 'use', policyExplicit: false, address, targetAddress: TARGET.addresses[0], endpoints: [endpoint(ifindex, address, ifindex)],
    primary: false, usable: true, route: true, routeVia: `192.168.${ifindex}.1`, note: null, ...over,
  };
}

function probe(name: string, over: Partial<PathProbe> = {}): PathProbe {
  return { name, tcp: { ok: true, ms: 20 }, mptcp: { kind: 'mptcp', ms: 20 }, tls: { ok: true, pinOk: true, pin: 'p' }, joined: new Set(), joinTested: true, ...over };
}

const noJoins = { synTx: 0, synAckRx: 0 };
const get = (f: Findings, check: string, subject: string | null) => f.get(check, subject);

describe('paths: a path\'s fault is told from the relay\'s', () => {
  test('one path falls back while the other does MPTCP: that path strips MPTCP, the other is fine', () => {
    const cands = [cand('wlan0', 3, { primary: true }), cand('usb0', 4)];
    const probes = [probe('wlan0', { mptcp: { kind: 'fallback', ms: 20 }, joinTested: false }), probe('usb0', { joined: new Set() })];
    const f = new Findings();
    pathFindings(cands, probes, TARGET, f, noJoins, 8);
    const strip = get(f, 'path.mptcp', 'wlan0')!;
    assert.equal(strip.status, 'fail');
    assert.match(strip.message, /A middlebox on wlan0 strips MPTCP/);
    assert.match(strip.message, /every connection starts on it/);
    // The fix carries the first subflow over the path where MPTCP works, with its real gateway.
    assert.match(strip.fix!, /sudo ip route add 203\.0\.113\.5 via 192\.168\.4\.1 dev usb0 metric 10/);
    assert.deepEqual(f.list.filter((x) => x.subject === 'usb0' && x.status !== 'ok'), []);
  });

  test('every path falls back: the relay is suspected, not each path alone', () => {
    const cands = [cand('wlan0', 3, { primary: true }), cand('usb0', 4)];
    const probes = ['wlan0', 'usb0'].map((n) => probe(n, { mptcp: { kind: 'fallback', ms: 20 }, joinTested: false }));
    const f = new Findings();
    pathFindings(cands, probes, TARGET, f, noJoins, 8);
    assert.match(get(f, 'path.mptcp', 'usb0')!.message, /the relay does not speak MPTCP/);
  });

  test('joins: blamed only on a path that was expected to join a connection that really started elsewhere', () => {
    const cands = [cand('wlan0', 3, { primary: true }), cand('usb0', 4), cand('wwan0', 5, { endpoints: [] })];
    const probes = [probe('wlan0', { joined: new Set(['wwan0']) }), probe('usb0'), probe('wwan0')];
    const f = new Findings();
    pathFindings(cands, probes, TARGET, f, { synTx: 3, synAckRx: 1 }, 8);
    const usb = get(f, 'path.join', 'usb0')!;
    assert.equal(usb.status, 'fail');
    assert.match(usb.message, /usb0 blocks MP_JOIN: an MPTCP handshake over usb0 gets through/);
    assert.match(usb.message, /sent 3 MP_JOIN SYNs during the test and got 1 answer/);
    assert.match(usb.fix!, /MP_JOIN cannot cross usb0's network/);
    // wwan0 has no subflow endpoint: nothing was expected of it (its endpoint finding says why).
    assert.equal(get(f, 'path.join', 'wwan0'), undefined);
    // wlan0's own joins were tested by the connection started on usb0, which nothing joined either.
    assert.equal(get(f, 'path.join', 'wlan0')?.status, 'fail');
  });

  test('joins: not blamed with a subflow limit of 0, nor past the limit, nor over a path without a route', () => {
    const cands = [cand('wlan0', 3, { primary: true }), cand('usb0', 4), cand('eth1', 6, { route: false })];
    const probes = [probe('wlan0', { joined: new Set() }), probe('usb0'), probe('eth1', { tcp: { ok: false, code: 'ETIMEDOUT' } })];
    let f = new Findings();
    pathFindings(cands, probes, TARGET, f, noJoins, 0);
    assert.deepEqual(f.list.filter((x) => x.check === 'path.join'), []);
    f = new Findings();
    pathFindings(cands, [probe('wlan0', { joined: new Set(['usb0']) }), probe('usb0', { joined: new Set(['wlan0']) })], TARGET, f, noJoins, 1);
    assert.deepEqual(f.list.filter((x) => x.check === 'path.join' && x.status !== 'ok'), []);
    assert.equal(get(f, 'path.join', 'eth1'), undefined);
  });

  test('a dropped MPTCP handshake, a wrong pin, a slow path', () => {
    const cands = [cand('wlan0', 3, { primary: true }), cand('usb0', 4)];
    const probes = [
      probe('wlan0', { tcp: { ok: true, ms: 20 } }),
      probe('usb0', { tcp: { ok: true, ms: 180 }, mptcp: { kind: 'dropped', waitedMs: 2500 }, tls: { ok: true, pinOk: false, pin: 'x' }, joinTested: false }),
    ];
    const f = new Findings();
    pathFindings(cands, probes, TARGET, f, noJoins, 8);
    assert.match(get(f, 'path.mptcp', 'usb0')!.message, /MPTCP SYNs are dropped on usb0/);
    assert.match(get(f, 'path.join', 'usb0')!.message, /usb0 blocks MP_JOIN: its MPTCP SYNs, joins included, are dropped/);
    assert.equal(get(f, 'path.tls', 'usb0')!.status, 'fail');
    assert.equal(get(f, 'path.rtt', 'usb0')!.status, 'warn');
    assert.match(get(f, 'path.rtt', 'usb0')!.message, /9× the fastest path's/);
  });
});

describe('the kernel', () => {
  const readings = (over: Partial<KernelReadings> = {}): KernelReadings => ({
    enabled: '1', socketOk: true, socketReason: null, pathManager: 'kernel', limits: { subflows: 2, addAddrAccepted: 2 }, limitsError: null,
    blackholeTimeout: 3600, synRetrans: 2, ...over,
  });

  test('limits: 0 subflows with two usable paths fails with the command that raises them; enough is fine', () => {
    let f = new Findings();
    kernelFindings({ readings: readings({ limits: { subflows: 0, addAddrAccepted: 0 } }), usablePaths: 2, braidManagesLimits: false, braidIsPathManager: false }, f);
    const l = get(f, 'kernel.limits', null)!;
    assert.equal(l.status, 'fail');
    assert.match(l.message, /no connection may open a second subflow/);
    assert.match(l.fix!, /^sudo ip mptcp limits set subflows 1 add_addr_accepted 1/);
    f = new Findings();
    kernelFindings({ readings: readings({ limits: { subflows: 1, addAddrAccepted: 1 } }), usablePaths: 3, braidManagesLimits: false, braidIsPathManager: false }, f);
    assert.match(get(f, 'kernel.limits', null)!.message, /only 1 more subflow, so 1 of the 3 paths stay unused/);
    f = new Findings();
    kernelFindings({ readings: readings(), usablePaths: 3, braidManagesLimits: true, braidIsPathManager: false }, f);
    assert.equal(get(f, 'kernel.limits', null)!.status, 'ok');
  });

  test('Braid as the userspace path manager: the mode is fine, and the in-kernel limits are not judged', () => {
    const f = new Findings();
    kernelFindings({ readings: readings({ pathManager: 'userspace', limits: { subflows: 0, addAddrAccepted: 0 } }), usablePaths: 2, braidManagesLimits: true, braidIsPathManager: true }, f);
    assert.equal(get(f, 'kernel.pm', null)!.status, 'ok');
    assert.match(get(f, 'kernel.pm', null)!.message, /Braid is the path manager here/);
    assert.equal(get(f, 'kernel.limits', null)!.status, 'ok');
  });

  test('MPTCP off, and the userspace path manager with nobody to use it, fail', () => {
    const f = new Findings();
    kernelFindings({ readings: readings({ enabled: '0', socketOk: false, pathManager: 'userspace' }), usablePaths: 2, braidManagesLimits: false, braidIsPathManager: false }, f);
    assert.match(get(f, 'kernel.mptcp', null)!.fix!, /sysctl -w net\.mptcp\.enabled=1/);
    assert.equal(get(f, 'kernel.pm', null)!.status, 'fail');
  });

  test('the MPTCP probe gives up before the kernel would retry without MPTCP (and switch MPTCP off for an hour)', () => {
    // The retry without MPTCP comes after N SYN retransmissions: at 1 s, 3 s, 7 s … (2^N - 1 s).
    for (const n of [1, 2, 3, 4]) {
      const budget = mptcpProbeBudgetMs(n);
      assert.ok(budget < (2 ** n - 1) * 1000, `N=${n}: ${budget} ms`);
      assert.ok(budget >= 500);
    }
    assert.equal(mptcpProbeBudgetMs(null), 2500);
  });
});

function conn(id: number, transport: ConnectionView['transport'], ifaces: string[], destination = `example.org:${id}`): ConnectionView {
  const subflows: SubflowView[] = ifaces.map((i) => ({ localAddress: '192.0.2.1', remoteAddress: '203.0.113.5', interface: i, bytesSent: 1, bytesReceived: 1, rttUs: 1, backup: false }));
  return { id, client: '127.0.0.1:5000', program: null, protocol: 'socks5', destination, address: null, startedAt: 0, bytesUp: 0, bytesDown: 0, transport, paths: ifaces, subflows, route: null };
}

describe('live connections', () => {
  test('fallback without a relay: the destination does not speak MPTCP, and the fix is a relay', () => {
    const f = new Findings();
    liveFindings({ connections: [conn(1, 'fallback', []), conn(2, 'fallback', [])], relayInUse: false, dial: 'mptcp', cands: [cand('wlan0', 3, { primary: true }), cand('usb0', 4)] }, f);
    const fb = get(f, 'live.fallback', null)!;
    assert.equal(fb.status, 'fail');
    assert.match(fb.message, /2 connections fell back .* the destination does not speak MPTCP and there is no relay/);
    assert.match(fb.fix!, /braid relay/);
  });

  test('fallback through the relay is blamed on the path connections start on, when it strips', () => {
    const f = new Findings();
    f.fail('path.mptcp', 'wlan0', 'strips');
    liveFindings({ connections: [conn(1, 'fallback', [])], relayInUse: true, dial: 'mptcp', cands: [cand('wlan0', 3, { primary: true }), cand('usb0', 4)] }, f);
    assert.match(get(f, 'live.fallback', 'wlan0')!.message, /the path they start on, wlan0, strips MPTCP/);
  });

  test('fewer paths than available: named, with the failing finding that explains it', () => {
    const f = new Findings();
    f.fail('path.join', 'usb0', 'blocks joins');
    liveFindings({ connections: [conn(1, 'mptcp', ['wlan0']), conn(2, 'mptcp', ['wlan0', 'usb0'])], relayInUse: true, dial: 'mptcp', cands: [cand('wlan0', 3, { primary: true }), cand('usb0', 4)] }, f);
    const p = get(f, 'live.paths', null)!;
    assert.equal(p.status, 'warn');
    assert.match(p.message, /1 of 2 MPTCP connections use fewer paths than the 2 available \(example\.org:1\); missing: usb0 \(join fails/);
  });
});

describe('report', () => {
  const report = (statuses: ('ok' | 'warn' | 'fail')[]): DoctorReport => {
    const f = new Findings();
    statuses.forEach((s, i) => f.add(`path.x${i}`, i % 2 ? 'usb0' : null, s, `finding ${i}.`, s === 'ok' ? null : `fix ${i}`));
    return { ok: reportOk(f.list), findings: f.list, speed: null, startedAt: 1, finishedAt: 2 };
  };

  test('exit status: 0 with warnings only, 1 with any failure', () => {
    assert.equal(exitStatus(report(['ok', 'warn'])), 0);
    assert.equal(exitStatus(report(['ok', 'fail', 'warn'])), 1);
    const s = summarize(report(['ok', 'fail', 'fail']));
    assert.deepEqual([s.ok, s.failing, s.firstFailing?.message], [false, 2, 'finding 1.']);
  });

  test('the text report groups by path and shows each fix', () => {
    const text = formatReport(report(['ok', 'fail']));
    assert.match(text, /usb0\n {2}FAIL {2}finding 1\.\n {8}fix: fix 1/);
    assert.match(text, /1 problem keeps Braid from using every path\./);
    assert.deepEqual(groupFindings(report(['ok', 'fail']).findings).map((g) => g.title), ['general', 'usb0']);
  });

  test('the speed summary reads as the issue asks', () => {
    const paths = [{ path: 'wlan0', downMbit: 18.94, upMbit: null }, { path: 'usb0', downMbit: 19.01, upMbit: null }];
    assert.equal(speedSummary(paths, { downMbit: 37.2, upMbit: null }, 'down'), 'wlan0 18.9 + usb0 19.0 Mbit/s; together 37.2, 98 % of the sum');
    assert.equal(speedSummary(paths, { downMbit: 37.2, upMbit: null }, 'up'), null);
  });
});

describe('the tray names the first failing finding of the last diagnosis', () => {
  const base: StatusView = {
    version: '0.1.0', pid: 1,
    proxy: { running: true, listen: '127.0.0.1:1080', dial: 'mptcp', mptcp: { supported: true, reason: null } },
    relay: null, paths: { managed: true, reason: null, interfaces: [], foreign: [], limits: null, manager: 'kernel', managerNote: null, rules: [] }, connections: { active: 0, total: 0 },
    systemProxy: { enabled: false, backend: null, error: null }, systemChanges: [],
    transparent: { enabled: false, active: false, via: null, listen: null, bypass: [], blockQuic: true, scopes: 0, error: null },
  };

  test('a failing diagnosis: in the tooltip, with the warning icon; a clean one or none: nothing', () => {
    const first = { check: 'path.mptcp', subject: 'wlan0', status: 'fail' as const, message: 'A middlebox on wlan0 strips MPTCP: the answer came back without MP_CAPABLE. More.', fix: 'x' };
    const m = trayModel({ ...base, doctor: { at: 1, ok: false, failing: 2, firstFailing: first } }, null);
    assert.match(m.tooltip, /⚠ Diagnosis: A middlebox on wlan0 strips MPTCP: the answer came back without MP_CAPABLE\. \(\+1 more\)/);
    assert.equal(m.icon, 'warning');
    for (const doctor of [undefined, null, { at: 1, ok: true, failing: 0, firstFailing: null }]) {
      const clean = trayModel({ ...base, doctor }, null);
      assert.doesNotMatch(clean.tooltip, /Diagnosis/);
      assert.equal(clean.icon, 'on');
    }
  });
});

describe('input', () => {
  const cli = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
    new Promise((resolve) => execFile(process.execPath, [CLI, 'doctor', ...args], { timeout: 20_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr })));

  test('usage errors exit 2 with a message naming the flag', async () => {
    for (const [args, msg] of [
      [['--relay', 'http://x'], /--relay: relay link must start with braid:\/\//],
      [['--seconds', '0'], /--seconds must be a whole number from 1 to 10/],
      [['--seconds', '11'], /--seconds must be/],
      [['--portal-url', 'https://example.org/'], /--portal-url must be an http:\/\/ URL/],
      [['--speed-url', 'ftp://x/'], /--speed-url must be an http/],
      [['--target', 'a b'], /target must be HOST or HOST:PORT/],
      [['--bogus'], /unknown option --bogus/],
    ] as const) {
      const r = await cli([...args]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, msg);
      assert.equal(r.stdout, '');
    }
    const help = await cli(['--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /Exit status: 0 when nothing keeps Braid from using every path, 1 when something does, 2 for a usage error/);
  });

  test('targets: HOST, HOST:PORT, [V6]:PORT', () => {
    assert.deepEqual(parseTarget('example.org'), { host: 'example.org', port: 443 });
    assert.deepEqual(parseTarget('example.org:80'), { host: 'example.org', port: 80 });
    assert.deepEqual(parseTarget('[2001:db8::1]:8443'), { host: '2001:db8::1', port: 8443 });
  });

  test('the contract checks doctor.run parameters; the config checks doctor.portalUrl', () => {
    const check = COMMANDS['doctor.run'].params;
    assert.deepEqual(check({ speed: true, seconds: 3 }, ''), { speed: true, seconds: 3 });
    assert.throws(() => check({ seconds: 30 }, ''), { code: 'EBADPARAMS', message: /'seconds' must be from 1 to 10/ });
    assert.throws(() => check({ flood: true }, ''), { code: 'EBADPARAMS', message: /'flood' is not a known parameter/ });
    assert.throws(() => check({ speedUrl: 'file:///etc/passwd' }, ''), { code: 'EBADPARAMS' });
    assert.equal(validateConfig({ doctor: { portalUrl: 'http://portal.example/generate_204' } }).doctor.portalUrl, 'http://portal.example/generate_204');
    assert.equal(validateConfig({}).doctor.portalUrl, null);
    assert.throws(() => validateConfig({ doctor: { portalUrl: 'https://x/' } }), { code: 'ECONFIG', message: /doctor\.portalUrl' must be an http:\/\/ URL/ });
    assert.throws(() => validateConfig({ doctor: { portal: 'http://x/' } }), { code: 'ECONFIG', message: /doctor\.portal' is not a known setting/ });
  });
});
