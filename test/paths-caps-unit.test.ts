/**
 * Data caps, usage counting, path quality and per-program totals without a kernel: the stats
 * engine driven with a real ConnectionTracker and made-up subflow reads, fake clocks, a temporary
 * state directory. The namespace tests (paths-caps.test.ts, paths-quality.test.ts) show the same
 * on real links; these pin the rules: periods, persistence, the latch and its lifting, the
 * hysteresis, what a closing connection or a vanished subflow leaves behind.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CapController, capPeriod, formatCap, parseCap, parseSize, type DataCap } from '../electron/core/paths/caps';
import { PolicyBoard } from '../electron/core/paths/effective';
import { defaultPathsConfig, type PathsConfig } from '../electron/core/paths/policy';
import { QualityJudge } from '../electron/core/paths/quality';
import { dayKey, HISTORY_DAYS, UsageMeter, usageFile } from '../electron/core/paths/usage';
import { validateConfig } from '../electron/core/config/schema';
import type { MptcpInfo, SubflowInfo } from '../electron/core/native/mptcp';
import { ConnectionTracker, type TrackedConnection } from '../electron/core/proxy/tracker';
import { StatsEngine } from '../electron/core/stats/engine';
import type { InterfaceView, PathsView } from '../electron/core/contract';
import { PathNotifier } from '../electron/core/desktop/path-notifier';

const silent = { info() {}, warn() {}, debug() {} };
const MB = 1_000_000;
const tmp = (): string => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-caps-unit-'));
  process.once('exit', () => fs.rmSync(d, { recursive: true, force: true }));
  return d;
};
const local = (y: number, m: number, d: number, h = 12): number => new Date(y, m - 1, d, h).getTime();

function sf(p: string, n: number, o: Partial<SubflowInfo> = {}): SubflowInfo {
  return {
    id: n, localAddress: `10.0.${n}.1`, localPort: 40000 + n, remoteAddress: '192.0.2.1', remotePort: 443, family: 4, interface: p,
    bytesSent: 0, bytesAcked: 0, bytesReceived: 0, rttUs: 20_000, rttVarUs: 2000, rcvRttUs: 20_000, bytesRetrans: 0,
    backup: false, backupKnown: false, state: 1, ...o,
  };
}

describe('sizes, caps and periods', () => {
  test('sizes and caps parse as people write them, and bad ones are refused', () => {
    assert.equal(parseSize('500MB'), 500 * MB);
    assert.equal(parseSize('2 GB'), 2e9);
    assert.equal(parseSize('1.5GiB'), 1.5 * 1024 ** 3);
    assert.deepEqual(parseCap('2GB/month'), { bytes: 2e9, period: 'month' });
    assert.deepEqual(parseCap('10MB/Day'), { bytes: 10 * MB, period: 'day' });
    for (const bad of ['10 parsecs/day', '0MB/day', 'MB/day', '10MB/week', '10MB', '-5MB/day']) assert.throws(() => parseCap(bad), Error, bad);
    assert.equal(formatCap({ bytes: 10 * MB, period: 'day' }), '10 MB/day');
  });

  test('a day is the local calendar day; a month runs from its reset day, on the last day of a shorter month', () => {
    assert.deepEqual(capPeriod({ period: 'day', resetDay: 1 }, local(2026, 11, 30, 23)), { from: '2026-11-30', until: '2026-12-01' });
    assert.deepEqual(capPeriod({ period: 'month', resetDay: 1 }, local(2026, 11, 30)), { from: '2026-11-01', until: '2026-12-01' });
    assert.deepEqual(capPeriod({ period: 'month', resetDay: 15 }, local(2026, 11, 14)), { from: '2026-10-15', until: '2026-11-15' });
    assert.deepEqual(capPeriod({ period: 'month', resetDay: 15 }, local(2026, 11, 15)), { from: '2026-11-15', until: '2026-12-15' });
    assert.deepEqual(capPeriod({ period: 'month', resetDay: 31 }, local(2027, 2, 28)), { from: '2027-02-28', until: '2027-03-31' });
    assert.deepEqual(capPeriod({ period: 'month', resetDay: 31 }, local(2027, 2, 27)), { from: '2027-01-31', until: '2027-02-28' });
    assert.deepEqual(capPeriod({ period: 'month', resetDay: 5 }, local(2027, 1, 3)), { from: '2026-12-05', until: '2027-01-05' });
  });

  test('the config checks caps and quality, naming the field', () => {
    const c = validateConfig({ paths: { caps: { wwan0: { bytes: 2e9, period: 'month', resetDay: 7 } }, quality: { rttMs: 300 } } });
    assert.deepEqual(c.paths.caps.wwan0, { bytes: 2e9, period: 'month', resetDay: 7, atCap: 'off' });
    assert.deepEqual(c.paths.quality, { enabled: true, rttMs: 300, retransPercent: 10 });
    assert.throws(() => validateConfig({ paths: { caps: { wwan0: { bytes: 1, period: 'week' } } } }), /paths\.caps\.wwan0\.period/);
    assert.throws(() => validateConfig({ paths: { caps: { wwan0: { bytes: 1, period: 'day', atCap: 'slow' } } } }), /paths\.caps\.wwan0\.atCap/);
    assert.throws(() => validateConfig({ paths: { caps: { wwan0: { bytes: -1, period: 'day' } } } }), /paths\.caps\.wwan0\.bytes/);
    assert.throws(() => validateConfig({ paths: { quality: { rttMs: 1 } } }), /paths\.quality\.rttMs/);
    assert.throws(() => validateConfig({ paths: { quality: { often: true } } }), /paths\.quality\.often/);
  });
});

describe('usage per interface per day', () => {
  test('deltas and residuals add up per day, survive a save and a load, and a new day starts from zero', () => {
    const dir = tmp();
    let now = local(2026, 11, 30, 10);
    const m = new UsageMeter({ file: usageFile(dir), log: silent, now: () => now });
    m.subflow('wwan0', sf('wwan0', 1), 1000, 5000);
    m.residual('wwan0', 0, 700);
    m.subflow('wlan0', sf('wlan0', 2), 0, 100);
    m.tick(now, 0.5);
    m.save();
    const again = new UsageMeter({ file: usageFile(dir), log: silent, now: () => now });
    assert.deepEqual(again.between('wwan0', '2026-11-30', '2026-11-30'), { up: 1000, down: 5700 });
    assert.deepEqual(again.between('wlan0', '2026-11-30', '2026-11-30'), { up: 0, down: 100 });
    now = local(2026, 12, 1, 0);
    again.subflow('wwan0', sf('wwan0', 1), 0, 10);
    again.tick(now, 0.5);
    assert.deepEqual(again.between('wwan0', '2026-12-01', '2026-12-01'), { up: 0, down: 10 });
    assert.deepEqual(again.between('wwan0', '2026-11-01', '2026-12-01'), { up: 1000, down: 5710 });
    // The file is written whole or not at all: no temporary file is left.
    assert.deepEqual(fs.readdirSync(dir), ['paths-usage.json']);
  });

  test('history is bounded to two months of days', () => {
    let now = local(2026, 1, 1);
    const m = new UsageMeter({ file: null, log: silent, now: () => now });
    for (let d = 0; d < 100; d++) {
      now = local(2026, 1, 1 + d);
      m.residual('wwan0', 1, 1);
      m.tick(now, 0.5);
    }
    const h = m.history();
    assert.equal(h.length, HISTORY_DAYS);
    assert.equal(h[h.length - 1]!.day, dayKey(now));
  });

  test('a damaged file is set aside, not overwritten, and counting starts again', () => {
    const dir = tmp();
    fs.writeFileSync(usageFile(dir), '{"version":1,"days":');
    const warnings: string[] = [];
    const m = new UsageMeter({ file: usageFile(dir), log: { ...silent, warn: (s: string) => void warnings.push(s) } });
    assert.equal(m.history().length, 0);
    assert.match(warnings[0] ?? '', /not readable .* moved to/);
    assert.equal(fs.readdirSync(dir).filter((f) => f.startsWith('paths-usage.json.bad-')).length, 1);
  });
});

describe('caps through the policy board', () => {
  const setup = (caps: Record<string, DataCap>, file: string | null = null, start = local(2026, 11, 30, 10)) => {
    const clock = { now: start };
    const usage = new UsageMeter({ file, log: silent, now: () => clock.now });
    const cfg: PathsConfig = { ...defaultPathsConfig(), caps, interfaces: { wwan0: 'use' } };
    const board = new PolicyBoard(() => cfg);
    const caps$ = new CapController({ usage, board, caps: () => cfg.caps });
    const events: string[] = [];
    caps$.on('reached', (s) => events.push(`reached ${s.iface}`));
    caps$.on('lifted', (s) => events.push(`lifted ${s.iface}`));
    const feed = (bytes: number) => {
      usage.residual('wwan0', 0, bytes);
      usage.tick(clock.now, 0.5);
    };
    const eff = () => board.policyOf({ name: 'wwan0', kind: 'cellular' });
    return { clock, usage, cfg, board, caps: caps$, events, feed, eff };
  };
  const tenPerDay: DataCap = { bytes: 10 * MB, period: 'day', resetDay: 1, atCap: 'off' };

  test('a path is demoted before its rate would carry it past the cap: backup while it drains, then off, until the next day', async () => {
    const s = setup({ wwan0: tenPerDay });
    s.cfg.interfaces.wwan0 = 'use';
    for (let i = 0; i < 6; i++) s.feed(1.25 * MB); // 7.5 MB at 2.5 MB/s: 7.5 + 1.5 s x 2.5 MB/s reaches 10 MB
    assert.equal(s.eff().policy, 'backup', 'drains as backup first');
    assert.match(s.eff().demotion!.reason, /^wwan0 reached its cap 10 MB\/day \(off until 2026-12-01\)$/);
    assert.deepEqual(s.events, ['reached wwan0']);
    await new Promise((r) => setTimeout(r, 1100));
    s.feed(0);
    assert.equal(s.eff().policy, 'off');
    // Its traffic stopped, its rate fell: it stays off (the cap is latched for the period).
    for (let i = 0; i < 4; i++) s.feed(0);
    assert.equal(s.eff().policy, 'off');
    s.clock.now = local(2026, 12, 1, 0);
    s.feed(0);
    assert.equal(s.eff().policy, 'use');
    assert.deepEqual(s.events, ['reached wwan0', 'lifted wwan0']);
  });

  test('without traffic a path under its cap is not demoted; raising or removing the cap lifts a reached one', () => {
    const s = setup({ wwan0: { ...tenPerDay, atCap: 'backup' } });
    s.cfg.interfaces.wwan0 = 'use';
    for (let i = 0; i < 5; i++) s.feed(1 * MB); // 2 MB/s: 5 MB + 1.5 s of it stays under 10 MB
    assert.equal(s.eff().policy, 'use');
    for (let i = 0; i < 4; i++) s.feed(0);
    assert.equal(s.eff().policy, 'use');
    s.feed(5 * MB);
    assert.equal(s.eff().policy, 'backup');
    assert.equal(s.eff().demotion?.source, 'cap');
    s.feed(0);
    s.feed(0); // demoted, it carries nothing more
    s.cfg.caps = { wwan0: { ...tenPerDay, bytes: 20 * MB, atCap: 'backup' } };
    s.caps.evaluate();
    assert.equal(s.eff().policy, 'use', 'a higher cap lifts it');
    s.cfg.caps = { wwan0: { ...tenPerDay, bytes: 1 * MB } };
    s.caps.evaluate();
    assert.equal(s.eff().policy, 'backup');
    s.cfg.caps = {};
    s.caps.evaluate();
    assert.equal(s.eff().demotion, null, 'no cap, no demotion');
  });

  test('a reached cap is remembered across a restart within the period, without a second notice', () => {
    const dir = tmp();
    const a = setup({ wwan0: { ...tenPerDay, atCap: 'backup' } }, usageFile(dir));
    a.feed(11 * MB);
    assert.equal(a.eff().policy, 'backup');
    a.usage.save();
    const b = setup({ wwan0: { ...tenPerDay, atCap: 'backup' } }, usageFile(dir));
    b.feed(0);
    assert.equal(b.eff().policy, 'backup');
    assert.equal(b.eff().demotion?.source, 'cap');
    assert.deepEqual(b.events, []);
    const c = setup({ wwan0: { ...tenPerDay, atCap: 'backup' } }, usageFile(dir), local(2026, 12, 1, 9));
    c.feed(0);
    assert.equal(c.eff().policy, 'use', 'the next day it is back to its policy');
    assert.equal(c.eff().demotion, null);
  });
});

describe('path quality', () => {
  const setup = (paths: string[]) => {
    const clock = { now: 1_000_000 };
    const cfg: PathsConfig = { ...defaultPathsConfig(), interfaces: Object.fromEntries(paths.map((p) => [p, 'use' as const])) };
    const board = new PolicyBoard(() => cfg);
    const judge = new QualityJudge({ board, config: () => cfg.quality, isUse: (p) => board.policyOf({ name: p, kind: 'wifi' }).configured === 'use', now: () => clock.now });
    /** One tick: each path receives `bytes` at `rtt` ms (0 bytes: no traffic). */
    const tick = (per: Record<string, { bytes: number; rttMs: number; sent?: number; retrans?: number }>) => {
      for (const [p, v] of Object.entries(per)) {
        const n = paths.indexOf(p) + 1;
        const marks = ((tick as unknown as { sums: Record<string, { sent: number; retrans: number }> }).sums ??= {});
        const m = (marks[p] ??= { sent: 0, retrans: 0 });
        m.sent += v.sent ?? 0;
        m.retrans += v.retrans ?? 0;
        judge.subflow(p, sf(p, n, { rcvRttUs: v.rttMs * 1000, rttUs: 5000, bytesSent: m.sent, bytesRetrans: m.retrans }), v.sent ?? 0, v.bytes);
      }
      judge.tick();
      clock.now += 500;
    };
    const eff = (p: string) => board.policyOf({ name: p, kind: 'wifi' });
    return { clock, cfg, board, judge, tick, eff };
  };

  test('RTT 200 ms above the other path: demoted after two ticks, the reason says why; back on probation after the hold, for good when it measures well', () => {
    const s = setup(['wlan0', 'wwan0']);
    for (let i = 0; i < 4; i++) s.tick({ wlan0: { bytes: MB, rttMs: 20 }, wwan0: { bytes: MB, rttMs: 25 } });
    assert.equal(s.eff('wwan0').policy, 'use');
    s.tick({ wlan0: { bytes: MB, rttMs: 20 }, wwan0: { bytes: MB, rttMs: 220 } });
    assert.equal(s.eff('wwan0').policy, 'use', 'one bad tick is not enough');
    s.tick({ wlan0: { bytes: MB, rttMs: 20 }, wwan0: { bytes: MB, rttMs: 225 } });
    assert.equal(s.eff('wwan0').policy, 'backup');
    assert.equal(s.eff('wwan0').demotion!.reason, 'wwan0 demoted: RTT 225 ms (best other path 20 ms)');
    assert.equal(s.judge.of('wwan0')!.demoted, true);
    // Demoted, it carries nothing: no samples, and none needed to stay demoted during the hold.
    for (let i = 0; i < 15; i++) s.tick({ wlan0: { bytes: MB, rttMs: 20 } });
    assert.equal(s.eff('wwan0').policy, 'backup');
    s.tick({ wlan0: { bytes: MB, rttMs: 20 } });
    assert.equal(s.eff('wwan0').policy, 'use', 'probation after 8 s');
    for (let i = 0; i < 4; i++) s.tick({ wlan0: { bytes: MB, rttMs: 20 }, wwan0: { bytes: MB, rttMs: 22 } });
    assert.equal(s.eff('wwan0').policy, 'use');
  });

  test('a relapse right after probation doubles the hold', () => {
    const s = setup(['wlan0', 'wwan0']);
    const bad = () => s.tick({ wlan0: { bytes: MB, rttMs: 20 }, wwan0: { bytes: MB, rttMs: 400 } });
    bad();
    bad();
    assert.equal(s.eff('wwan0').policy, 'backup');
    let n = 0;
    while (s.eff('wwan0').policy === 'backup' && n < 100) (n++, s.tick({ wlan0: { bytes: MB, rttMs: 20 } }));
    assert.equal(n, 16, '8 s of 500 ms ticks');
    bad();
    bad();
    assert.equal(s.eff('wwan0').policy, 'backup');
    n = 0;
    while (s.eff('wwan0').policy === 'backup' && n < 100) (n++, s.tick({ wlan0: { bytes: MB, rttMs: 20 } }));
    assert.equal(n, 32, '16 s the second time');
  });

  test('no traffic, no judgement; no other path, no demotion; a little traffic is not a sample', () => {
    const s = setup(['wlan0', 'wwan0']);
    for (let i = 0; i < 10; i++) s.tick({ wlan0: { bytes: MB, rttMs: 20 } });
    assert.equal(s.eff('wwan0').policy, 'use', 'never carried anything');
    for (let i = 0; i < 10; i++) s.tick({ wlan0: { bytes: MB, rttMs: 20 }, wwan0: { bytes: 4000, rttMs: 900 } });
    assert.equal(s.eff('wwan0').policy, 'use', 'a few kB at a stale RTT say nothing');
    const alone = setup(['wlan0']);
    for (let i = 0; i < 10; i++) alone.tick({ wlan0: { bytes: MB, rttMs: 900 } });
    assert.equal(alone.eff('wlan0').policy, 'use', 'the only path stays');
    const off = setup(['wlan0', 'wwan0']);
    off.cfg.quality.enabled = false;
    for (let i = 0; i < 10; i++) off.tick({ wlan0: { bytes: MB, rttMs: 20 }, wwan0: { bytes: MB, rttMs: 900 } });
    assert.equal(off.eff('wwan0').policy, 'use', 'paths.quality.enabled = false');
  });

  test('retransmissions of what this side sends demote past the threshold', () => {
    const s = setup(['wlan0', 'wwan0']);
    s.tick({ wlan0: { bytes: 0, rttMs: 20, sent: 1 }, wwan0: { bytes: 0, rttMs: 20, sent: 1 } });
    for (let i = 0; i < 3; i++) s.tick({ wlan0: { bytes: 0, rttMs: 20, sent: MB }, wwan0: { bytes: 0, rttMs: 20, sent: MB, retrans: 150_000 } });
    assert.equal(s.eff('wwan0').policy, 'backup');
    assert.match(s.eff('wwan0').demotion!.reason, /^wwan0 demoted: 15 % retransmits$/);
    assert.equal(s.eff('wlan0').policy, 'use');
  });

  test('a subflow unseen for 90 s is forgotten, one seen again is kept (expiry stops at the first fresh mark)', () => {
    const s = setup(['wlan0', 'wwan0']);
    const marks = (): number[] => [...(s.judge as unknown as { marks: Map<string, unknown> }).marks.keys()].map((k) => Number(k.split('|')[1]) - 40000);
    s.judge.subflow('wlan0', sf('wlan0', 1), 0, 0);
    s.judge.subflow('wwan0', sf('wwan0', 2), 0, 0);
    s.clock.now += 50_000;
    s.judge.subflow('wlan0', sf('wlan0', 1), 0, 0);
    s.judge.tick();
    assert.deepEqual(marks(), [2, 1], 'seen again: moved behind the older one');
    s.clock.now += 45_000;
    s.judge.tick();
    assert.deepEqual(marks(), [1], 'the one unseen for 95 s went, the one seen 45 s ago stayed');
    s.clock.now += 50_000;
    s.judge.tick();
    assert.deepEqual(marks(), []);
  });
});

describe('the stats engine for caps and per-program totals', () => {
  const setup = () => {
    const tracker = new ConnectionTracker(100);
    const reads = new Map<number, MptcpInfo>();
    const engine = new StatsEngine(() => tracker, { read: (c: TrackedConnection) => reads.get(c.id) ?? null });
    const usage = new UsageMeter({ file: null, log: silent });
    engine.observe(usage);
    engine.track(tracker);
    const info = (acked: number, received: number, subflows: SubflowInfo[]): MptcpInfo => ({
      mptcp: true, fallback: false, token: 1, subflowsTotal: subflows.length, bytesSent: acked, bytesReceived: received, bytesAcked: acked, retransmits: 0, subflows,
    });
    const today = (p: string) => {
      const d = dayKey(Date.now());
      const b = usage.between(p, d, d);
      return b.up + b.down;
    };
    return { tracker, reads, engine, usage, info, today };
  };

  test('a subflow that closed between reads: what it carried meanwhile is counted from the connection\'s own counters', () => {
    const s = setup();
    const c = s.tracker.open({ address: '127.0.0.1', port: 5000 })!;
    let t = Date.now();
    s.reads.set(c.id, s.info(0, 2 * MB, [sf('wlan0', 1, { bytesReceived: MB }), sf('wwan0', 2, { bytesReceived: MB })]));
    c.bytesDown = 2 * MB;
    s.engine.tick((t += 500));
    assert.equal(s.today('wwan0'), MB);
    // wwan0's subflow carried 300 kB more, then closed; wlan0's 1 MB more.
    s.reads.set(c.id, s.info(0, 3.3 * MB, [sf('wlan0', 1, { bytesReceived: 2 * MB })]));
    c.bytesDown = 3.3 * MB;
    s.engine.tick((t += 500));
    assert.equal(s.today('wlan0'), 2 * MB);
    assert.equal(s.today('wwan0'), 1.3 * MB);
  });

  test('the last bytes of a connection that closed between reads are counted, split like its traffic; per program per path', () => {
    const s = setup();
    const c = s.tracker.open({ address: '127.0.0.1', port: 5001 })!;
    c.program = { name: 'curl', pid: 42 };
    let t = Date.now();
    s.reads.set(c.id, s.info(0, 4 * MB, [sf('wlan0', 1, { bytesReceived: 3 * MB }), sf('wwan0', 2, { bytesReceived: MB })]));
    c.bytesDown = 4 * MB;
    s.engine.tick((t += 500));
    c.bytesDown = 8 * MB; // 4 MB more, then it closed before the next read
    c.close();
    s.engine.tick((t += 500));
    assert.equal(s.today('wlan0'), 6 * MB);
    assert.equal(s.today('wwan0'), 2 * MB);
    const rows = s.engine.byProgram();
    assert.deepEqual(rows.map((r) => [r.program, r.path, r.down]), [['curl', 'wlan0', 6 * MB], ['curl', 'wwan0', 2 * MB]]);
  });

  test('data received twice (reinjected on another subflow) does not hide the last bytes of a closing connection', () => {
    const s = setup();
    const c = s.tracker.open({ address: '127.0.0.1', port: 5002 })!;
    let t = Date.now();
    // 4 MB at the MPTCP level; the subflows carried 4.5 MB (0.5 MB of it twice).
    s.reads.set(c.id, s.info(0, 4 * MB, [sf('wlan0', 1, { bytesReceived: 3.5 * MB }), sf('wwan0', 2, { bytesReceived: MB })]));
    c.bytesDown = 4 * MB;
    s.engine.tick((t += 500));
    c.bytesDown = 5 * MB; // 1 MB more on wlan0 alone, then closed
    s.reads.delete(c.id);
    c.close();
    s.engine.tick((t += 500));
    assert.equal(s.today('wlan0') + s.today('wwan0'), 5.5 * MB, 'what the wire carried: 4.5 MB, then 1 MB');
  });
});

describe('notifications when Braid demotes or restores a path', () => {
  const iface = (name: string, over: Partial<InterfaceView> = {}): InterfaceView => ({
    name, kind: name.startsWith('wl') ? 'wifi' : 'cellular', up: true, addresses: [{ address: '10.0.0.2', family: 4, prefixlen: 24 }], defaultRoute: false, ssid: null, signal: null,
    policy: 'use', policyExplicit: true, effective: 'use', demotion: null, state: 'active', endpoints: [], note: null, ...over,
  });
  const view = (...interfaces: InterfaceView[]): PathsView => ({ managed: true, reason: null, manager: 'userspace', managerNote: null, rules: [], interfaces, foreign: [], limits: null });
  const capped = { source: 'cap', to: 'off' as const, reason: 'wwan0 reached its cap 10 MB/day (off until 2026-12-01)' };

  test('a cap reached, and a new period: one notice each, naming where traffic goes; draining (backup, then off) is one change', () => {
    const n = new PathNotifier(view(iface('wlan0'), iface('wwan0')));
    const reached = n.update(view(iface('wlan0'), iface('wwan0', { effective: 'backup', state: 'backup', demotion: { ...capped, to: 'backup' } })));
    assert.deepEqual(reached.map((x) => [x.change, x.title, x.body]), [['demoted', 'wwan0 reached its data cap', 'wwan0 reached its cap 10 MB/day (off until 2026-12-01). Traffic continues over wlan0.']]);
    assert.deepEqual(n.update(view(iface('wlan0'), iface('wwan0', { effective: 'off', state: 'off', demotion: capped }))), []);
    const lifted = n.update(view(iface('wlan0'), iface('wwan0')));
    assert.deepEqual(lifted.map((x) => [x.change, x.title]), [['restored', 'wwan0: a new data period began']]);
  });

  test('quality: demoted with the reason, restored; the user\'s own policy change says nothing', () => {
    const n = new PathNotifier(view(iface('wlan0'), iface('wwan0')));
    const q = n.update(view(iface('wlan0', { effective: 'backup', state: 'backup', demotion: { source: 'quality', to: 'backup', reason: 'wlan0 demoted: RTT 850 ms (best other path 40 ms)' } }), iface('wwan0')));
    assert.deepEqual(q.map((x) => [x.change, x.title, x.body]), [['demoted', 'wlan0 is backup only: poor quality', 'wlan0 demoted: RTT 850 ms (best other path 40 ms). Traffic continues over wwan0.']]);
    assert.deepEqual(n.update(view(iface('wlan0'), iface('wwan0'))).map((x) => x.change), ['restored']);
    assert.deepEqual(n.update(view(iface('wlan0', { policy: 'backup', effective: 'backup', state: 'backup' }), iface('wwan0'))), []);
  });
});
