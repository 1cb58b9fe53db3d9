/**
 * What the control API reports from the kernel, checked in a network namespace of its own, where
 * nothing else runs: the stats tick's count of MPTCP sockets (system.mptcpSockets) follows sockets
 * that another process opens and closes there, exactly; and a connection through the proxy reaches
 * a WebSocket client as `mptcp.event` events naming the addresses and ports it really used.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { PmEventView, StatsTick } from '../electron/core/contract';
import { waitControlLine, type ControlAddress, type Frame } from './helpers/control-client';
import { missingPrerequisite, SERVE_BYTES } from './helpers/multipath-harness';
import { Namespace, skipUnlessRoot, type NsProcess } from './helpers/netns';
import { killOnSignal, scratchDir } from './helpers/paths-harness';
import { requireFor } from './helpers/prerequisites';
import { startBraid, type BraidProxy } from './helpers/proc';
import { SYSTEM_SOCKETS_TTL_MS } from '../electron/core/stats/system';
import { IDLE_INTERVAL_MS } from '../electron/core/stats/engine';
import crypto from 'node:crypto';

const skip = requireFor('control API against the kernel in a namespace (control-kernel.test.ts)', skipUnlessRoot() ?? missingPrerequisite());
const CONTROL_CLIENT = path.join(__dirname, 'helpers', 'control-client.js');
const TICK_MS = 4000 + IDLE_INTERVAL_MS; // a few ticks on a loaded host, the first maybe at the idle pace
const HELD = 5;

/** Holds HELD listening MPTCP sockets (hashed, so the kernel counts them) until stdin closes or SIGTERM. */
const HOLDER = `
import socket, sys, signal
socks = []
for _ in range(${HELD}):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
    s.bind(('127.0.0.1', 0))
    s.listen()
    socks.append(s)
print('ready', flush=True)
signal.sigwait([signal.SIGTERM])
`;

describe('control API against the kernel, in a namespace', { skip, timeout: 90_000 }, () => {
  let ns: Namespace;
  let braid: BraidProxy;
  let control: ControlAddress;
  let watcher: NsProcess;
  const files = scratchDir('control-kernel');

  before(async () => {
    ns = await Namespace.create(`braid-ck-${process.pid}-${crypto.randomBytes(3).toString('hex')}`);
    files.write({});
    braid = killOnSignal(await startBraid(['up', '-v', '--port', '0', '--dial', 'mptcp', '--control', '127.0.0.1:0', '--config', files.config, '--state-dir', files.state],
      { prefix: ['ip', 'netns', 'exec', ns.name], timeoutMs: 15_000 }));
    control = await waitControlLine(() => braid.stdout());
    watcher = ns.spawn([process.execPath, CONTROL_CLIENT, 'watch', `ws://127.0.0.1:${control.port}/api/ws?token=${control.token}`, '80'], { label: 'control watch' });
    await watcher.waitForLine((l) => l.includes('"event":"open"'), 10_000);
  });

  after(async () => {
    await watcher?.stop();
    await braid?.stop('SIGTERM', 3000);
    await ns?.destroy();
  });

  const frames = (from = 0): Array<{ at: number; frame: Frame }> =>
    watcher.lines.slice(from).filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { at: number; frame: Frame });

  /** The first stats tick sampled after `sinceMs` (epoch ms). */
  async function tickAfter(sinceMs: number, timeoutMs = TICK_MS): Promise<StatsTick> {
    const { line } = await watcher.waitForLine((l) => {
      if (!l.includes('"event":"stats"')) return false;
      const f = JSON.parse(l) as { frame: Frame };
      return (f.frame.data as StatsTick).t > sinceMs;
    }, timeoutMs);
    return (JSON.parse(line) as { frame: Frame }).frame.data as StatsTick;
  }

  async function kernelCount(): Promise<number> {
    const { stdout } = await ns.exec(['cat', '/proc/net/protocols']);
    return stdout.split('\n').map((l) => l.trim().split(/\s+/)).filter((c) => c[0] === 'MPTCP' || c[0] === 'MPTCPv6').reduce((n, c) => n + Number(c[2]), 0);
  }

  /** A tick whose count was read after now: the count is read at most SYSTEM_SOCKETS_TTL_MS apart, on ticks an idle engine makes every IDLE_INTERVAL_MS. */
  const countedAfterNow = (): Promise<StatsTick> => tickAfter(Date.now() + SYSTEM_SOCKETS_TTL_MS, TICK_MS + SYSTEM_SOCKETS_TTL_MS);

  test('system.mptcpSockets counts this namespace\'s MPTCP sockets exactly, as they come and go', async () => {
    const base = await countedAfterNow();
    assert.equal(typeof base.system.mptcpSockets, 'number', JSON.stringify(base.system));
    // Braid's own sockets do not change while nothing connects: the kernel's count now is the tick's.
    assert.equal(base.system.mptcpSockets, await kernelCount(), 'the tick does not match /proc/net/protocols');

    const holder = ns.spawn(['python3', '-c', HOLDER], { label: 'MPTCP socket holder' });
    await holder.waitForLine(/^ready$/, 10_000);
    const held = await countedAfterNow();
    assert.equal(held.system.mptcpSockets, base.system.mptcpSockets! + HELD, `with ${HELD} more MPTCP sockets open`);

    await holder.stop();
    const released = await countedAfterNow();
    assert.equal(released.system.mptcpSockets, base.system.mptcpSockets, 'after they closed');
  });

  test('a connection through the proxy arrives as mptcp.event: created, established, closed, one token, its real ports', async () => {
    const server = ns.spawn([process.execPath, SERVE_BYTES, '--port', '0', '--host', '127.0.0.1'], { label: 'serve-bytes' });
    const port = Number(/^listening (\d+)/.exec((await server.waitForLine(/^listening \d+/, 10_000)).line)![1]);
    const from = watcher.lines.length;
    const r = await ns.exec(['curl', '-sS', '--fail', '--max-time', '10', '--socks5-hostname', `127.0.0.1:${braid.port}`, '-o', '/dev/null', '-w', '%{size_download}',
      `http://127.0.0.1:${port}/bytes/100000`], { timeoutMs: 15_000 });
    assert.equal(r.stdout, '100000');

    // The proxy's own connection to the server is the one whose destination port is the server's.
    const events = async (): Promise<PmEventView[]> => frames(from).filter((f) => f.frame.event === 'mptcp.event').map((f) => f.frame.data as PmEventView);
    let mine: PmEventView[] = [];
    for (let i = 0; i < TICK_MS / 50; i++) {
      mine = (await events()).filter((e) => e.dport === port);
      const created = mine.find((e) => e.type === 'created');
      if (created && mine.some((e) => e.type === 'closed' && e.token === created.token)) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const created = mine.find((e) => e.type === 'created');
    assert.ok(created, `no created event toward port ${port}: ${JSON.stringify(await events())}`);
    const established = mine.find((e) => e.type === 'established' && e.token === created.token);
    const closed = (await events()).find((e) => e.type === 'closed' && e.token === created.token);
    assert.ok(established, `no established event for token ${created.token}: ${JSON.stringify(mine)}`);
    assert.ok(closed, `no closed event for token ${created.token}`);
    assert.equal(typeof created.token, 'number');
    for (const e of [created, established]) {
      assert.deepEqual([e.saddr, e.daddr, e.dport], ['127.0.0.1', '127.0.0.1', port]);
      assert.ok(e.sport !== null && e.sport > 0 && e.sport !== port, `source port ${e.sport}`);
    }
    assert.equal(established.sport, created.sport);
    // The server's end of the same connection (accepted, not dialled) is an event of its own, the other way round.
    assert.ok((await events()).some((e) => e.type === 'created' && e.sport === port && e.dport === created.sport), 'the accepting side\'s created event is missing');
    await server.stop();
  });
});
