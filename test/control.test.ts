/**
 * The control API of a real `braid up` on loopback (root namespace, path management off): the token
 * guard, clear errors for malformed commands, the Host check, the WebSocket (commands, events), where
 * it listens, and `braid status` on top of it.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { ConnectionView, StatsTick, StatusView } from '../electron/core/contract';
import { apiRequest, call, callOk, waitControlLine, WsClient, type ControlAddress } from './helpers/control-client';
import { runBraid, runProcess, startBraid, type BraidProxy } from './helpers/proc';
import { mptcpAvailable, startOrigin, type OriginServer } from './helpers/servers';
import { IDLE_INTERVAL_MS } from '../electron/core/stats/engine';

let tmp: string;
let origin: OriginServer;

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-control-'));
  origin = await startOrigin({ blobs: { small: 64 * 1024, big: 4 * 1024 * 1024 } });
});

after(async () => {
  await origin?.close();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

let dirCounter = 0;
function stateDir(): string {
  return fs.mkdtempSync(path.join(tmp, `state-${++dirCounter}-`));
}

/** `braid up` on free ports with its own state directory; resolves once the control API is up. */
async function up(extra: string[] = ['--control', '127.0.0.1:0']): Promise<{ braid: BraidProxy; control: ControlAddress; dir: string }> {
  const dir = stateDir();
  const braid = await startBraid(['up', '--port', '0', '--state-dir', dir, ...extra]);
  try {
    const control = await waitControlLine(() => braid.stdout());
    return { braid, control, dir };
  } catch (err) {
    await braid.stop();
    throw err;
  }
}

/** Local addresses the process `pid` listens on with TCP, from `ss` (the kernel's view, not ours). */
function listeningAddresses(pid: number): string[] {
  const out = execFileSync('ss', ['-Htlnp'], { encoding: 'utf8', timeout: 5000 });
  return out.split('\n').filter((l) => l.includes(`pid=${pid},`)).map((l) => l.trim().split(/\s+/)[3]!);
}

function curlThroughProxy(proxyPort: number, url: string, maxSeconds = 20) {
  return runProcess('curl', ['--silent', '--show-error', '--fail', '--max-time', String(maxSeconds), '--socks5-hostname', `127.0.0.1:${proxyPort}`, '--output', '/dev/null', '--write-out', '%{size_download}', url], { timeoutMs: (maxSeconds + 5) * 1000 });
}

describe('control API over HTTP', () => {
  let b: BraidProxy;
  let c: ControlAddress;
  const auth = (): Record<string, string> => ({ Authorization: `Bearer ${c.token}` });

  before(async () => {
    ({ braid: b, control: c } = await up());
  });
  after(async () => {
    await b?.stop();
  });

  test('no token: 401 EAUTH', async () => {
    const a = await apiRequest({ host: c.host, port: c.port, path: '/api/status' });
    assert.equal(a.status, 401);
    assert.equal(a.json?.ok, false);
    assert.equal(a.json?.error?.code, 'EAUTH');
    assert.match(a.json!.error!.message, /token/);
  });

  test('wrong token (same length, other length, other scheme): 401 EAUTH', async () => {
    const wrong = c.token.slice(0, -1) + (c.token.endsWith('A') ? 'B' : 'A');
    for (const header of [`Bearer ${wrong}`, `Bearer ${c.token}x`, 'Bearer ', `Basic ${c.token}`, c.token]) {
      const a = await apiRequest({ host: c.host, port: c.port, path: '/api/status', headers: { Authorization: header } });
      assert.equal(a.status, 401, header);
      assert.equal(a.json?.error?.code, 'EAUTH', header);
    }
    const q = await apiRequest({ host: c.host, port: c.port, path: `/api/status?token=${encodeURIComponent(wrong)}` });
    assert.equal(q.status, 401);
  });

  test('token as ?token= works, as does the header', async () => {
    const q = await apiRequest({ host: c.host, port: c.port, path: `/api/status?token=${encodeURIComponent(c.token)}` });
    assert.equal(q.status, 200, q.text);
    const s = q.json!.result as StatusView;
    assert.equal(s.proxy.running, true);
    assert.equal(s.proxy.listen, `127.0.0.1:${b.port}`);
    const h = await apiRequest({ host: c.host, port: c.port, path: '/api/status', headers: auth() });
    assert.equal(h.status, 200);
  });

  test('unknown command: 404 ECOMMAND naming it', async () => {
    const a = await call(c, 'proxy.explode');
    assert.equal(a.status, 404);
    assert.equal(a.json?.error?.code, 'ECOMMAND');
    assert.match(a.json!.error!.message, /proxy\.explode/);
    // Not a prototype property either.
    const p = await call(c, 'constructor');
    assert.equal(p.status, 404);
  });

  test('malformed params: 400 EBADPARAMS naming the field', async () => {
    const cases: [string, unknown, RegExp][] = [
      ['stats.history', { seconds: 'ten' }, /'seconds' must be an integer/],
      ['stats.history', { seconds: 0 }, /'seconds' must be from 1/],
      ['stats.history', { secs: 5 }, /'secs' is not a known parameter/],
      ['connections.close', {}, /'id' must be an integer/],
      ['connections.close', { id: 1.5 }, /'id'/],
      ['status', { verbose: true }, /'verbose' is not a known parameter/],
      ['systemProxy.set', { enabled: 'yes' }, /'enabled' must be true or false/],
      ['stats.history', [1, 2], /must be an object/],
    ];
    for (const [command, params, message] of cases) {
      const a = await call(c, command, params);
      assert.equal(a.status, 400, `${command} ${JSON.stringify(params)}: ${a.text}`);
      assert.equal(a.json?.error?.code, 'EBADPARAMS', a.text);
      assert.match(a.json!.error!.message, message);
    }
  });

  test('a body that is not JSON: 400 EBADJSON', async () => {
    const a = await apiRequest({ host: c.host, port: c.port, path: '/api/status', body: '{"oops', headers: auth() });
    assert.equal(a.status, 400);
    assert.equal(a.json?.error?.code, 'EBADJSON');
  });

  test('a body too big: 413 ETOOBIG, and the API keeps working', async () => {
    const body = JSON.stringify({ seconds: 1, pad: 'x'.repeat(200 * 1024) });
    const a = await apiRequest({ host: c.host, port: c.port, path: '/api/stats.history', body, headers: auth() });
    assert.equal(a.status, 413, a.text);
    assert.equal(a.json?.error?.code, 'ETOOBIG');
    assert.equal((await call(c, 'status')).status, 200);
  });

  test('other methods: 405', async () => {
    const a = await apiRequest({ host: c.host, port: c.port, method: 'DELETE', path: '/api/status', headers: auth() });
    assert.equal(a.status, 405);
  });

  test('a Host header that is not loopback or an address: 403 EHOST (DNS rebinding)', async () => {
    for (const host of ['evil.example.com', `evil.example.com:${c.port}`, `127.0.0.1.evil.example.com:${c.port}`, '127.evil.example', 'localhost.evil.example']) {
      const a = await apiRequest({ host: c.host, port: c.port, path: '/api/status', headers: { ...auth(), Host: host } });
      assert.equal(a.status, 403, host);
      assert.equal(a.json?.error?.code, 'EHOST', host);
    }
    for (const host of [`localhost:${c.port}`, `127.0.0.1:${c.port}`, 'localhost']) {
      const a = await apiRequest({ host: c.host, port: c.port, path: '/api/status', headers: { ...auth(), Host: host } });
      assert.equal(a.status, 200, host);
    }
  });

  test('garbage request targets get an error answer and do not bring the process down', async () => {
    const answers: number[] = [];
    for (const target of ['/api/%E0%A4%A', 'http://[', '/%E0%A4%A']) {
      const raw = await new Promise<string>((resolve, reject) => {
        const s = net.connect({ host: c.host, port: c.port }, () => s.end(`GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${c.token}\r\nConnection: close\r\n\r\n`));
        let text = '';
        s.setEncoding('utf8').on('data', (d: string) => (text += d));
        s.on('close', () => resolve(text));
        s.on('error', reject);
        s.setTimeout(5000, () => s.destroy(new Error(`no answer to ${target}`)));
      });
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1]);
      answers.push(status);
      assert.ok(status >= 400 && status < 500, `${target}: ${raw.slice(0, 200)}`);
    }
    // The same over the WebSocket upgrade path.
    await new Promise<void>((resolve, reject) => {
      const s = net.connect({ host: c.host, port: c.port }, () => s.end('GET http://[ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n'));
      s.on('close', () => resolve());
      s.on('error', reject);
      s.setTimeout(5000, () => s.destroy());
    });
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(b.alive(), `braid died: ${b.stderr()}`);
    assert.equal((await call(c, 'status')).status, 200);
  });

  test('config.set with an invalid patch: 400 naming the field, nothing changed', async () => {
    const before = await callOk<unknown>(c, 'config.get');
    const cases: [unknown, RegExp][] = [
      [{ proxy: { port: 'eighty' } }, /proxy\.port/],
      [{ proxy: { hots: '127.0.0.1' } }, /proxy\.hots/],
      [{ limits: { maxConnections: -1 } }, /limits\.maxConnections/],
      [{ control: 'off' }, /control/],
      ['everything', /'patch' must be an object/],
      [null, /'patch' must be an object/],
    ];
    for (const [patch, message] of cases) {
      const a = await call(c, 'config.set', { patch });
      assert.equal(a.status, 400, `${JSON.stringify(patch)}: ${a.text}`);
      assert.ok(['ECONFIG', 'EBADPARAMS'].includes(a.json!.error!.code), a.text);
      assert.match(a.json!.error!.message, message);
    }
    const missing = await call(c, 'config.set', {});
    assert.equal(missing.status, 400);
    assert.match(missing.json!.error!.message, /patch/);
    assert.deepEqual(await callOk<unknown>(c, 'config.get'), before);
    assert.equal((await callOk<StatusView>(c, 'status')).proxy.listen, `127.0.0.1:${b.port}`);
  });

  test('paths.setPolicy with a bad policy or interface: 400 naming the field', async () => {
    const cases: [unknown, RegExp][] = [
      [{ interface: 'eth0', policy: 'sometimes' }, /'policy' must be one of use, secondary, backup, off/],
      [{ interface: 'eth0' }, /'policy'/],
      [{ interface: 'a/b', policy: 'use' }, /'interface'/],
      [{ interface: 'x'.repeat(16), policy: 'use' }, /'interface'/],
      [{ interface: 'eth0', policy: 'use', extra: 1 }, /'extra'/],
    ];
    for (const [params, message] of cases) {
      const a = await call(c, 'paths.setPolicy', params);
      assert.equal(a.status, 400, a.text);
      assert.equal(a.json?.error?.code, 'EBADPARAMS');
      assert.match(a.json!.error!.message, message);
    }
  });

  test('connections.close of an unknown id: 404 ENOENT', async () => {
    const a = await call(c, 'connections.close', { id: 999_999 });
    assert.equal(a.status, 404);
    assert.equal(a.json?.error?.code, 'ENOENT');
  });
});

describe('control API over WebSocket', () => {
  let b: BraidProxy;
  let c: ControlAddress;
  const wsUrl = (token: string | null): string => `ws://${c.host}:${c.port}/api/ws${token === null ? '' : `?token=${encodeURIComponent(token)}`}`;

  before(async () => {
    ({ braid: b, control: c } = await up());
  });
  after(async () => {
    await b?.stop();
  });

  test('no token or a wrong one: upgrade refused with 401', async () => {
    for (const url of [wsUrl(null), wsUrl('nope'), wsUrl(c.token + 'x')]) {
      await assert.rejects(WsClient.open(url), (err: { status?: number }) => err.status === 401);
    }
    await assert.rejects(WsClient.open(wsUrl(c.token), { headers: { Host: 'evil.example.com' } }), (err: { status?: number }) => err.status === 403);
  });

  test('token in the Authorization header works too', async () => {
    const ws = await WsClient.open(wsUrl(null), { headers: { Authorization: `Bearer ${c.token}` } });
    try {
      const r = await ws.command(1, 'status');
      assert.equal(r.ok, true);
    } finally {
      ws.close();
    }
  });

  test('frames: bad JSON -> EBADFRAME; a command -> its result under its id; errors under their id', async () => {
    const ws = await WsClient.open(wsUrl(c.token));
    try {
      let from = ws.frames.length;
      ws.send('{not json');
      const bad = await ws.waitFor((f) => f.ok === false, 5000, from);
      assert.equal(bad.id, null);
      assert.equal(bad.error?.code, 'EBADFRAME');
      from = ws.frames.length;
      ws.send('42');
      assert.equal((await ws.waitFor((f) => f.ok === false, 5000, from)).error?.code, 'EBADFRAME');

      const ok = await ws.command('a-1', 'status');
      assert.equal(ok.ok, true);
      assert.equal((ok.result as StatusView).proxy.listen, `127.0.0.1:${b.port}`);
      const hist = await ws.command(7, 'stats.history', { seconds: 2 });
      assert.equal(hist.ok, true);
      assert.ok(Array.isArray(hist.result));

      const badParams = await ws.command(8, 'stats.history', { seconds: 'x' });
      assert.equal(badParams.ok, false);
      assert.equal(badParams.error?.code, 'EBADPARAMS');
      assert.match(badParams.error!.message, /'seconds'/);
      const unknown = await ws.command(9, 'no.such');
      assert.equal(unknown.error?.code, 'ECOMMAND');
    } finally {
      ws.close();
    }
  });

  test('events: stats ticks, connection.opened/closed for a connection through the proxy', async () => {
    const ws = await WsClient.open(wsUrl(c.token));
    try {
      // An idle proxy ticks every IDLE_INTERVAL_MS.
      const t1 = await ws.waitFor((f) => f.event === 'stats', IDLE_INTERVAL_MS + 3000);
      const t2 = await ws.waitFor((f) => f.event === 'stats' && f.data !== t1.data && (f.data as StatsTick).t > (t1.data as StatsTick).t, IDLE_INTERVAL_MS + 3000);
      const tick = t2.data as StatsTick;
      assert.equal(typeof tick.totalDown, 'number');
      assert.ok(Array.isArray(tick.paths));
      // A count wherever the kernel has MPTCP (its exactness is checked in a namespace of its own,
      // control-kernel.test.ts; this root namespace is shared with everything else on the host).
      if (mptcpAvailable().ok) assert.ok(Number.isInteger(tick.system.mptcpSockets) && tick.system.mptcpSockets! >= 0, `mptcpSockets ${tick.system.mptcpSockets}`);
      else assert.equal(tick.system.mptcpSockets, null);

      const from = ws.frames.length;
      const r = await curlThroughProxy(b.port, `http://127.0.0.1:${origin.port}/blob/big`);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.toString(), String(4 * 1024 * 1024));
      const opened = (await ws.waitFor((f) => f.event === 'connection.opened', 5000, from)).data as ConnectionView;
      const closed = (await ws.waitFor((f) => f.event === 'connection.closed' && (f.data as ConnectionView).id === opened.id, 5000, from)).data as ConnectionView;
      assert.equal(closed.protocol, 'socks5');
      assert.equal(closed.destination, `127.0.0.1:${origin.port}`);
      assert.ok(closed.bytesDown >= 4 * 1024 * 1024, `bytesDown ${closed.bytesDown}`);
      // Its bytes reach the totals by the next tick, also when it lived less than one tick.
      const counted = await ws.waitFor((f) => f.event === 'stats' && (f.data as StatsTick).totalDown - tick.totalDown >= closed.bytesDown, 3000, from);
      assert.ok(counted);
    } finally {
      ws.close();
    }
  });
});

describe('where the control API listens', () => {
  test('by default on 127.0.0.1 only, written to the discovery file', async () => {
    const { braid, control, dir } = await up([]);
    try {
      assert.equal(control.host, '127.0.0.1');
      const ep = JSON.parse(fs.readFileSync(path.join(dir, 'control.json'), 'utf8')) as { host: string; port: number; token: string; pid: number };
      assert.deepEqual(ep, { host: '127.0.0.1', port: control.port, token: control.token, pid: braid.child.pid });
      assert.equal(fs.statSync(path.join(dir, 'control.json')).mode & 0o077, 0, 'discovery file readable by others');
      const addrs = listeningAddresses(braid.child.pid!);
      assert.ok(addrs.includes(`127.0.0.1:${control.port}`), `ss shows ${addrs.join(', ')}`);
      for (const a of addrs) assert.match(a, /^127\.0\.0\.1:\d+$/, `braid listens on ${a}`);
      assert.doesNotMatch(braid.stderr(), /beyond loopback/);
    } finally {
      await braid.stop();
    }
  });

  test('--control 0.0.0.0:PORT goes beyond loopback, with a warning', async () => {
    const { braid, control } = await up(['--control', '0.0.0.0:0']);
    try {
      const addrs = listeningAddresses(braid.child.pid!);
      assert.ok(addrs.includes(`0.0.0.0:${control.port}`), `ss shows ${addrs.join(', ')}`);
      assert.match(braid.stderr(), /warning: control API listens on 0\.0\.0\.0, beyond loopback/);
      // Reached by address (as a remote client would), with the token.
      const a = await apiRequest({ host: '127.0.0.1', port: control.port, path: '/api/status', headers: { Authorization: `Bearer ${control.token}`, Host: `10.1.2.3:${control.port}` } });
      assert.equal(a.status, 200, a.text);
    } finally {
      await braid.stop();
    }
  });

  test('the discovery file goes away when braid up stops', async () => {
    const { braid, dir } = await up();
    const r = await braid.stop();
    assert.equal(r.code, 0, braid.stderr());
    assert.equal(fs.existsSync(path.join(dir, 'control.json')), false);
  });
});

describe('braid status', () => {
  test('text and --json against a running braid up', async () => {
    const { braid, control, dir } = await up();
    try {
      const dl = await curlThroughProxy(braid.port, `http://127.0.0.1:${origin.port}/blob/small`);
      assert.equal(dl.code, 0, dl.stderr);
      await new Promise((r) => setTimeout(r, 1200)); // a tick or two after the download
      const text = await runBraid(['status', '--state-dir', dir], { timeoutMs: 15_000 });
      assert.equal(text.code, 0, text.stderr);
      const out = text.stdout.toString();
      assert.match(out, /^braid \d+\.\d+\.\d+/);
      assert.match(out, new RegExp(`proxy: +on, 127\\.0\\.0\\.1:${braid.port} \\(dial (mptcp|tcp)`));
      assert.match(out, /connections: +0 active, 1 since start/);
      assert.match(out, /paths: +not managed/);
      assert.match(out, /traffic: +0 connections sampled/);

      const json = await runBraid(['status', '--json', '--state-dir', dir], { timeoutMs: 15_000 });
      assert.equal(json.code, 0, json.stderr);
      const s = JSON.parse(json.stdout.toString()) as StatusView & { stats: StatsTick | null };
      assert.equal(s.proxy.running, true);
      assert.equal(s.proxy.listen, `127.0.0.1:${braid.port}`);
      assert.deepEqual(s.connections, { active: 0, total: 1 });
      assert.ok(s.stats, 'no stats in --json');
      assert.ok(s.stats.totalDown >= 64 * 1024, `stats.totalDown ${s.stats.totalDown}`);
      assert.equal(s.stats.paths.reduce((a, p) => a + p.totalDown, 0), s.stats.totalDown);
      // Nothing secret in the output.
      assert.ok(!json.stdout.toString().includes(control.token));
    } finally {
      await braid.stop();
    }
  });

  test('nothing running: exit 1, "not running"', async () => {
    const dir = stateDir();
    const r = await runBraid(['status', '--state-dir', dir], { timeoutMs: 15_000 });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /braid is not running/);
    assert.match(r.stderr, /ENOTRUNNING/);
    assert.equal(r.stdout.length, 0);

    // A discovery file left behind by a process that is gone.
    const gone = await runProcess(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
    fs.writeFileSync(path.join(dir, 'control.json'), JSON.stringify({ host: '127.0.0.1', port: 9, token: 'x', pid: Number(gone.stdout.toString()) }));
    const r2 = await runBraid(['status', '--json', '--state-dir', dir], { timeoutMs: 15_000 });
    assert.equal(r2.code, 1);
    assert.match(r2.stderr, /braid is not running .*left over/);
  });
});
