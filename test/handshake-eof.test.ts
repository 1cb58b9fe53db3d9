/**
 * Clients that give up during the handshake must not keep Braid's sockets open. Thousands of
 * clients, SOCKS5 (with and without authentication) and HTTP, each cut at some point of its request,
 * shut down their write side and then either close at once or read the reply they are owed. The
 * real `braid up` runs in a namespace with no route anywhere (a complete request fails at once with
 * "network unreachable"), with a handshake timeout of a minute so that nothing is released by it.
 * Shortly after the last client, `ss` in that namespace must show none of Braid's sockets in
 * CLOSE-WAIT, and every client that waited must have received exactly the reply due.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BRAID_CLI, DIST, missingPrerequisite } from './helpers/multipath-harness';
import { skipUnlessRoot, Topology, type Namespace, type NsProcess } from './helpers/netns';
import type { PartialReport } from './helpers/partial-clients';
import './helpers/proc'; // a throwaway config and state directory for every Braid started here

const PLAIN_PORT = 1080;
const AUTH_PORT = 1081;
const CLIENTS = 4000;
const CONCURRENCY = 400;
const HANDSHAKE_MS = 60_000;
/** How long after the last client `ss` may look: far below any timeout, above a loop turn or two. */
const LOOK_AFTER_MS = 500;
const PARTIAL_CLIENTS = path.join(DIST, 'test', 'helpers', 'partial-clients.js');

const skip = skipUnlessRoot() ?? missingPrerequisite();

/** Lines of `ss -tanp state close-wait` that are Braid's: its pid, or a listener port (not yet accepted). */
async function braidCloseWait(ns: Namespace, pids: number[]): Promise<string[]> {
  const { stdout } = await ns.exec(['ss', '-tanpH', 'state', 'close-wait']);
  return stdout.split('\n').filter((l) => {
    if (!l.trim()) return false;
    const cols = l.trim().split(/\s+/);
    const local = cols[2] ?? '';
    return pids.some((p) => l.includes(`pid=${p},`)) || local.endsWith(`:${PLAIN_PORT}`) || local.endsWith(`:${AUTH_PORT}`);
  });
}

describe('clients that close during the handshake', { skip, timeout: 180_000 }, () => {
  let topo: Topology;
  let ns: Namespace;
  let plain: NsProcess;
  let auth: NsProcess;
  let cfgFile: string;

  before(async () => {
    topo = new Topology();
    ns = await topo.addNamespace('eof');
    cfgFile = path.join(process.env.BRAID_TEST_HOME!, `eof-${process.pid}.json`);
    fs.writeFileSync(cfgFile, JSON.stringify({ timeouts: { handshakeMs: HANDSHAKE_MS } }));
    const up = (port: number, extra: string[]): NsProcess => ns.spawn([process.execPath, BRAID_CLI, 'up', '--host', '127.0.0.1', '--port', String(port),
      '--dial', 'mptcp', '--paths', 'off', '--control', 'off', '--config', cfgFile, ...extra], { label: `braid up :${port}` });
    plain = up(PLAIN_PORT, []);
    auth = up(AUTH_PORT, ['--auth', 'alice:s3cret']);
    await Promise.all([plain, auth].map((p) => p.waitForLine(/listening/, 15_000)));
  });

  after(async () => {
    await topo?.destroy();
    if (cfgFile) fs.rmSync(cfgFile, { force: true });
  });

  test(`${CLIENTS} partial requests leave no socket of Braid's in CLOSE-WAIT, and each gets the reply due`, async () => {
    const { stdout } = await ns.exec([process.execPath, PARTIAL_CLIENTS, '--port', String(PLAIN_PORT), '--auth-port', String(AUTH_PORT),
      '--count', String(CLIENTS), '--concurrency', String(CONCURRENCY)], { timeoutMs: 120_000 });
    const report = JSON.parse(stdout.trim().split('\n').pop()!) as PartialReport;
    const wait = report.finishedAt + LOOK_AFTER_MS - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const lookedAt = Date.now();
    const stuck = await braidCloseWait(ns, [plain.pid!, auth.pid!]);
    const lookedAfterMs = lookedAt - report.finishedAt;

    assert.equal(report.connectErrors, 0, 'every client connected');
    assert.ok(report.closedAtOnce > CLIENTS / 3 && report.waited > CLIENTS / 3, `both kinds ran: ${report.closedAtOnce} closed at once, ${report.waited} waited`);
    assert.ok(lookedAfterMs < HANDSHAKE_MS / 10, `ss looked ${lookedAfterMs} ms after the last client, well inside the ${HANDSHAKE_MS} ms handshake timeout`);
    assert.deepEqual(stuck, [], `${stuck.length} of Braid's sockets still in CLOSE-WAIT ${lookedAfterMs} ms after the last client:\n${stuck.slice(0, 10).join('\n')}`);
    for (const c of report.cases) {
      assert.ok(c.waited > 0 && c.ran > c.waited, `case "${c.name}" ran both ways (${c.ran} ran, ${c.waited} waited)`);
      assert.deepEqual(c.mismatches, [], `case "${c.name}": replies`);
      assert.equal(c.ok, c.waited, `case "${c.name}": ${c.ok} of ${c.waited} got the reply due`);
    }
    assert.ok(plain.running && auth.running, 'both proxies still run');
  });
});
