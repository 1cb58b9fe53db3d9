// Transparent mode and `braid run` end to end (issue 13), in namespaces with a relay:
//
//   client ──link1 (20 Mbit)──┐
//          ──link2 (20 Mbit)──┴ relay ── destination (reachable only through the relay)
//
// Real clients with no proxy settings at all (curl, a plain Python socket), the kernel's redirect
// (nftables `inet braid`), checked with `nft` and the relay's own log. Braid runs through
// `nsenter --net` (which keeps the host's /sys, so cgroup paths resolve for `braid run`).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expectedSha256 } from './helpers/byte-stream';
import { requireFor } from './helpers/prerequisites';
import { skipUnlessRoot, type NsProcess } from './helpers/netns';
import { BRAID_CLI, curlDownload, DIST, missingPrerequisite } from './helpers/multipath-harness';
import { killOnSignal, until } from './helpers/paths-harness';
import { runProcess, startProcess, type Running } from './helpers/proc';
import { createRelayTopology, relayTxBytes, startRelay, tempRelayDir, type RelayProcess, type RelayTopology } from './helpers/relay-topology';

const skip = requireFor('transparent mode and braid run through a relay (transparent.test.ts)', skipUnlessRoot() ?? missingPrerequisite() ?? (fs.existsSync('/usr/sbin/nft') ? undefined : 'needs nft (apt-get install nftables)'));
const SERVE_BYTES = path.join(DIST, 'test', 'helpers', 'serve-bytes.js');
const SERVE_HTTPS = path.join(DIST, 'test', 'helpers', 'serve-https.js');
const NAME = 'dest.braid.test';

interface ControlFile { host: string; port: number; token: string }

describe('transparent mode through a relay', { skip, timeout: 240_000 }, () => {
  let topo: RelayTopology;
  let relay: RelayProcess;
  let braid: Running;
  let relayDir: string;
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-tp-'));
  const state = path.join(home, 'state');
  const config = path.join(home, 'config.json');
  let httpsSha = '';
  let bypassAddr = '';
  const procs: NsProcess[] = [];

  const nsenter = (ns: string): string[] => ['nsenter', `--net=/run/netns/${ns}`];
  const startBraid = async (extra: string[] = []): Promise<Running> => {
    const r = await startProcess(nsenter(topo.client.name)[0]!, [...nsenter(topo.client.name).slice(1), process.execPath, BRAID_CLI, 'up', '-v', '--port', '0', '--config', config, '--state-dir', state, ...extra],
      { ready: /braid: proxy listening on/, timeoutMs: 20_000 });
    return killOnSignal(r);
  };
  const control = async <T>(command: string, params: unknown = {}): Promise<T> => {
    const ep = JSON.parse(fs.readFileSync(path.join(state, 'control.json'), 'utf8')) as ControlFile;
    const r = await topo.client.exec(['curl', '-sS', '--max-time', '5', '-H', `Authorization: Bearer ${ep.token}`, '-X', 'POST', '--data', JSON.stringify(params), `http://${ep.host}:${ep.port}/api/${command}`]);
    const body = JSON.parse(r.stdout) as { ok: boolean; result: T; error?: { message: string } };
    assert.ok(body.ok, body.error?.message);
    return body.result;
  };
  const nftTables = async (): Promise<string> => (await topo.client.exec(['nft', 'list', 'tables'])).stdout;

  before(async () => {
    topo = await createRelayTopology({ rateMbit: 20 });
    // A desktop has a default route; here it leads to the relay, which does not forward: without
    // Braid, the destination is unreachable.
    await topo.client.exec(['ip', 'route', 'add', 'default', 'via', topo.relayAddress(1, 4)]);
    await topo.client.exec(['ip', '-6', 'route', 'add', 'default', 'via', topo.relayAddress(1, 6)]);
    relayDir = tempRelayDir();
    // The relay resolves names the way a server on the internet would; here, from its /etc/hosts.
    fs.mkdirSync(`/etc/netns/${topo.relay.name}`, { recursive: true });
    fs.writeFileSync(`/etc/netns/${topo.relay.name}/hosts`, `127.0.0.1 localhost\n${topo.destAddress(4)} ${NAME}\n`);
    relay = await startRelay(topo, { port: 8443, dir: relayDir, extra: ['--verbose'] });
    procs.push(relay.proc);
    const bytes = topo.dest.spawn([process.execPath, SERVE_BYTES, '--port', '8080', '--tcp'], { label: 'dest http' });
    await bytes.waitForLine(/^listening/, 15_000);
    const https = topo.dest.spawn([process.execPath, SERVE_HTTPS, '--port', '9443'], { label: 'dest https' });
    httpsSha = (await https.waitForLine(/^listening/, 20_000)).line.split(' ')[2]!;
    // The relay's own host, directly over link 1: the one-link reference, and the bypass check.
    const relayBytes = topo.relay.spawn([process.execPath, SERVE_BYTES, '--port', '8081', '--tcp'], { label: 'relay-host http' });
    await relayBytes.waitForLine(/^listening/, 15_000);
    bypassAddr = topo.links[0].b.ipv4.replace(/\.2$/, '.3');
    await topo.relay.exec(['ip', 'addr', 'add', `${bypassAddr}/24`, 'dev', topo.links[0].b.dev]);
    const side = topo.relay.spawn([process.execPath, SERVE_BYTES, '--host', bypassAddr, '--port', '8082', '--tcp'], { label: 'bypassed http' });
    await side.waitForLine(/^listening/, 15_000);
    procs.push(bytes, https, relayBytes, side);
    // A table that is not Braid's: it must be left exactly as it is.
    await topo.client.exec(['nft', 'add', 'table', 'inet', 'other']);
    await topo.client.exec(['nft', 'add', 'chain', 'inet', 'other', 'keep', '{ type filter hook output priority 10; policy accept; }']);
    fs.writeFileSync(config, JSON.stringify({
      relay: { link: relay.link },
      // The tests' destinations are private addresses: the bypass is given (and replaces the default).
      transparent: { enabled: true, bypass: ['127.0.0.0/8', '::1/128', `${bypassAddr}/32:8082`] },
      paths: { enabled: false },
      control: { enabled: true, host: '127.0.0.1', port: 0 },
    }));
    braid = await startBraid();
  });

  after(async () => {
    await braid?.stop('SIGTERM', 5000);
    await Promise.all(procs.map((p) => p.stop()));
    await topo?.destroy();
    if (topo) fs.rmSync(`/etc/netns/${topo.relay.name}`, { recursive: true, force: true });
    fs.rmSync(home, { recursive: true, force: true });
    if (relayDir) fs.rmSync(relayDir, { recursive: true, force: true });
  });

  test('it says what it does; one table, inet braid, redirects; the other table is untouched', async () => {
    await until(async () => (/braid: transparent mode: all apps' TCP goes through braid \(listener 127\.0\.0\.1:\d+ and \[::1\]:\d+\)/.test(braid.stdout()) ? true : undefined), 3000, 'the transparent-mode line');
    assert.match(braid.stdout(), /braid: {3}nftables table inet braid: redirects all outbound TCP/);
    assert.match(await nftTables(), /table inet braid/);
    const st = await control<{ transparent: { enabled: boolean; active: boolean; via: string } }>('status');
    assert.deepEqual([st.transparent.enabled, st.transparent.active, st.transparent.via], [true, true, 'braid']);
  });

  test('curl and a plain Python client, with no proxy settings, download intact over both links at ≥ 1.8× one link', async (t) => {
    // Long enough that the second subflow's start is a small part of the time.
    const bytes = 24_000_000;
    const one = await curlDownload(topo.client, `http://${topo.relayAddress(1)}:8081/bytes/12000000`, { hash: true, maxSeconds: 60 });
    assert.equal(one.sha256, expectedSha256(12_000_000));
    const [tx1Before, tx2Before] = await relayTxBytes(topo);
    const both = await curlDownload(topo.client, `http://${topo.destAddress(4)}:8080/bytes/${bytes}`, { hash: true, maxSeconds: 60 });
    const [tx1After, tx2After] = await relayTxBytes(topo);
    assert.equal(both.httpCode, 200);
    assert.equal(both.sha256, expectedSha256(bytes));
    const share2 = (tx2After - tx2Before) / (tx1After - tx1Before + tx2After - tx2Before);
    t.diagnostic(`one link ${one.mbit.toFixed(1)} Mbit/s; transparent through the relay ${both.mbit.toFixed(1)} Mbit/s (${(both.mbit / one.mbit).toFixed(2)}×), link 2 share ${share2.toFixed(2)}`);
    assert.ok(both.mbit >= 1.8 * one.mbit, `${both.mbit.toFixed(1)} Mbit/s is not ≥ 1.8 × ${one.mbit.toFixed(1)}`);

    const py = await topo.client.exec(['python3', '-c', `
import hashlib, socket
s = socket.create_connection((${JSON.stringify(topo.destAddress(4))}, 8080), timeout=20)
s.sendall(b"GET /bytes/3000000 HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
data = b""
while True:
    d = s.recv(65536)
    if not d: break
    data += d
body = data.split(b"\\r\\n\\r\\n", 1)[1]
print(len(body), hashlib.sha256(body).hexdigest())
`], { timeoutMs: 30_000 });
    assert.equal(py.stdout.trim(), `3000000 ${expectedSha256(3_000_000)}`);
  });

  test('IPv6 is redirected too', async () => {
    const r = await curlDownload(topo.client, `http://[${topo.destAddress(6)}]:8080/bytes/1000000`, { hash: true, maxSeconds: 30 });
    assert.equal(r.sha256, expectedSha256(1_000_000));
  });

  test('a bypassed destination is reached directly; the same host on a port not bypassed goes through braid (and the relay refuses it)', async () => {
    const before = (await control<{ connections: { total: number } }>('status')).connections.total;
    const direct = await curlDownload(topo.client, `http://${bypassAddr}:8082/bytes/100000`, { hash: true, maxSeconds: 20 });
    assert.equal(direct.sha256, expectedSha256(100_000));
    assert.equal((await control<{ connections: { total: number } }>('status')).connections.total, before, 'a bypassed connection went through braid');
    const viaBraid = await topo.client.exec(['curl', '-sS', '--max-time', '10', '-o', '/dev/null', `http://${bypassAddr}:8081/bytes/100`], { allowFailure: true });
    assert.notEqual(viaBraid.code, 0, 'not bypassed, so it went to the relay, whose policy refuses this private address');
    assert.ok((await control<{ connections: { total: number } }>('status')).connections.total > before);
  });

  test('names: the SNI of an HTTPS request and the Host of an HTTP request go into the relay\'s CONNECT line and the connections list', async () => {
    const resolve = (port: number): string[] => ['--resolve', `${NAME}:${port}:${topo.destAddress(4)}`];
    const seen = new Set<string>();
    const programsSeen = new Set<string>();
    const watch = setInterval(() => {
      void control<{ destination: string | null; protocol: string; program: { name: string; pid: number } | null }[]>('connections.list').then((list) => {
        for (const c of list) if (c.protocol === 'transparent' && c.destination) {
          seen.add(c.destination);
          if (c.program) programsSeen.add(`${c.destination} ${c.program.name}`);
        }
      }).catch(() => {});
    }, 100);
    try {
      const tlsGet = await topo.client.exec(['curl', '-sS', '-k', '--max-time', '30', ...resolve(9443), '-o', '/dev/null', '-w', '%{http_code}', `https://${NAME}:9443/blob/big`], { timeoutMs: 40_000 });
      assert.equal(tlsGet.stdout, '200');
      const plain = await topo.client.exec(['curl', '-sS', '--max-time', '30', ...resolve(8080), '-o', '/dev/null', '-w', '%{http_code}', `http://${NAME}:8080/bytes/5000000`], { timeoutMs: 40_000 });
      assert.equal(plain.stdout, '200');
    } finally {
      clearInterval(watch);
    }
    await until(async () => (/CONNECT dest\.braid\.test:8080 /.test(relay.proc.stderr) ? true : undefined), 3000, 'the relay logs CONNECT by Host');
    assert.match(relay.proc.stderr, /CONNECT dest\.braid\.test:9443 /, 'the relay was asked for the SNI name');
    assert.ok(seen.has(`${NAME}:9443`) && seen.has(`${NAME}:8080`), `connections list showed ${[...seen].join(', ')}`);
    // Which program: the owner of the client's socket, the test's own curl.
    assert.ok(programsSeen.has(`${NAME}:9443 curl`) && programsSeen.has(`${NAME}:8080 curl`), `programs seen: ${[...programsSeen].join(', ')}`);
    // And the HTTPS body arrived intact through the name the relay resolved.
    const sum = await topo.client.exec(['sh', '-c', `curl -sS -k --max-time 30 ${resolve(9443).join(' ')} https://${NAME}:9443/blob/big | sha256sum`], { timeoutMs: 40_000 });
    assert.equal(sum.stdout.split(' ')[0], httpsSha);
  });

  test('SIGTERM removes the table at once; after SIGKILL the guardian removes it within 3 s; inet other stays', async (t) => {
    const otherBefore = (await topo.client.exec(['nft', 'list', 'table', 'inet', 'other'])).stdout;
    const exit = await braid.stop('SIGTERM', 5000);
    assert.equal(exit.code, 0, braid.stderr());
    assert.doesNotMatch(await nftTables(), /table inet braid/);
    braid = await startBraid();
    assert.match(await nftTables(), /table inet braid/);
    braid.child.kill('SIGKILL');
    await braid.exited;
    const gone = await until(async () => (/table inet braid/.test(await nftTables()) ? undefined : true), 3000, 'inet braid removed by the guardian');
    t.diagnostic(`table gone ${gone.ms.toFixed(0)} ms after SIGKILL`);
    assert.equal((await topo.client.exec(['nft', 'list', 'table', 'inet', 'other'])).stdout, otherBefore);
    // With the table gone, the destination is unreachable again (nothing redirects to the relay).
    const r = await topo.client.exec(['curl', '-sS', '--max-time', '3', '-o', '/dev/null', `http://${topo.destAddress(4)}:8080/bytes/10`], { allowFailure: true });
    assert.notEqual(r.code, 0);
    braid = await startBraid();
  });

  test('braid run: with transparent mode off, one program\'s TCP goes through braid; another program\'s does not', async () => {
    await braid.stop('SIGTERM', 5000);
    const cfg = JSON.parse(fs.readFileSync(config, 'utf8')) as { transparent: { enabled: boolean } };
    cfg.transparent.enabled = false;
    fs.writeFileSync(config, JSON.stringify(cfg));
    braid = await startBraid();
    assert.doesNotMatch(await nftTables(), /table inet braid/);
    const url = `http://${topo.destAddress(4)}:8080/bytes/2000000`;
    const run = await runProcess('nsenter', [`--net=/run/netns/${topo.client.name}`, process.execPath, BRAID_CLI, 'run', '--state-dir', state, '--',
      'sh', '-c', `curl -sS --max-time 30 ${url} | sha256sum; exit 7`], { timeoutMs: 60_000 });
    assert.equal(run.code, 7, `the exit status is the program's: ${run.stderr}`);
    assert.equal(run.stdout.toString().split(' ')[0], expectedSha256(2_000_000));
    // Its cgroup and its rule are gone with it.
    assert.doesNotMatch(await nftTables(), /table inet braid/);
    assert.deepEqual(fs.readdirSync(cgroupRoot()).filter((d) => d.startsWith('braid-run-')), []);
    // Not under braid run: not redirected, so the destination (only the relay reaches it) is unreachable.
    const plain = await topo.client.exec(['curl', '-sS', '--max-time', '3', '-o', '/dev/null', url], { allowFailure: true });
    assert.notEqual(plain.code, 0);
  });

  test('braid run with no braid running: a clear error and status 125', async () => {
    const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-tp-none-'));
    try {
      const r = await runProcess(process.execPath, [BRAID_CLI, 'run', '--state-dir', empty, '--', 'true'], { timeoutMs: 15_000 });
      assert.equal(r.code, 125);
      assert.match(r.stderr, /braid run: no running braid to send the program's traffic through/);
    } finally {
      fs.rmSync(empty, { recursive: true, force: true });
    }
  });
});

function cgroupRoot(): string {
  return fs.existsSync('/sys/fs/cgroup/unified/cgroup.procs') ? '/sys/fs/cgroup/unified' : '/sys/fs/cgroup';
}

