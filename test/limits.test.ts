/**
 * Limits that fit the machine, against the real `braid up` started under given open-file limits
 * (prlimit): the soft limit is raised to the hard one, the default connection limit follows it,
 * reaching the connection limit or running out of descriptors is logged once naming the setting,
 * and many concurrent connections print no MaxListenersExceededWarning. Plus the native function's
 * argument guards and the routing of Node's warnings.
 *
 * Plain Node already raises its soft limit at start unless its embedder opts out (Electron embeds
 * Node), so the first test lowers the limit again before Braid's code runs, as such a host would
 * leave it, with a preload (test/helpers/low-fd-preload.ts).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connectionsForFds, FDS_PER_CONNECTION, RESERVED_FDS } from '../electron/core/fd-limit';
import { nofileLimit } from '../electron/core/native/rlimit';
import { loadNative } from '../electron/core/proxy/native';
import { startBraid, type BraidProxy } from './helpers/proc';
import { readBytes, socksConnectRequest } from './helpers/raw-client';

const PRELOAD = path.join(__dirname, 'helpers', 'low-fd-preload.js');
const native = loadNative().mod !== null;
const hasPrlimit = fs.existsSync('/usr/bin/prlimit');
const skip = !native ? 'needs the native addon' : !hasPrlimit ? 'needs prlimit (util-linux)' : false;

let tmp: string;
let origin: net.Server;
let originPort: number;
const held = new Set<net.Socket>();

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-limits-'));
  // Holds every connection open and silent: idle tunnels, as browsers keep them.
  origin = net.createServer((s) => {
    held.add(s);
    s.on('error', () => {});
    s.on('close', () => held.delete(s));
  });
  await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
  originPort = (origin.address() as net.AddressInfo).port;
});

after(async () => {
  for (const s of held) s.destroy();
  await new Promise((r) => origin?.close(r));
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

function softLimitOf(pid: number): { soft: number; hard: number } {
  const line = fs.readFileSync(`/proc/${pid}/limits`, 'utf8').split('\n').find((l) => l.startsWith('Max open files'))!;
  const [soft, hard] = line.replace('Max open files', '').trim().split(/\s+/).map(Number);
  return { soft: soft!, hard: hard! };
}

/** A SOCKS5 CONNECT to the origin through the proxy: the open tunnel, or the reply code it got. */
async function tunnel(port: number): Promise<{ socket: net.Socket | null; rep: number | null; error: string | null }> {
  const socket = net.connect({ host: '127.0.0.1', port });
  socket.on('error', () => {});
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    socket.write(Buffer.from([5, 1, 0]));
    const chosen = await readBytes(socket, 2, 5000);
    if (chosen[1] !== 0) throw new Error(`greeting refused: ${chosen.toString('hex')}`);
    socket.write(socksConnectRequest('127.0.0.1', originPort));
    const reply = await readBytes(socket, 10, 5000);
    if (reply[1] === 0) return { socket, rep: 0, error: null };
    socket.destroy();
    return { socket: null, rep: reply[1]!, error: null };
  } catch (err) {
    socket.destroy();
    return { socket: null, rep: null, error: (err as Error).message };
  }
}

async function openTunnels(port: number, n: number): Promise<Awaited<ReturnType<typeof tunnel>>[]> {
  const out: Awaited<ReturnType<typeof tunnel>>[] = [];
  // A few at a time, so that the order of arrival is the order of the limit.
  for (let i = 0; i < n; i += 10) out.push(...(await Promise.all(Array.from({ length: Math.min(10, n - i) }, () => tunnel(port)))));
  return out;
}

function linesMatching(text: string, re: RegExp): string[] {
  return text.split('\n').filter((l) => re.test(l));
}

async function settle(proxy: BraidProxy, re: RegExp, atLeast: number, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && linesMatching(proxy.stderr(), re).length < atLeast) await new Promise((r) => setTimeout(r, 50));
}

describe('the native open-file limit function', { skip: native ? false : 'needs the native addon' }, () => {
  test('reads both limits and guards its argument', () => {
    const cur = nofileLimit();
    assert.ok(Number.isInteger(cur.soft) && cur.soft > 0 && cur.hard >= cur.soft, JSON.stringify(cur));
    const bad = (v: unknown): void => void nofileLimit(v as number);
    assert.throws(() => bad('1024'), TypeError);
    for (const v of [-1, 1.5, NaN]) assert.throws(() => bad(v), RangeError, String(v));
    if (Number.isFinite(cur.hard)) assert.throws(() => bad(cur.hard + 1), /must not exceed the hard limit/);
    // Setting the soft limit to what it is changes nothing and says so.
    assert.deepEqual(nofileLimit(cur.soft), cur);
  });

  test('the default connection limit is (soft - 256) / 2', () => {
    assert.equal(connectionsForFds(1024), (1024 - RESERVED_FDS) / FDS_PER_CONNECTION);
    assert.equal(connectionsForFds(1_048_576), (1_048_576 - RESERVED_FDS) / FDS_PER_CONNECTION);
    assert.equal(connectionsForFds(100), 1);
    assert.equal(connectionsForFds(Infinity), 1_000_000);
  });
});

describe('braid up under open-file limits', { skip, timeout: 120_000 }, () => {
  test('raises its soft limit to the hard one, and the default connection limit follows', async () => {
    const proxy = await startBraid(['up', '--port', '0', '--dial', 'tcp', '--paths', 'off', '--control', 'off', '-v'], {
      prefix: ['prlimit', '--nofile=1024:4096'], env: { ...process.env, NODE_OPTIONS: `--require ${PRELOAD}` },
    });
    try {
      assert.deepEqual(softLimitOf(proxy.child.pid!), { soft: 4096, hard: 4096 });
      assert.match(proxy.stderr(), /open-file limit raised from 1024 to 4096/);
      assert.match(proxy.stderr(), new RegExp(`up to ${connectionsForFds(4096)} connections \\(limits\\.maxConnections\\), open-file limit 4096`));
    } finally {
      await proxy.stop();
    }
  });

  test('the connection limit sized from 400 descriptors refuses the next clients, logged once', async () => {
    const max = connectionsForFds(400);
    const proxy = await startBraid(['up', '--port', '0', '--dial', 'tcp', '--paths', 'off', '--control', 'off'], { prefix: ['prlimit', '--nofile=400:400'] });
    const open: net.Socket[] = [];
    try {
      const first = await openTunnels(proxy.port, max);
      for (const r of first) if (r.socket) open.push(r.socket);
      assert.equal(open.length, max, `all ${max} tunnels open: ${JSON.stringify(first.find((r) => !r.socket))}`);
      const over = await openTunnels(proxy.port, 8);
      assert.deepEqual(over.map((r) => r.rep), Array(8).fill(1), 'each client over the limit gets 0x01 (general failure)');
      const re = /connection limit reached: (\d+) concurrent connections.*limits\.maxConnections/;
      await settle(proxy, re, 1);
      const lines = linesMatching(proxy.stderr(), re);
      assert.equal(lines.length, 1, `logged once: ${lines.join('\n')}`);
      assert.equal(Number(re.exec(lines[0]!)![1]), max);
      assert.doesNotMatch(proxy.stderr(), /out of file descriptors/);
      // The limit is not sticky: once some close, new clients are served again.
      for (const s of open.splice(0, 5)) s.destroy();
      await new Promise((r) => setTimeout(r, 300));
      const again = await tunnel(proxy.port);
      assert.equal(again.rep, 0, 'a new tunnel after some closed');
      again.socket?.destroy();
    } finally {
      for (const s of open) s.destroy();
      await proxy.stop();
    }
  });

  test('running out of descriptors is logged once, naming what to change, and the proxy recovers', async () => {
    const cfg = path.join(tmp, 'many.json');
    fs.writeFileSync(cfg, JSON.stringify({ limits: { maxConnections: 1000 } }));
    const proxy = await startBraid(['up', '--port', '0', '--dial', 'tcp', '--paths', 'off', '--control', 'off', '--config', cfg], { prefix: ['prlimit', '--nofile=200:200'] });
    const open: net.Socket[] = [];
    try {
      const results = await openTunnels(proxy.port, 150);
      for (const r of results) if (r.socket) open.push(r.socket);
      assert.ok(open.length < 100 && open.length > 50, `${open.length} tunnels fit in 200 descriptors`);
      const re = /out of file descriptors \((EMFILE on connect|\d+ sockets open), open-file limit 200\).*ulimit -n.*LimitNOFILE.*limits\.maxConnections/;
      await settle(proxy, re, 1);
      const lines = linesMatching(proxy.stderr(), re);
      assert.equal(lines.length, 1, `logged once:\n${proxy.stderr().slice(-2000)}`);
      assert.match(proxy.stderr(), /limits\.maxConnections is 1000 but the open-file limit \(200\) allows about 1: /, 'the mismatch is said at start');
      for (const s of open.splice(0)) s.destroy();
      await new Promise((r) => setTimeout(r, 500));
      const again = await tunnel(proxy.port);
      assert.equal(again.rep, 0, `a new tunnel once descriptors are free again: ${again.error}`);
      again.socket?.destroy();
      assert.ok(proxy.alive());
    } finally {
      for (const s of open) s.destroy();
      await proxy.stop();
    }
  });

  test('40 concurrent connections print no MaxListenersExceededWarning, even with --verbose', async () => {
    const proxy = await startBraid(['up', '--port', '0', '--dial', 'tcp', '--paths', 'off', '--control', '127.0.0.1:0', '-v']);
    const open: net.Socket[] = [];
    try {
      // All at once: their dials are pending together, as a browser opening a page makes them.
      const results = await Promise.all(Array.from({ length: 40 }, () => tunnel(proxy.port)));
      for (const r of results) if (r.socket) open.push(r.socket);
      assert.equal(open.length, 40);
      for (const s of open.splice(0)) s.destroy();
      await new Promise((r) => setTimeout(r, 300));
      assert.doesNotMatch(proxy.stderr(), /MaxListenersExceeded|memory leak/i);
    } finally {
      for (const s of open) s.destroy();
      await proxy.stop();
    }
  });
});

describe("Node's process warnings", () => {
  const module = path.resolve(__dirname, '..', 'electron', 'core', 'process-warnings.js');
  const script = (route: boolean): string => `
    const { routeProcessWarnings } = require(${JSON.stringify(module)});
    if (${route}) routeProcessWarnings({ info() {}, warn(m) { console.log('WARN ' + m); }, debug(m) { console.log('DEBUG ' + m); } });
    const c = new AbortController();
    for (let i = 0; i < 12; i++) c.signal.addEventListener('abort', () => {});
    process.emitWarning('something else', 'OtherWarning');
    setTimeout(() => {}, 50);`;

  test('a MaxListenersExceededWarning goes to the debug log, not the terminal; others keep Node\'s handling', () => {
    const plain = spawnSync(process.execPath, ['-e', script(false)], { encoding: 'utf8', timeout: 10_000 });
    assert.match(plain.stderr, /MaxListenersExceededWarning/, 'without the routing Node prints it (the check can fail)');
    const routed = spawnSync(process.execPath, ['-e', script(true)], { encoding: 'utf8', timeout: 10_000 });
    assert.doesNotMatch(routed.stderr, /MaxListenersExceeded/);
    assert.match(routed.stdout, /^DEBUG node: MaxListenersExceededWarning: .*abort listeners/m);
    assert.match(routed.stderr, /OtherWarning: something else/);
  });
});
